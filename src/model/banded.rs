//! TinyViT's convolution blocks in bands of rows on the CPU backend: a 1x1 expansion, GELU, a
//! depthwise 3x3 (stride 1 or 2), GELU and a 1x1 projection, then in the MBConvs the residual
//! and GELU (the patch mergings stop at the projection). Each band's expanded activations stay in
//! the cache from one convolution to the next. As whole tensors they are 32-64 MiB at 256 x 256,
//! and the two GELUs, the depthwise convolution and the projection each stream them through
//! memory. Timed in one process, layer 0's two MBConvs per pass: op by op 357-413 ms on one
//! thread and 178-194 on two, banded 284-287 and 147-149.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};

use super::depthwise;
use super::kernels::{self, Disjoint, f32s, gelu_slice, gemm_add, values};

/// Output rows per band: at stride 1 the expanded activations of a band and its two halo rows
/// (256 channels of 256 pixels: 1.5 MiB) stay in the cache, and each product still spans 1024
/// columns.
const BAND: usize = 4;

/// Expanded activations (values) below which the op-by-op pass is as fast: they fit the cache
/// anyway. Timed in one process, per pass on one thread: the patch merging from 256 x 256 (4 M
/// values) 71 -> 58 ms banded; the ones from 128 x 128 (2.6 M) and 64 x 64 (1.3 M) 21-26 ms
/// either way.
const MIN_EXPANDED: usize = 1 << 22;

/// Rows of a task at least: each task expands the rows around its own once more.
#[cfg(not(target_arch = "wasm32"))]
const MIN_TASK_ROWS: usize = 16;

/// What follows the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The block's input added, then GELU (MBConv).
    ResidualGelu,
    /// Nothing (PatchMerging).
    None,
}

/// `conv3(gelu(conv2(gelu(conv1(x)))))` with `tail`, or `None` where the banded pass does not
/// apply: not on the CPU backend, not 1x1 convolutions around a depthwise 3x3 of stride 1 or 2
/// (stride 1 for a residual), or fewer than [`MIN_EXPANDED`] expanded values per image.
pub fn forward(convs: [&Conv2d; 3], x: &Tensor<4>, tail: Tail) -> Option<Tensor<4>> {
    forward_from(convs, x, tail, MIN_EXPANDED)
}

/// [`forward`] with the size threshold given.
fn forward_from(
    [conv1, conv2, conv3]: [&Conv2d; 3],
    x: &Tensor<4>,
    tail: Tail,
    min_expanded: usize,
) -> Option<Tensor<4>> {
    let [b, c, h, w] = x.dims();
    let [hidden, ..] = conv1.weight.dims();
    let [out, ..] = conv3.weight.dims();
    let strides: &[usize] = match tail {
        Tail::ResidualGelu => &[1],
        Tail::None => &[1, 2],
    };
    let fits = kernels::on_flex(x)
        && pointwise(conv1, [hidden, c])
        && depthwise::fits(conv2, hidden, strides)
        && pointwise(conv3, [out, hidden])
        && (tail == Tail::None || out == c)
        && hidden * h * w >= min_expanded;
    if !fits {
        return None;
    }
    let s = conv2.stride[0];
    let (oh, ow) = ((h - 1) / s + 1, (w - 1) / s + 1);
    let bias = |conv: &Conv2d, n: usize| match &conv.bias {
        Some(b) => f32s(&values(&b.val())).to_vec(),
        None => vec![0.0; n],
    };
    let weights = [conv1, conv2, conv3].map(|c| values(&c.weight.val()));
    let block = Block {
        shape: Shape {
            c,
            hidden,
            out,
            h,
            w,
            s,
            oh,
            ow,
        },
        w1: f32s(&weights[0]),
        b1: &bias(conv1, hidden),
        taps: f32s(&weights[1]),
        b2: &bias(conv2, hidden),
        w3: f32s(&weights[2]),
        b3: &bias(conv3, out),
        tail,
    };
    let device = x.device();
    let x = values(x);
    let src = f32s(&x);
    // With a residual the output starts as the input; each band adds its projection onto it.
    let mut output = match tail {
        Tail::ResidualGelu => src.to_vec(),
        Tail::None => vec![0.0; b * out * oh * ow],
    };
    // Each task writes its own rows of every channel plane.
    let dst = Disjoint::new(&mut output);
    let tasks = tasks(b, oh);
    let run = |&(image, rows): &(usize, [usize; 2])| {
        let image_src = &src[image * c * h * w..(image + 1) * c * h * w];
        // SAFETY: tasks cover disjoint rows of the images, and `output` outlives them.
        unsafe { block.rows(image_src, dst.at(image * out * oh * ow), rows) };
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        tasks.par_iter().for_each(run);
    }
    #[cfg(target_arch = "wasm32")]
    tasks.iter().for_each(run);
    Some(Tensor::from_data(
        TensorData::new(output, [b, out, oh, ow]),
        &device,
    ))
}

