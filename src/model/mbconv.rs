//! TinyViT's `MBConv` (layer 0's blocks): a 1x1 expansion to four times the channels, GELU, a
//! depthwise 3x3, GELU, a 1x1 projection back, the residual and GELU. On the CPU backend it runs
//! in bands of rows, so that each band's expanded activations stay in the cache from one
//! convolution to the next. As whole tensors they are 64 MiB each at layer 0's 256 x 256, and
//! the two GELUs, the depthwise convolution and the projection each stream them through memory.
//! Timed in one process, both of layer 0's blocks per pass: op by op 357-413 ms on one thread and
//! 178-194 on two, banded 284-287 and 147-149. Other devices, and tensors that carry gradients,
//! keep the op-by-op pass.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};

use super::common::conv;
use super::depthwise::{self, depthwise, row_stride1};
use super::kernels::{self, f32s, gelu, gelu_slice, gemm_add, values};
use super::weights::{Weights, conv2d};
use crate::error::Result;

/// Output rows per band: the expanded activations of a band and its two halo rows (256
/// channels of 256 pixels: 1.5 MiB) stay in the cache, and each product still spans 1024
/// columns.
const BAND: usize = 4;

/// Rows of a task at least: each task computes the expansion of two rows beyond its own.
#[cfg(not(target_arch = "wasm32"))]
const MIN_TASK_ROWS: usize = 16;

#[derive(Module, Debug)]
pub struct MBConv {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
}

impl MBConv {
    pub fn load(w: &Weights, p: &str, hidden: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            conv1: conv2d(w, &format!("{p}.conv1"), 1, 0, 1, device)?,
            conv2: conv2d(w, &format!("{p}.conv2"), 1, 1, hidden, device)?,
            conv3: conv2d(w, &format!("{p}.conv3"), 1, 0, 1, device)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if kernels::on_flex(&x) && self.banded_fits(x.dims()[1]) {
            return self.banded(x);
        }
        let shortcut = x.clone();
        let x = gelu(conv(&self.conv1, x));
        let x = gelu(depthwise(&self.conv2, x));
        gelu(conv(&self.conv3, x) + shortcut)
    }

    /// Whether the banded pass applies: 1x1 convolutions around a stride-1 depthwise 3x3, back
    /// to the input's `channels`.
    fn banded_fits(&self, channels: usize) -> bool {
        let [hidden, ..] = self.conv1.weight.dims();
        let pointwise = |c: &Conv2d, [out, inp]: [usize; 2]| {
            let [o, i, kh, kw] = c.weight.dims();
            [o, i, kh, kw] == [out, inp, 1, 1]
                && c.stride == [1, 1]
                && c.groups == 1
                && matches!(
                    c.padding,
                    PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
                )
        };
        pointwise(&self.conv1, [hidden, channels])
            && depthwise::fits(&self.conv2, hidden, &[1])
            && pointwise(&self.conv3, [channels, hidden])
    }

    /// The block on flex values, by tasks of rows of one image, each walking its rows in
    /// [`BAND`]s.
    fn banded(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let [hidden, ..] = self.conv1.weight.dims();
        let device = x.device();
        let bias = |conv: &Conv2d, n: usize| match &conv.bias {
            Some(b) => f32s(&values(&b.val())).to_vec(),
            None => vec![0.0; n],
        };
        let weights = [&self.conv1, &self.conv2, &self.conv3].map(|c| values(&c.weight.val()));
        let block = Block {
            c,
            hidden,
            h,
            w,
            w1: f32s(&weights[0]),
            b1: &bias(&self.conv1, hidden),
            taps: f32s(&weights[1]),
            b2: &bias(&self.conv2, hidden),
            w3: f32s(&weights[2]),
            b3: &bias(&self.conv3, c),
        };
        let x = values(&x);
        let src = f32s(&x);
        // The output starts as the shortcut; each band adds its projection onto its rows.
        let mut out = src.to_vec();
        let dst = Rows(out.as_mut_ptr());
        let tasks = tasks(b, h);
        let run = |&(image, rows): &(usize, [usize; 2])| {
            let image_src = &src[image * c * h * w..(image + 1) * c * h * w];
            // SAFETY: tasks cover disjoint rows of the images, and `out` outlives them.
            unsafe { block.rows(image_src, dst.at(image * c * h * w), rows) };
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            tasks.par_iter().for_each(run);
        }
        #[cfg(target_arch = "wasm32")]
        tasks.iter().for_each(run);
        Tensor::from_data(TensorData::new(out, [b, c, h, w]), &device)
    }
}

