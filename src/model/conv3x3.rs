//! 3x3 convolutions (stride 1, padding 1, no groups) on the CPU backend: forward and backward as
//! im2col and gemm over bands of output rows. These are the CNN head's blocks, the UNet's and
//! the encoders' necks. flex runs such a convolution forward at about half PyTorch's speed and,
//! under autodiff, takes its weight gradient as a convolution with the output gradient as the
//! kernel (9 outputs per product: gemm's narrowest kernel) and its input gradient as a transposed
//! convolution; these layers took 3-4x PyTorch's time forward and backward, and most of the CNN
//! head's training step. Here the weight gradient is one product per band, the output gradient against the
//! band's im2col, and the input gradient is the forward convolution with the kernel flipped.
//! Tracked tensors join burn's graph through its extension points as in [`super::tracked`];
//! other devices and shapes keep burn's convolution.

use std::cell::RefCell;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::FlexTensor;

use super::kernels::{self, Disjoint, f32s};

/// Output values per band (whole rows, at least one): the band's im2col ([9 C, BAND], at most
/// 2.4 MB for the neck's 256 channels) stays in the core's cache between its writing and gemm's
/// reading. 512 and 2048 were 15-35% slower in whole training steps.
const BAND: usize = 256;

/// The sizes of one convolution over a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dims {
    batch: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
}

impl Dims {
    fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Output rows per band.
    fn band_rows(&self) -> usize {
        (BAND / self.w).clamp(1, self.h)
    }

    /// (image, first row, rows) of every band.
    fn bands(&self) -> Vec<(usize, usize, usize)> {
        let rows = self.band_rows();
        (0..self.batch)
            .flat_map(|b| (0..self.h).step_by(rows).map(move |y| (b, y, rows)))
            .map(|(b, y, rows)| (b, y, rows.min(self.h - y)))
            .collect()
    }

    /// The same convolution run backward: output gradient in, input gradient out.
    fn transposed(self) -> Self {
        Self {
            cin: self.cout,
            cout: self.cin,
            ..self
        }
    }
}

/// `conv` on `x`; on an f32 CPU tensor (tracked or not) for a 3x3, stride-1, padding-1,
/// ungrouped convolution, the kernels here, elsewhere burn's.
pub fn conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let fits = conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(
            conv.padding,
            PaddingConfig2d::Explicit(1, 1, 1, 1) | PaddingConfig2d::Same
        );
    if !fits || x.dtype() != DType::F32 {
        return conv.forward(x);
    }
    if kernels::on_flex(&x) {
        return untracked(conv, x);
    }
    if x.device().is_autodiff()
        && let Some(y) = tracked(conv, x.clone())
    {
        return y;
    }
    conv.forward(x)
}

fn dims(conv: &Conv2d, x: &Tensor<4>) -> Dims {
    let [batch, cin, h, w] = x.dims();
    let [cout, ..] = conv.weight.dims();
    Dims {
        batch,
        cin,
        cout,
        h,
        w,
    }
}

fn untracked(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let d = dims(conv, &x);
    let device = x.device();
    let primitive = |t: Tensor<4>| kernels::flat(t.try_into_primitive::<Flex>().expect("on_flex"));
    let (x, weight) = (primitive(x), primitive(conv.weight.val()));
    let bias = conv.bias.as_ref().map(|b| {
        kernels::flat(
            b.val()
                .try_into_primitive::<Flex>()
                .expect("on the CPU backend"),
        )
    });
    let y = forward(f32s(&x), f32s(&weight), bias.as_ref().map(f32s), d);
    Tensor::from_data(TensorData::new(y, [d.batch, d.cout, d.h, d.w]), &device)
}