/// Whether `conv` is a 1x1 stride-1 convolution from `inp` to `out` channels.
fn pointwise(conv: &Conv2d, [out, inp]: [usize; 2]) -> bool {
    conv.weight.dims() == [out, inp, 1, 1]
        && conv.stride == [1, 1]
        && conv.groups == 1
        && matches!(
            conv.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        )
}

/// (image, [first output row, end row]) of each task: one per image in wasm (a worker has one
/// thread), natively about two a thread, of [`MIN_TASK_ROWS`] at least.
fn tasks(b: usize, oh: usize) -> Vec<(usize, [usize; 2])> {
    #[cfg(not(target_arch = "wasm32"))]
    let per_image = (2 * rayon::current_num_threads())
        .div_ceil(b)
        .min(oh.div_ceil(MIN_TASK_ROWS))
        .max(1);
    #[cfg(target_arch = "wasm32")]
    let per_image = 1;
    let rows = oh.div_ceil(per_image);
    (0..b)
        .flat_map(|image| {
            (0..oh)
                .step_by(rows)
                .map(move |y| (image, [y, (y + rows).min(oh)]))
        })
        .collect()
}

/// Channels (in, expanded, out), input side, stride and output side.
#[derive(Clone, Copy)]
struct Shape {
    c: usize,
    hidden: usize,
    out: usize,
    h: usize,
    w: usize,
    s: usize,
    oh: usize,
    ow: usize,
}

impl Shape {
    /// Expanded rows a band of `rows` output rows reads.
    fn slots(&self, rows: usize) -> usize {
        self.s * (rows - 1) + 3
    }
}

/// One block's weights as contiguous values, with the shapes and the tail.
struct Block<'a> {
    shape: Shape,
    /// [hidden, c]
    w1: &'a [f32],
    b1: &'a [f32],
    /// [hidden, 9]
    taps: &'a [f32],
    b2: &'a [f32],
    /// [out, hidden]
    w3: &'a [f32],
    b3: &'a [f32],
    tail: Tail,
}

impl Block<'_> {
    /// Output rows `y0..y1` of one image (`src`, [c, h, w]) into `out` ([out, oh, ow]), which
    /// holds the image itself with a residual, zeros without.
    ///
    /// # Safety
    /// `out` addresses the image's output values, and no other task touches rows `y0..y1`.
    unsafe fn rows(&self, src: &[f32], out: *mut f32, [y0, y1]: [usize; 2]) {
        let Shape {
            hidden,
            out: channels,
            h,
            w,
            s,
            oh,
            ow,
            ..
        } = self.shape;
        // Expanded activations of the input rows a band reads: slot i holds row s ya - 1 + i,
        // rows outside the image are zeros (the depthwise convolution's padding).
        let per_channel = self.shape.slots(BAND) * w;
        let mut expanded = vec![0.0f32; hidden * per_channel];
        let mut mixed = vec![0.0f32; hidden * BAND * ow];
        let mut gathered = Vec::new();
        // Slots that already hold their rows: the last rows of the band before.
        let mut kept = 0;
        let mut ya = y0;
        while ya < y1 {
            let yb = (ya + BAND).min(y1);
            let rows = yb - ya;
            let slots = self.shape.slots(rows);
            // Input rows lo .. lo + slots, lo = s ya - 1.
            let lo = (s * ya) as isize - 1;
            for slot in 0..slots {
                let row = lo + slot as isize;
                if slot >= kept && (row < 0 || row >= h as isize) {
                    zero_slot(&mut expanded, slot, per_channel, w);
                }
            }
            let first = (lo + kept as isize).max(0) as usize;
            let end = ((lo + slots as isize) as usize).min(h);
            if first < end {
                let slot = (first as isize - lo) as usize;
                self.expand(src, &mut expanded, slot, [first, end]);
            }
            for ch in 0..hidden {
                let slot = &expanded[ch * per_channel..(ch + 1) * per_channel];
                let taps: &[f32; 9] = self.taps[ch * 9..ch * 9 + 9].try_into().expect("9 taps");
                let dst = &mut mixed[ch * BAND * ow..ch * BAND * ow + rows * ow];
                for (i, row) in dst.chunks_exact_mut(ow).enumerate() {
                    let lines = [0, 1, 2].map(|dy| &slot[(s * i + dy) * w..(s * i + dy + 1) * w]);
                    depthwise::row(&lines, taps, self.b2[ch], s, row, &mut gathered);
                }
                gelu_slice(dst);
            }
            let plane = oh * ow;
            // SAFETY: rows ya..yb of the image's output are this task's; each channel's run of
            // them lies inside its plane.
            unsafe {
                let dst = out.add(ya * ow);
                for ch in 0..channels {
                    let run = std::slice::from_raw_parts_mut(dst.add(ch * plane), rows * ow);
                    run.iter_mut().for_each(|v| *v += self.b3[ch]);
                }
                gemm_add(
                    [channels, rows * ow, hidden],
                    (dst, plane as isize, 1),
                    (self.w3.as_ptr(), hidden as isize, 1),
                    (mixed.as_ptr(), (BAND * ow) as isize, 1),
                    gemm::Parallelism::None,
                );
                if self.tail == Tail::ResidualGelu {
                    for ch in 0..channels {
                        gelu_slice(std::slice::from_raw_parts_mut(
                            dst.add(ch * plane),
                            rows * ow,
                        ));
                    }
                }
            }
            // The next band starts at input row s yb - 1: this band's last 3 - s rows.
            kept = 3 - s;
            for ch in 0..hidden {
                let at = ch * per_channel;
                expanded.copy_within(at + (slots - kept) * w..at + slots * w, at);
            }
            ya = yb;
        }
    }

    /// GELU of the expansion of image rows `first..end` into the slots from `slot` on.
    fn expand(&self, src: &[f32], expanded: &mut [f32], slot: usize, [first, end]: [usize; 2]) {
        let Shape {
            c, hidden, h, w, ..
        } = self.shape;
        let per_channel = self.shape.slots(BAND) * w;
        let n = (end - first) * w;
        for ch in 0..hidden {
            let at = ch * per_channel + slot * w;
            expanded[at..at + n].fill(self.b1[ch]);
        }
        // SAFETY: the destination's `hidden` rows of n values lie `per_channel` apart inside
        // `expanded`; the source's c rows of n values lie h w apart inside the image.
        unsafe {
            gemm_add(
                [hidden, n, c],
                (expanded.as_mut_ptr().add(slot * w), per_channel as isize, 1),
                (self.w1.as_ptr(), c as isize, 1),
                (src.as_ptr().add(first * w), (h * w) as isize, 1),
                gemm::Parallelism::None,
            );
        }
        for ch in 0..hidden {
            let at = ch * per_channel + slot * w;
            gelu_slice(&mut expanded[at..at + n]);
        }
    }
}