/// (image, [first row, end row]) of each task: one per image in wasm (a worker has one thread),
/// natively about two a thread, of [`MIN_TASK_ROWS`] at least.
fn tasks(b: usize, h: usize) -> Vec<(usize, [usize; 2])> {
    #[cfg(not(target_arch = "wasm32"))]
    let per_image = (2 * rayon::current_num_threads())
        .div_ceil(b)
        .min(h.div_ceil(MIN_TASK_ROWS))
        .max(1);
    #[cfg(target_arch = "wasm32")]
    let per_image = 1;
    let rows = h.div_ceil(per_image);
    (0..b)
        .flat_map(|image| {
            (0..h)
                .step_by(rows)
                .map(move |y| (image, [y, (y + rows).min(h)]))
        })
        .collect()
}

/// The output's address, shared by tasks that each write their own rows.
struct Rows(*mut f32);
// SAFETY: tasks write disjoint rows of every channel plane of the buffer, which outlives them.
unsafe impl Sync for Rows {}

impl Rows {
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// One block's weights as contiguous values, with the input's shape.
struct Block<'a> {
    c: usize,
    hidden: usize,
    h: usize,
    w: usize,
    /// [hidden, c]
    w1: &'a [f32],
    b1: &'a [f32],
    /// [hidden, 9]
    taps: &'a [f32],
    b2: &'a [f32],
    /// [c, hidden]
    w3: &'a [f32],
    b3: &'a [f32],
}