/// The tracked convolution, or `None` when a parameter is not on the tracked CPU backend.
fn tracked(conv: &Conv2d, x: Tensor<4>) -> Option<Tensor<4>> {
    let d = dims(conv, &x);
    let on_tracked = |t: Tensor<4>| t.try_into_primitive::<Autodiff<Flex>>().ok();
    let x = on_tracked(x)?;
    let weight = on_tracked(conv.weight.val())?;
    let bias = match &conv.bias {
        Some(b) => Some(b.val().try_into_primitive::<Autodiff<Flex>>().ok()?),
        None => None,
    };
    let xs = kernels::flat(x.primitive().clone());
    let ws = kernels::flat(weight.primitive().clone());
    let bs = bias.as_ref().map(|b| kernels::flat(b.primitive().clone()));
    let y = forward(f32s(&xs), f32s(&ws), bs.as_ref().map(f32s), d);
    let y = FlexTensor::from_data(TensorData::new(y, [d.batch, d.cout, d.h, d.w]));
    let state = State {
        x: xs,
        weight: ws,
        dims: d,
    };
    let out = match bias {
        Some(bias) => finish(
            Conv3x3Backward
                .prepare::<NoCheckpointing>([x.node(), weight.node(), bias.node()])
                .compute_bound()
                .stateful(),
            state,
            y,
        ),
        None => finish(
            Conv3x3Backward
                .prepare::<NoCheckpointing>([x.node(), weight.node()])
                .compute_bound()
                .stateful(),
            state,
            y,
        ),
    };
    Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
}

fn finish<const N: usize>(
    kind: OpsKind<Conv3x3Backward, Flex, State, NoCheckpointing, N>,
    state: State,
    y: FlexTensor,
) -> FloatTensor<Autodiff<Flex>> {
    match kind {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// What the backward step reads: the input and the kernel, contiguous.
#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    weight: FlexTensor,
    dims: Dims,
}

/// The backward step; parents are the input, the kernel and, when there is one, the bias.
#[derive(Debug)]
struct Conv3x3Backward;

impl<const N: usize> Backward<Flex, N> for Conv3x3Backward {
    type State = State;

    fn backward(self, ops: Ops<State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let State { x, weight, dims: d } = ops.state;
        let grad = kernels::flat(grads.consume::<Flex>(&ops.node));
        let dy = f32s(&grad);
        let parents = &ops.parents;
        if let Some(node) = &parents[0] {
            let flipped = flip(f32s(&weight), d);
            let dx = forward(dy, &flipped, None, d.transposed());
            let dx = TensorData::new(dx, [d.batch, d.cin, d.h, d.w]);
            grads.register::<Flex>(node.id, FlexTensor::from_data(dx));
        }
        if let Some(node) = &parents[1] {
            let dw = weight_grad(f32s(&x), dy, d);
            let dw = TensorData::new(dw, [d.cout, d.cin, 3, 3]);
            grads.register::<Flex>(node.id, FlexTensor::from_data(dw));
        }
        if let Some(Some(node)) = parents.get(2) {
            let db = TensorData::new(bias_grad(dy, d), [d.cout]);
            grads.register::<Flex>(node.id, FlexTensor::from_data(db));
        }
    }
}

thread_local! {
    /// Each thread's im2col buffer, kept between bands and calls: a fresh one per band costs
    /// page faults on every use.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` with this thread's im2col buffer.
fn with_cols<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    COLS.with_borrow_mut(f)
}

/// `f` for every band, in parallel where there are threads.
fn for_bands(d: Dims, f: impl Fn((usize, usize, usize), &mut Vec<f32>) + Sync + Send) {
    let bands = d.bands();
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        bands
            .into_par_iter()
            .for_each(|band| with_cols(|cols| f(band, cols)));
    }
    #[cfg(target_arch = "wasm32")]
    for band in bands {
        with_cols(|cols| f(band, cols));
    }
}