/// Zeros in slot `slot` of every channel.
fn zero_slot(expanded: &mut [f32], slot: usize, per_channel: usize, w: usize) {
    for channel in expanded.chunks_exact_mut(per_channel) {
        channel[slot * w..(slot + 1) * w].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution, activation};

    use super::*;

    fn convs(c: usize, hidden: usize, out: usize, stride: usize, device: &Device) -> [Conv2d; 3] {
        let pointwise = |i, o| Conv2dConfig::new([i, o], [1, 1]).init(device);
        [
            pointwise(c, hidden),
            Conv2dConfig::new([hidden, hidden], [3, 3])
                .with_groups(hidden)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            pointwise(hidden, out),
        ]
    }

    /// The banded pass against burn's ops, with and without the residual, at strides 1 and 2, on
    /// sides that leave a short last band, a single band, a single row and odd heights, with two
    /// images (tasks of one image each or several).
    #[test]
    fn matches_burns_ops() {
        let device = Device::flex();
        let cases = [
            (Tail::ResidualGelu, 1, 3),
            (Tail::None, 1, 5),
            (Tail::None, 2, 5),
        ];
        for (tail, stride, out) in cases {
            for (h, w) in [(37, 9), (3, 5), (1, 4), (40, 2), (18, 7)] {
                let [c1, c2, c3] = convs(3, 12, out, stride, &device);
                let x = Tensor::<4>::random([2, 3, h, w], Distribution::Default, &device);
                let ours =
                    forward_from([&c1, &c2, &c3], &x, tail, 0).expect("the banded pass applies");
                let y = activation::gelu(c1.forward(x.clone()));
                let y = c3.forward(activation::gelu(c2.forward(y)));
                let reference = match tail {
                    Tail::ResidualGelu => activation::gelu(y + x),
                    Tail::None => y,
                };
                let (ours, reference) = (ours.into_data(), reference.into_data());
                assert_eq!(ours.shape(), reference.shape());
                let (ours, reference) = (
                    ours.try_to_vec::<f32>().unwrap(),
                    reference.try_to_vec::<f32>().unwrap(),
                );
                for (a, b) in ours.iter().zip(&reference) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{a} against {b} ({tail:?}, stride {stride}, {h} x {w})"
                    );
                }
            }
        }
    }
}
