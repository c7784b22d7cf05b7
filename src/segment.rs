//! SAM(box): boxes with classes on one slice -> a label map at the slice's own size, with
//! LiteMedSAM's post-processing (crop the padding, bilinear back, sigmoid > 0.5; later boxes win).
//! The device part returns a tensor so the page can read it back asynchronously.

use burn::tensor::Tensor;

use crate::model::Sam;
use crate::preprocess::Letterbox;

/// A box in slice pixels: x along the row (second axis), y down the rows (first axis), inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassBox {
    pub class: u8,
    pub xyxy: [f32; 4],
}

/// The paper's protocol: per class present, its tight box widened by `margin` pixels (clamped).
pub fn boxes_from_labels(
    labels: &[u8],
    height: usize,
    width: usize,
    classes: &[u8],
    margin: usize,
) -> Vec<ClassBox> {
    classes
        .iter()
        .filter_map(|&class| {
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for (i, _) in labels.iter().enumerate().filter(|(_, l)| **l == class) {
                let (y, x) = (i / width, i % width);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
            (x0 != usize::MAX).then(|| ClassBox {
                class,
                xyxy: [
                    x0.saturating_sub(margin) as f32,
                    y0.saturating_sub(margin) as f32,
                    (x1 + margin).min(width - 1) as f32,
                    (y1 + margin).min(height - 1) as f32,
                ],
            })
        })
        .collect()
}

/// Mask logits for each box on the encoder grid: [B, 1, S, S].
pub fn box_logits(
    sam: &Sam,
    embedding: Tensor<4>,
    letterbox: &Letterbox,
    boxes: &[ClassBox],
) -> Tensor<4> {
    let scale = letterbox.scale() as f32;
    let input: Vec<[f32; 4]> = boxes.iter().map(|b| b.xyxy.map(|v| v * scale)).collect();
    sam.decode_boxes(embedding, &input).masks
}

/// Host side: logits read back as [B, S, S] -> one label map at the slice's size.
pub fn labels_from_logits(logits: &[f32], letterbox: &Letterbox, boxes: &[ClassBox]) -> Vec<u8> {
    let grid = letterbox.size * letterbox.size;
    let mut labels = vec![0u8; letterbox.height * letterbox.width];
    for (b, scores) in boxes.iter().zip(logits.chunks_exact(grid)) {
        let back = letterbox.scores_to_slice(scores);
        // sigmoid(x) > 0.5 exactly when x > 0.
        for (l, &s) in labels.iter_mut().zip(&back) {
            if s > 0.0 {
                *l = b.class;
            }
        }
    }
    labels
}

/// Both steps with a blocking read (native, or the CPU backend in the page).
pub fn segment_boxes(
    sam: &Sam,
    embedding: Tensor<4>,
    letterbox: &Letterbox,
    boxes: &[ClassBox],
) -> Vec<u8> {
    if boxes.is_empty() {
        return vec![0; letterbox.height * letterbox.width];
    }
    let logits = box_logits(sam, embedding, letterbox, boxes)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 logits");
    labels_from_logits(&logits, letterbox, boxes)
}