impl Block<'_> {
    /// Output rows `y0..y1` of one image: `out` holds that image's input ([c, h, w]) and gets
    /// its output in those rows.
    ///
    /// # Safety
    /// `out` addresses the image's c h w values, and no other task touches rows `y0..y1`.
    unsafe fn rows(&self, src: &[f32], out: *mut f32, [y0, y1]: [usize; 2]) {
        let &Self {
            c, hidden, h, w, ..
        } = self;
        let plane = h * w;
        // Expanded activations of rows ya - 1 ..= yb (slot s holds row ya - 1 + s; rows outside
        // the image are zeros, the depthwise convolution's padding), and the band's depthwise
        // output.
        let slots = (BAND + 2) * w;
        let mut expanded = vec![0.0f32; hidden * slots];
        let mut mixed = vec![0.0f32; hidden * BAND * w];
        let mut ya = y0;
        // Slots already holding their rows from the band before (its last two).
        let mut kept = 0;
        while ya < y1 {
            let yb = (ya + BAND).min(y1);
            let rows = yb - ya;
            // Rows ya - 1 + kept .. yb + 1 still to expand, clipped to the image.
            let first = (ya + kept).saturating_sub(1);
            let end = (yb + 1).min(h);
            if ya == 0 {
                zero_slot(&mut expanded, 0, slots, w);
            }
            if yb + 1 > h {
                zero_slot(&mut expanded, rows + 1, slots, w);
            }
            if first < end {
                self.expand(src, &mut expanded, first + 1 - ya, [first, end]);
            }
            for ch in 0..hidden {
                let slot = &expanded[ch * slots..(ch + 1) * slots];
                let taps: &[f32; 9] = self.taps[ch * 9..ch * 9 + 9].try_into().expect("9 taps");
                let dst = &mut mixed[ch * BAND * w..ch * BAND * w + rows * w];
                for (i, row) in dst.chunks_exact_mut(w).enumerate() {
                    let lines = [0, 1, 2].map(|dy| &slot[(i + dy) * w..(i + dy + 1) * w]);
                    row_stride1(&lines, taps, self.b2[ch], row);
                }
                gelu_slice(dst);
            }
            // SAFETY: rows ya..yb of the image are this task's; each channel's run of them lies
            // inside its plane.
            unsafe {
                let dst = out.add(ya * w);
                for ch in 0..c {
                    let run = std::slice::from_raw_parts_mut(dst.add(ch * plane), rows * w);
                    run.iter_mut().for_each(|v| *v += self.b3[ch]);
                }
                gemm_add(
                    [c, rows * w, hidden],
                    (dst, plane as isize, 1),
                    (self.w3.as_ptr(), hidden as isize, 1),
                    (mixed.as_ptr(), (BAND * w) as isize, 1),
                    gemm::Parallelism::None,
                );
                for ch in 0..c {
                    gelu_slice(std::slice::from_raw_parts_mut(
                        dst.add(ch * plane),
                        rows * w,
                    ));
                }
            }
            // The next band's first two slots are this band's last two rows.
            for ch in 0..hidden {
                let at = ch * slots;
                expanded.copy_within(at + rows * w..at + (rows + 2) * w, at);
            }
            kept = 2;
            ya = yb;
        }
    }

    /// GELU of the expansion of image rows `first..end` into the slots from `slot` on.
    fn expand(&self, src: &[f32], expanded: &mut [f32], slot: usize, [first, end]: [usize; 2]) {
        let (plane, slots) = (self.h * self.w, (BAND + 2) * self.w);
        let n = (end - first) * self.w;
        for ch in 0..self.hidden {
            let at = ch * slots + slot * self.w;
            expanded[at..at + n].fill(self.b1[ch]);
        }
        // SAFETY: the destination's `hidden` rows of n values lie `slots` apart inside
        // `expanded`; the source's c rows of n values lie `plane` apart inside the image.
        unsafe {
            gemm_add(
                [self.hidden, n, self.c],
                (expanded.as_mut_ptr().add(slot * self.w), slots as isize, 1),
                (self.w1.as_ptr(), self.c as isize, 1),
                (src.as_ptr().add(first * self.w), plane as isize, 1),
                gemm::Parallelism::None,
            );
        }
        for ch in 0..self.hidden {
            let at = ch * slots + slot * self.w;
            gelu_slice(&mut expanded[at..at + n]);
        }
    }
}

/// Zeros in slot `slot` of every channel.
fn zero_slot(expanded: &mut [f32], slot: usize, slots: usize, w: usize) {
    for channel in expanded.chunks_exact_mut(slots) {
        channel[slot * w..(slot + 1) * w].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, activation};

    use super::*;

    fn block(c: usize, hidden: usize, device: &Device) -> MBConv {
        let pointwise = |i, o| Conv2dConfig::new([i, o], [1, 1]).init(device);
        MBConv {
            conv1: pointwise(c, hidden),
            conv2: Conv2dConfig::new([hidden, hidden], [3, 3])
                .with_groups(hidden)
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            conv3: pointwise(hidden, c),
        }
    }

    /// The banded pass against the op-by-op one, on sides that leave a short last band, a single
    /// band, and a single row, with two images (tasks of one image each or several).
    #[test]
    fn banded_matches_op_by_op() {
        let device = Device::flex();
        for (h, w) in [(37, 9), (3, 5), (1, 4), (40, 2)] {
            let block = block(3, 12, &device);
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Default, &device);
            assert!(block.banded_fits(3));
            let ours = block.banded(x.clone()).into_data();
            // burn's own ops, not this crate's kernels.
            let y = activation::gelu(block.conv1.forward(x.clone()));
            let y = activation::gelu(block.conv2.forward(y));
            let reference = activation::gelu(block.conv3.forward(y) + x).into_data();
            assert_eq!(ours.shape(), reference.shape());
            let (ours, reference) = (
                ours.try_to_vec::<f32>().unwrap(),
                reference.try_to_vec::<f32>().unwrap(),
            );
            for (a, b) in ours.iter().zip(&reference) {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{a} against {b} ({h} x {w})"
                );
            }
        }
    }
}