/// Rows `y0..y0 + rows` of image `x` ([C, H, W]) as im2col columns: `cols` becomes [9 C, rows W],
/// row `c 9 + ky 3 + kx` holding the input shifted by (ky - 1, kx - 1), zero outside. That is
/// the order of a [Cout, C, 3, 3] kernel's values, so the kernel is the product's lhs as it is.
fn im2col(x: &[f32], d: Dims, y0: usize, rows: usize, cols: &mut Vec<f32>) {
    let (h, w) = (d.h, d.w);
    let len = rows * w;
    // Every value is written below, so growing needs no zeroing pass of its own.
    cols.resize(9 * d.cin * len, 0.0);
    for (c, plane) in x.chunks_exact(h * w).enumerate() {
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut cols[((c * 9 + ky * 3 + kx) * len)..][..len];
                for (i, out) in row.chunks_exact_mut(w).enumerate() {
                    let Some(sy) = (y0 + i + ky).checked_sub(1).filter(|&sy| sy < h) else {
                        out.fill(0.0);
                        continue;
                    };
                    let src = &plane[sy * w..][..w];
                    match kx {
                        0 => {
                            out[0] = 0.0;
                            out[1..].copy_from_slice(&src[..w - 1]);
                        }
                        1 => out.copy_from_slice(src),
                        _ => {
                            out[..w - 1].copy_from_slice(&src[1..]);
                            out[w - 1] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// The convolution of `x` ([B, Cin, H, W]) with `weight` ([Cout, Cin, 3, 3]) plus `bias`.
fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, d: Dims) -> Vec<f32> {
    assert_eq!(x.len(), d.batch * d.cin * d.plane(), "conv3x3 input");
    assert_eq!(weight.len(), d.cout * d.cin * 9, "conv3x3 kernel");
    let mut out = vec![0.0f32; d.batch * d.cout * d.plane()];
    // Each task writes its own rows.
    let shared = Disjoint::new(&mut out);
    let shared = &shared;
    for_bands(d, |(b, y0, rows), cols| {
        let image = &x[b * d.cin * d.plane()..][..d.cin * d.plane()];
        im2col(image, d, y0, rows, cols);
        let len = rows * d.w;
        // SAFETY: rows of `len` values from (b, o, y0) with row stride H W lie inside the
        // B Cout H W output, and no other band writes them.
        unsafe {
            let dst = shared.at(b * d.cout * d.plane() + y0 * d.w);
            if let Some(bias) = bias {
                for (o, &v) in bias.iter().enumerate() {
                    std::slice::from_raw_parts_mut(dst.add(o * d.plane()), len).fill(v);
                }
            }
            kernels::gemm_add(
                [d.cout, len, 9 * d.cin],
                (dst, d.plane() as isize, 1),
                (weight.as_ptr(), 9 * d.cin as isize, 1),
                (cols.as_ptr(), len as isize, 1),
                gemm::Parallelism::None,
            );
        }
    });
    out
}

/// The kernel of the input gradient: [Cin, Cout, 3, 3], each 3x3 turned half a turn.
fn flip(weight: &[f32], d: Dims) -> Vec<f32> {
    let mut out = vec![0.0; weight.len()];
    for o in 0..d.cout {
        for c in 0..d.cin {
            for t in 0..9 {
                out[(c * d.cout + o) * 9 + 8 - t] = weight[(o * d.cin + c) * 9 + t];
            }
        }
    }
    out
}

/// dL/dweight, [Cout, Cin, 3, 3]: the sum over bands of the output gradient's band
/// ([Cout, len]) times the band's im2col transposed ([len, 9 Cin]).
fn weight_grad(x: &[f32], dy: &[f32], d: Dims) -> Vec<f32> {
    let size = d.cout * 9 * d.cin;
    let band = |(b, y0, rows): (usize, usize, usize), cols: &mut Vec<f32>, acc: &mut [f32]| {
        im2col(
            &x[b * d.cin * d.plane()..][..d.cin * d.plane()],
            d,
            y0,
            rows,
            cols,
        );
        let len = rows * d.w;
        let grad = &dy[b * d.cout * d.plane() + y0 * d.w..];
        // SAFETY: `grad` holds Cout rows of `len` values at row stride H W (the last ends
        // inside the image), `cols` 9 Cin rows of `len`, and `acc` 9 Cin rows of Cout.
        unsafe {
            kernels::gemm_add(
                [d.cout, 9 * d.cin, len],
                (acc.as_mut_ptr(), 1, d.cout as isize),
                (grad.as_ptr(), d.plane() as isize, 1),
                (cols.as_ptr(), 1, len as isize),
                gemm::Parallelism::None,
            );
        }
    };
    // Accumulated as [9 Cin, Cout]: gemm then reads each band's im2col in place, where the
    // [Cout, 9 Cin] layout makes it copy the im2col into its own panels first.
    #[cfg(not(target_arch = "wasm32"))]
    let sum = {
        use rayon::prelude::*;
        d.bands()
            .into_par_iter()
            .fold(
                || vec![0.0f32; size],
                |mut acc, b| {
                    with_cols(|cols| band(b, cols, &mut acc));
                    acc
                },
            )
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
            .unwrap_or_else(|| vec![0.0; size])
    };
    #[cfg(target_arch = "wasm32")]
    let sum = {
        let mut acc = vec![0.0f32; size];
        for b in d.bands() {
            with_cols(|cols| band(b, cols, &mut acc));
        }
        acc
    };
    let mut out = vec![0.0f32; size];
    for (r, row) in sum.chunks_exact(d.cout).enumerate() {
        for (o, &v) in row.iter().enumerate() {
            out[o * 9 * d.cin + r] = v;
        }
    }
    out
}

/// dL/dbias: the output gradient summed over the batch and the plane.
fn bias_grad(dy: &[f32], d: Dims) -> Vec<f32> {
    let mut out = vec![0.0f32; d.cout];
    for image in dy.chunks_exact(d.cout * d.plane()) {
        for (o, plane) in image.chunks_exact(d.plane()).enumerate() {
            out[o] += kernels::sum(plane, |v| v) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Device;

    fn close(got: Tensor<4>, want: Tensor<4>, tol: f32) {
        assert_eq!(got.dims(), want.dims());
        let (got, want) = (
            got.into_data().try_to_vec::<f32>().unwrap(),
            want.into_data().try_to_vec::<f32>().unwrap(),
        );
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{i}: {a} vs {b}");
        }
    }

    fn input(shape: [usize; 4], seed: u32, device: &Device) -> Tensor<4> {
        let n = shape.iter().product();
        Tensor::from_data(
            TensorData::new(crate::backend::pattern(n, seed), shape),
            device,
        )
    }

    /// Shapes whose bands split images unevenly (7 rows of 300 columns per band), so that the
    /// band bounds and the padding rows are both exercised.
    const SHAPE: [usize; 4] = [2, 3, 9, 300];

    #[test]
    fn forward_is_burns_convolution() {
        let device = crate::backend::cpu();
        for bias in [true, false] {
            let conv = Conv2dConfig::new([3, 5], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(bias)
                .init(&device);
            let x = input(SHAPE, 4, &device);
            close(conv3x3(&conv, x.clone()), conv.forward(x), 1e-5);
        }
    }

    #[test]
    fn gradients_are_burns() {
        let device = crate::backend::cpu().autodiff();
        let conv = Conv2dConfig::new([3, 5], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = input(SHAPE, 4, &device).require_grad();
        let [b, _, h, w] = SHAPE;
        let target = input([b, 5, h, w], 7, &device);
        let run = |y: Tensor<4>| {
            let grads = (y * target.clone()).sum().backward();
            let bias = conv.bias.as_ref().unwrap();
            (
                x.grad(&grads).unwrap(),
                conv.weight.grad(&grads).unwrap(),
                bias.grad(&grads).unwrap().reshape([1, 1, 1, 5]),
            )
        };
        let ours = run(conv3x3(&conv, x.clone()));
        let burns = run(conv.forward(x.clone()));
        close(ours.0, burns.0, 1e-4);
        close(ours.1, burns.1, 1e-4);
        close(ours.2, burns.2, 1e-4);
    }
}
