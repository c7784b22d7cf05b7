//! The encoders' hot operations where burn's CPU backend (flex) spends more passes than they need.
//! flex computes GELU through scalar libm `erff` (a fifth of a LiteMedSAM pass), a softmax through
//! scalar `expf` after separate passes for the scale and the bias, and a linear layer as a matrix
//! product into a zeroed buffer followed by a pass that adds the bias. On a flex tensor these run
//! here as one pass each over the tensor's own buffer (macerator's SIMD: the widest instructions
//! at run time natively, SIMD128 in wasm; rayon's threads natively), and the bias goes into the
//! buffer that gemm accumulates onto. Other devices, and tensors that carry gradients, keep
//! burn's ops.

use std::mem::MaybeUninit;

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::activation;
use burn::tensor::{Device, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use macerator::{Scalar, Simd, Vector, vload_unaligned, vstore_unaligned};

/// Values per parallel task: big enough to amortize a task, small enough to spread a stage's
/// tensors over every thread.
const CHUNK: usize = 1 << 14;

/// Runs `f` on consecutive chunks of `values`, each a whole number of `unit`s, in parallel where
/// there are threads.
fn for_chunks(values: &mut [f32], unit: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let len = CHUNK.div_ceil(unit).max(1) * unit;
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        values
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i * len / unit, c));
    }
    #[cfg(target_arch = "wasm32")]
    for (i, c) in values.chunks_mut(len).enumerate() {
        f(i * len / unit, c);
    }
}

/// `f` on each block of `block` values of `values` with its index, in parallel where there are
/// threads; what each call returns, in block order.
pub(crate) fn per_block<T: Send>(
    values: &mut [f32],
    block: usize,
    f: impl Fn(usize, &mut [f32]) -> T + Sync + Send,
) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        values
            .par_chunks_mut(block)
            .enumerate()
            .map(|(i, b)| f(i, b))
            .collect()
    }
    #[cfg(target_arch = "wasm32")]
    values
        .chunks_mut(block)
        .enumerate()
        .map(|(i, b)| f(i, b))
        .collect()
}

/// Accumulators of [`sum`] and [`sum_pairs`]: as many as an AVX-512 register holds, so the
/// compiler turns the loop over them into vector adds (a single f64 accumulator is a chain of
/// scalar adds, a tenth of the speed).
const LANES: usize = 16;

/// Values summed in f32 lanes before they are folded into the f64 total: the lanes' rounding
/// stays near f32's precision of one run's sum.
const RUN: usize = 1024;

/// The sum of `f(v)` over `values`, in f64.
pub(crate) fn sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum_pairs(values, values, |v, _| (f(v), 0.0)).0
}

/// The sums of both halves of `f(a, b)` over the pairs of `a` and `b` (of equal length), in f64.
pub(crate) fn sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "paired slices");
    let (mut first, mut second) = (0.0f64, 0.0f64);
    for (a, b) in a.chunks(RUN).zip(b.chunks(RUN)) {
        let (mut p, mut q) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
            let (u, v) = f(x, y);
            p[0] += u;
            q[0] += v;
        }
        for (x, y) in ac.zip(bc) {
            let (x, y): (&[f32; LANES], &[f32; LANES]) =
                (x.try_into().expect("lanes"), y.try_into().expect("lanes"));
            for l in 0..LANES {
                let (u, v) = f(x[l], y[l]);
                p[l] += u;
                q[l] += v;
            }
        }
        first += p.iter().map(|&v| v as f64).sum::<f64>();
        second += q.iter().map(|&v| v as f64).sum::<f64>();
    }
    (first, second)
}

/// Whether the kernels here apply: an f32 tensor on the CPU backend without autodiff. The
/// device test alone is not enough: burn's device equality ignores autodiff, and a kernel that
/// reads a tracked tensor's values cuts its graph (training heads then froze every layer before
/// the kernel).
pub fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    let device = x.device();
    !device.is_autodiff() && device == Device::flex() && x.dtype() == burn::tensor::DType::F32
}

/// `0.5 x (1 + erf(x / sqrt 2))`, within 1e-6 max(1, |x|) of the exact value.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x) {
        return super::tracked::gelu(x);
    }
    let device = x.device();
    let mut data = x.into_data();
    let values = data.as_mut_slice::<f32>().expect("an f32 tensor's data");
    for_chunks(values, 1, |_, c| gelu_slice(c));
    Tensor::from_data(data, &device)
}

/// `softmax(logits * scale + bias, 3)`, where `bias` ([1, heads, N, N]) repeats over the windows
/// of `logits` ([windows, heads, N, N]).
pub fn attention_softmax(logits: Tensor<4>, scale: f32, bias: Tensor<4>) -> Tensor<4> {
    let [_, heads, n, m] = logits.dims();
    if !on_flex(&logits) {
        return activation::softmax(logits.mul_scalar(scale) + bias, 3);
    }
    let device = logits.device();
    let mut data = logits.into_data();
    let bias = bias.into_data();
    let bias = bias.as_slice::<f32>().expect("an f32 bias");
    let values = data.as_mut_slice::<f32>().expect("an f32 tensor's data");
    for_chunks(values, m, |first_row, rows| {
        softmax_rows(rows, first_row, [heads, n, m], scale, bias)
    });
    Tensor::from_data(data, &device)
}

/// `x W + b` over the last dimension of `x`.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x) {
        return layer.forward(x);
    }
    let mut dims = x.dims();
    let [k, n] = layer.weight.dims();
    let m = x.shape().num_elements() / k;
    let device = x.device();
    let (x, weight) = (values(&x), values(&layer.weight.val()));
    let bias = layer.bias.as_ref().map(|b| values(&b.val()));
    let bias = bias.as_ref().map(|b| Bias::PerColumn(f32s(b)));
    let (lhs, rhs) = (f32s(&x), f32s(&weight));
    let out = product_output(m * n, |out| {
        gemm_bias_into(out, &Product { m, n, k, lhs, rhs }, bias)
    });
    dims[D - 1] = n;
    Tensor::from_data(TensorData::new(out, dims), &device)
}

/// A 1x1 stride-1 convolution of an NCHW flex tensor (`on_flex`): per image, `W x + b` with W
/// [out, in] and x [in, H W].
pub fn pointwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [out, ..] = conv.weight.dims();
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let (x, weight) = (values(&x), values(&conv.weight.val()));
    let bias = conv.bias.as_ref().map(|b| values(&b.val()));
    let plane = out * h * w;
    let out_values = product_output(b * plane, |out_values| {
        for (image, dst) in f32s(&x)
            .chunks_exact(c * h * w)
            .zip(out_values.chunks_exact_mut(plane))
        {
            let bias = bias.as_ref().map(|b| Bias::PerRow(f32s(b)));
            let (lhs, rhs) = (f32s(&weight), image);
            let product = Product {
                m: out,
                n: h * w,
                k: c,
                lhs,
                rhs,
            };
            gemm_bias_into(dst, &product, bias);
        }
    });
    Tensor::from_data(TensorData::new(out_values, [b, out, h, w]), &device)
}

/// The tensor as a contiguous row-major buffer: flex's own when it is one already, so that
/// reading a tensor that is shared (a residual's input, a layer's weight) copies nothing.
pub(crate) fn values<const D: usize>(x: &Tensor<D>) -> FlexTensor {
    flat(
        x.clone()
            .try_into_primitive::<Flex>()
            .expect("an f32 tensor on the CPU backend (on_flex)"),
    )
}

/// `t` itself when its values are one contiguous run, else a contiguous copy.
pub(crate) fn flat(t: FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// `x` laid out contiguously: on the CPU backend a transposed view is copied once here, by
/// flex's tiled copy, instead of walked element by element by every add and norm that reads
/// it (a strided residual add over 16384 x 128 tokens: 33 ms; contiguous: 0.8 ms).
pub fn contiguous<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x) {
        return x;
    }
    let t = values(&x);
    Tensor::from_primitive::<Flex>(t)
}

pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// A product's output of `len` values, which `write` (a [`gemm_bias_into`]) sets in full before
/// anything reads it: no zeroing pass first (over a 1x1 convolution's 64 MiB output, about 2% of
/// a wasm pass).
fn product_output(len: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    write(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `write` set all `len` values.
    unsafe { out.set_len(len) };
    out
}

/// A buffer's address, shared by parallel tasks that each write their own disjoint part of it
/// (rows of a band, a window's head, a block of columns).
pub(crate) struct Disjoint<T>(*mut T);

// SAFETY: the tasks that hold it write disjoint parts of a buffer that outlives them; each
// caller states which part in its own SAFETY comment.
unsafe impl<T> Sync for Disjoint<T> {}

impl<T> Disjoint<T> {
    pub(crate) fn new(buffer: &mut [T]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// The address `offset` values into the buffer.
    pub(crate) fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// A bias along the output's rows (one value per row) or its columns (one per column).
enum Bias<'a> {
    PerRow(&'a [f32]),
    PerColumn(&'a [f32]),
}

/// A product's operands: row-major lhs [m, k] and rhs [k, n].
struct Product<'a> {
    m: usize,
    n: usize,
    k: usize,
    lhs: &'a [f32],
    rhs: &'a [f32],
}

/// `out = bias + lhs rhs` ([m, n], row-major), every value set before any is read (`out` may
/// start uninitialized): natively the bias fills the output and gemm adds the product onto it;
/// in wasm the product's first block of depths writes bias plus sums.
fn gemm_bias_into(out: &mut [MaybeUninit<f32>], product: &Product, bias: Option<Bias>) {
    let &Product { m, n, k, lhs, rhs } = product;
    assert_eq!(
        (lhs.len(), rhs.len(), out.len()),
        (m * k, k * n, m * n),
        "gemm operands"
    );
    match &bias {
        Some(Bias::PerRow(b)) => assert_eq!(b.len(), m, "bias length"),
        Some(Bias::PerColumn(b)) => assert_eq!(b.len(), n, "bias length"),
        None => {}
    }
    #[cfg(not(target_arch = "wasm32"))]
    if rayon::current_num_threads() > 1 {
        if m <= COLUMN_SPLIT_ROWS && n >= 4 * COLUMN_BLOCK {
            return gemm_bias_by_columns(out, product, bias);
        }
        if m >= 2 * ROW_BLOCK && m * n * k >= 1 << 18 {
            return gemm_bias_by_rows(out, product, bias);
        }
    }
    // In wasm the product writes the bias itself (`simd128::gemm`'s `Start`).
    #[cfg(target_arch = "wasm32")]
    {
        use super::simd128::{Start, gemm};
        let start = match bias {
            Some(Bias::PerRow(b)) => Start::Rows(b),
            Some(Bias::PerColumn(b)) => Start::Columns(b),
            None => Start::Zero,
        };
        // SAFETY: the three buffers hold m n, m k and k n values, laid out with the strides
        // given; the bias holds m or n values (asserted above).
        unsafe {
            gemm(
                [m, n, k],
                (out.as_mut_ptr().cast::<f32>(), n as isize, 1).into(),
                (lhs.as_ptr(), k as isize, 1).into(),
                (rhs.as_ptr(), n as isize, 1).into(),
                start,
            )
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        for (r, row) in out.chunks_exact_mut(n).enumerate() {
            fill_bias_row(row, r, 0, bias.as_ref());
        }
        let parallelism = if m * n * k >= 1 << 18 {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the three buffers hold m n, m k and k n values, laid out with the strides
        // given.
        unsafe {
            gemm_add(
                [m, n, k],
                (out.as_mut_ptr().cast::<f32>(), n as isize, 1),
                (lhs.as_ptr(), k as isize, 1),
                (rhs.as_ptr(), n as isize, 1),
                parallelism,
            )
        }
    }
}

/// Products with at most this many output rows and wide outputs (a 1x1 convolution's few output
/// channels over 65536 pixels) go by column blocks: gemm's own threads split such a shape so
/// that two threads are slower than one (64 x 65536 x 256: 41 ms on two threads, 31 ms on one,
/// 16 ms as column blocks on two).
#[cfg(not(target_arch = "wasm32"))]
const COLUMN_SPLIT_ROWS: usize = 512;
#[cfg(not(target_arch = "wasm32"))]
const COLUMN_BLOCK: usize = 2048;

/// [`gemm_bias_into`] as one single-threaded product per block of [`COLUMN_BLOCK`] columns,
/// the blocks spread over rayon's threads.
#[cfg(not(target_arch = "wasm32"))]
fn gemm_bias_by_columns(out: &mut [MaybeUninit<f32>], product: &Product, bias: Option<Bias>) {
    use rayon::prelude::*;
    let &Product { m, n, k, lhs, rhs } = product;
    // Each task writes its own block of columns.
    let columns = Disjoint::new(out);
    let columns = &columns;
    (0..n.div_ceil(COLUMN_BLOCK)).into_par_iter().for_each(|j| {
        let first = j * COLUMN_BLOCK;
        let width = COLUMN_BLOCK.min(n - first);
        // SAFETY: rows of `width` values from column `first`, with row stride n, lie inside the
        // m n output; no other task touches these columns.
        unsafe {
            let dst = columns.at(first);
            for r in 0..m {
                let row = std::slice::from_raw_parts_mut(dst.add(r * n), width);
                fill_bias_row(row, r, first, bias.as_ref());
            }
            gemm_add(
                [m, width, k],
                (dst.cast::<f32>(), n as isize, 1),
                (lhs.as_ptr(), k as isize, 1),
                (rhs.as_ptr().add(first), n as isize, 1),
                gemm::Parallelism::None,
            );
        }
    });
}

/// Tall products (a token-wise linear layer over 16384 tokens) go by blocks of rows of at least
/// this many: under gemm's own threads the bias fill of the whole output ran on one thread, and
/// layer 1's 128-to-512 MLP layer gained 1.1x from a second thread.
#[cfg(not(target_arch = "wasm32"))]
const ROW_BLOCK: usize = 256;

/// [`gemm_bias_into`] as one single-threaded product per block of rows (about eight blocks a
/// thread), each filling its own rows' bias first, the blocks spread over rayon's threads.
#[cfg(not(target_arch = "wasm32"))]
fn gemm_bias_by_rows(out: &mut [MaybeUninit<f32>], product: &Product, bias: Option<Bias>) {
    use rayon::prelude::*;
    let &Product { m, n, k, lhs, rhs } = product;
    let rows = ROW_BLOCK.max(m.div_ceil(8 * rayon::current_num_threads()));
    out.par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(j, block)| {
            let first = j * rows;
            let height = block.len() / n;
            for (r, row) in block.chunks_exact_mut(n).enumerate() {
                fill_bias_row(row, first + r, 0, bias.as_ref());
            }
            // SAFETY: the block holds `height` rows of n values; lhs rows from `first` hold k
            // values each, and rhs is the whole [k, n] operand.
            unsafe {
                gemm_add(
                    [height, n, k],
                    (block.as_mut_ptr().cast::<f32>(), n as isize, 1),
                    (lhs.as_ptr().add(first * k), k as isize, 1),
                    (rhs.as_ptr(), n as isize, 1),
                    gemm::Parallelism::None,
                );
            }
        });
}

/// Fills `row`, output row `r` from column `first` on, with the bias (zero without one).
#[cfg(not(target_arch = "wasm32"))]
fn fill_bias_row(row: &mut [MaybeUninit<f32>], r: usize, first: usize, bias: Option<&Bias>) {
    match bias {
        Some(Bias::PerRow(b)) => row.fill(MaybeUninit::new(b[r])),
        Some(Bias::PerColumn(b)) => {
            for (o, v) in row.iter_mut().zip(&b[first..]) {
                o.write(*v);
            }
        }
        None => row.fill(MaybeUninit::new(0.0)),
    }
}

/// `dst += lhs rhs` for [m, n] = [m, k] [k, n], each operand given as (pointer, row stride,
/// column stride), on gemm's own threads as `parallelism` says: none inside kernels whose tasks
/// are the parallel unit (blocks of a product, bands of a convolution, an attention's (window,
/// head) pairs). In wasm the product is [`simd128::gemm_add`](super::simd128::gemm_add)'s.
///
/// # Safety
/// Each pointer must address its operand's values at the strides given.
pub(crate) unsafe fn gemm_add(
    [m, n, k]: [usize; 3],
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    parallelism: gemm::Parallelism,
) {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = parallelism;
        // SAFETY: the caller's.
        unsafe { super::simd128::gemm_add([m, n, k], dst.into(), lhs.into(), rhs.into()) }
    }
    // SAFETY: the caller's.
    #[cfg(not(target_arch = "wasm32"))]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2,
            dst.1,
            true,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// erf(x) = x P(x²) / Q(x²) on [-4, 4], coefficients from the highest power down; outside, |erf|
/// is within 2e-8 of 1. The absolute error stays under 5e-7 over the whole range.
pub(super) const ERF_P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_6e-3,
    -1.609_603_3e-2,
];
pub(super) const ERF_Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// The same operations in the same order as the vector kernel, for the tail.
pub(super) fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_scaled_scalar(x))
}

/// `erf(x / sqrt 2)` by the rational approximation, with `x / sqrt 2` clamped to [-4, 4].
fn erf_scaled_scalar(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).clamp(-4.0, 4.0);
    let z2 = z * z;
    let p = ERF_P[1..].iter().fold(ERF_P[0], |acc, &c| acc * z2 + c);
    let q = ERF_Q[1..].iter().fold(ERF_Q[0], |acc, &c| acc * z2 + c);
    z * p / q
}

/// [`erf_scaled_scalar`] on a vector, the same operations in the same order.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn erf_scaled_vector<S: Simd>(x: Vector<S, f32>) -> Vector<S, f32> {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2.splat::<S>())
        .max((-4.0f32).splat::<S>())
        .min(4.0f32.splat::<S>());
    let z2 = z * z;
    let mut p = ERF_P[0].splat::<S>();
    for &c in &ERF_P[1..] {
        p = p * z2 + c.splat::<S>();
    }
    let mut q = ERF_Q[0].splat::<S>();
    for &c in &ERF_Q[1..] {
        q = q * z2 + c.splat::<S>();
    }
    z * p / q
}

#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn gelu_vector<S: Simd>(x: Vector<S, f32>) -> Vector<S, f32> {
    0.5f32.splat::<S>() * x * (1.0f32.splat::<S>() + erf_scaled_vector::<S>(x))
}

/// GELU in place: in wasm through [`super::simd128::gelu_in_place`], elsewhere
/// [`gelu_in_place`]; the same operations in the same order either way.
pub(crate) fn gelu_slice(values: &mut [f32]) {
    #[cfg(target_arch = "wasm32")]
    super::simd128::gelu_in_place(values);
    #[cfg(not(target_arch = "wasm32"))]
    gelu_in_place(values);
}

#[cfg(not(target_arch = "wasm32"))]
#[macerator::with_simd]
fn gelu_in_place<S: Simd>(values: &mut [f32]) {
    let lanes = <f32 as Scalar>::lanes::<S>();
    let mut chunks = values.chunks_exact_mut(lanes);
    for chunk in &mut chunks {
        // SAFETY: each chunk holds exactly `lanes` values.
        unsafe {
            let v = vload_unaligned::<S, f32>(chunk.as_ptr());
            vstore_unaligned::<S, f32>(chunk.as_mut_ptr(), gelu_vector::<S>(v));
        }
    }
    for x in chunks.into_remainder() {
        *x = gelu_scalar(*x);
    }
}

/// `grad * d gelu(x) / dx = grad * (Phi(x) + x phi(x))`, in place over `grad`, for
/// [`super::tracked`]: the same rational erf as [`gelu_vector`] and [`exp_vector`].
pub(crate) fn gelu_grad(x: &[f32], grad: &mut [f32]) {
    assert_eq!(x.len(), grad.len(), "one input value per gradient value");
    for_chunks(grad, 1, |start, g| {
        let x = &x[start..start + g.len()];
        // In wasm through the pseudo-minimum's clamps, as GELU itself (`gelu_slice`).
        #[cfg(target_arch = "wasm32")]
        super::simd128::gelu_grad_in_place(x, g);
        #[cfg(not(target_arch = "wasm32"))]
        gelu_grad_in_place(x, g);
    });
}

/// The standard normal density at zero, 1 / sqrt(2 pi).
pub(super) const INV_SQRT_2PI: f32 = 0.398_942_3;

pub(super) fn gelu_grad_scalar(x: f32) -> f32 {
    0.5 * (1.0 + erf_scaled_scalar(x)) + x * INV_SQRT_2PI * (-0.5 * x * x).max(-87.0).exp()
}

#[cfg(not(target_arch = "wasm32"))]
#[macerator::with_simd]
fn gelu_grad_in_place<S: Simd>(x: &[f32], grad: &mut [f32]) {
    let lanes = <f32 as Scalar>::lanes::<S>();
    let body = grad.len() / lanes * lanes;
    for (xs, gs) in x[..body]
        .chunks_exact(lanes)
        .zip(grad[..body].chunks_exact_mut(lanes))
    {
        // SAFETY: each chunk holds exactly `lanes` values.
        unsafe {
            let v = vload_unaligned::<S, f32>(xs.as_ptr());
            let g = vload_unaligned::<S, f32>(gs.as_ptr());
            let cdf = 0.5f32.splat::<S>() * (1.0f32.splat::<S>() + erf_scaled_vector::<S>(v));
            let pdf = INV_SQRT_2PI.splat::<S>() * exp_vector::<S>((-0.5f32).splat::<S>() * v * v);
            vstore_unaligned::<S, f32>(gs.as_mut_ptr(), g * (cdf + v * pdf));
        }
    }
    for (x, g) in x[body..].iter().zip(&mut grad[body..]) {
        *g *= gelu_grad_scalar(*x);
    }
}

/// GELU over a slice into a new buffer, for [`super::tracked`].
pub(crate) fn gelu_values(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    for_chunks(&mut out, 1, |_, c| gelu_slice(c));
    out
}

/// `exp` over a slice in place, for [`crate::loss`]: [`exp_vector`]'s precision.
#[macerator::with_simd]
pub(crate) fn exp_in_place<S: Simd>(values: &mut [f32]) {
    let lanes = <f32 as Scalar>::lanes::<S>();
    let mut chunks = values.chunks_exact_mut(lanes);
    for chunk in &mut chunks {
        // SAFETY: each chunk holds exactly `lanes` values.
        unsafe {
            let v = vload_unaligned::<S, f32>(chunk.as_ptr());
            vstore_unaligned::<S, f32>(chunk.as_mut_ptr(), exp_vector::<S>(v));
        }
    }
    for x in chunks.into_remainder() {
        *x = x.max(-87.0).exp();
    }
}

/// ln 2 split so that k * LN2_HI is exact for |k| < 2^10.
pub(super) const LN2_HI: f32 = 0.693_145_75;
pub(super) const LN2_LO: f32 = 1.428_606_8e-6;
/// e^r's Taylor polynomial to degree 6, from the highest power down.
pub(super) const EXP_TAYLOR: [f32; 7] = [
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// exp for x <= 88: 2^k e^r with r in [-ln 2 / 2, ln 2 / 2] and a degree-6 Taylor polynomial
/// (relative error about 2e-7); below -87 it returns 2^-126 e^r, which a softmax sums as zero.
#[inline(always)]
fn exp_vector<S: Simd>(x: Vector<S, f32>) -> Vector<S, f32> {
    use std::f32::consts::LOG2_E;
    let x = x.max((-87.0f32).splat::<S>()).min(88.0f32.splat::<S>());
    let k = (x * LOG2_E.splat::<S>()).round_ties_even();
    let r = x - k * LN2_HI.splat::<S>() - k * LN2_LO.splat::<S>();
    let mut p = EXP_TAYLOR[0].splat::<S>();
    for c in &EXP_TAYLOR[1..] {
        p = p * r + c.splat::<S>();
    }
    let scale = (k.round_to_int() + 127i32.splat::<S>()) << 23;
    p * scale.reinterpret::<f32>()
}

/// `softmax(row * scale + bias)` over consecutive rows from `first_row` of
/// `[windows, heads, n, m]` logits, `bias` being `[heads, n, m]`: in wasm through
/// [`super::simd128::softmax_row`] (the pseudo-minimum's clamps), elsewhere [`softmax_row`] with
/// one SIMD dispatch for all the rows (a window's rows are short: 49 values).
pub(crate) fn softmax_rows(
    rows: &mut [f32],
    first_row: usize,
    shape: [usize; 3],
    scale: f32,
    bias: &[f32],
) {
    #[cfg(target_arch = "wasm32")]
    for_rows(rows, first_row, shape, bias, |row, b| {
        super::simd128::softmax_row(row, scale, b)
    });
    #[cfg(not(target_arch = "wasm32"))]
    softmax_rows_simd(rows, first_row, shape, scale, bias);
}

#[cfg(not(target_arch = "wasm32"))]
#[macerator::with_simd]
fn softmax_rows_simd<S: Simd>(
    rows: &mut [f32],
    first_row: usize,
    shape: [usize; 3],
    scale: f32,
    bias: &[f32],
) {
    for_rows(rows, first_row, shape, bias, |row, b| {
        softmax_row::<S>(row, scale, b)
    });
}

/// `f(row, its bias)` for each row of `rows`, row `first_row` onwards of `[windows, heads, n, m]`.
#[inline(always)]
fn for_rows(
    rows: &mut [f32],
    first_row: usize,
    [heads, n, m]: [usize; 3],
    bias: &[f32],
    mut f: impl FnMut(&mut [f32], &[f32]),
) {
    for (r, row) in rows.chunks_exact_mut(m).enumerate() {
        let row_index = first_row + r;
        // Rows run through windows, then heads, then the N query positions.
        let head = row_index / n % heads;
        f(row, &bias[head * n * m + row_index % n * m..][..m]);
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn softmax_row<S: Simd>(row: &mut [f32], scale: f32, bias: &[f32]) {
    let lanes = <f32 as Scalar>::lanes::<S>();
    let body = row.len() / lanes * lanes;
    let scale_v = scale.splat::<S>();
    let mut max_v = f32::NEG_INFINITY.splat::<S>();
    for i in (0..body).step_by(lanes) {
        // SAFETY: i + lanes <= body <= row.len() == bias.len().
        unsafe {
            let x = vload_unaligned::<S, f32>(row.as_ptr().add(i)) * scale_v
                + vload_unaligned::<S, f32>(bias.as_ptr().add(i));
            vstore_unaligned::<S, f32>(row.as_mut_ptr().add(i), x);
            max_v = max_v.max(x);
        }
    }
    let mut max = max_v.reduce_max();
    for (x, b) in row[body..].iter_mut().zip(&bias[body..]) {
        *x = *x * scale + b;
        max = max.max(*x);
    }
    let max_v = max.splat::<S>();
    let mut sum_v = 0.0f32.splat::<S>();
    for i in (0..body).step_by(lanes) {
        // SAFETY: i + lanes <= body <= row.len().
        unsafe {
            let e = exp_vector::<S>(vload_unaligned::<S, f32>(row.as_ptr().add(i)) - max_v);
            vstore_unaligned::<S, f32>(row.as_mut_ptr().add(i), e);
            sum_v += e;
        }
    }
    let mut sum = sum_v.reduce_add();
    let tail = &mut row[body..];
    if !tail.is_empty() {
        // The tail through a full vector, so it rounds as the body does.
        let mut lane = [f32::NEG_INFINITY; 64];
        let lane = &mut lane[..lanes];
        lane[..tail.len()].copy_from_slice(tail);
        // SAFETY: `lane` holds exactly `lanes` values.
        unsafe {
            let e = exp_vector::<S>(vload_unaligned::<S, f32>(lane.as_ptr()) - max_v);
            vstore_unaligned::<S, f32>(lane.as_mut_ptr(), e);
        }
        for (x, e) in tail.iter_mut().zip(lane.iter()) {
            *x = *e;
            sum += e;
        }
    }
    let inv = 1.0 / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op<'a> = dyn Fn(Tensor<4>) -> Tensor<4> + 'a;

    #[test]
    fn tracked_tensors_keep_their_gradients() {
        // Each kernel on an autodiff tensor: its gradient must be burn's op's gradient.
        use burn::nn::LinearConfig;
        use burn::nn::conv::Conv2dConfig;
        let device = Device::flex().autodiff();
        let input = |dims: [usize; 4]| {
            let n = dims.iter().product();
            Tensor::<4>::from_data(
                TensorData::new(crate::backend::pattern(n, 5), dims),
                &device,
            )
            .require_grad()
        };
        let grad_of = |f: &Op| {
            let x = input([2, 6, 3, 4]);
            let grads = (f(x.clone()) * f(x.clone())).sum().backward();
            let g = x.grad(&grads).expect("a gradient reaches the input");
            g.into_data().try_to_vec::<f32>().unwrap()
        };
        let layer = LinearConfig::new(4, 5).init(&device);
        let conv = Conv2dConfig::new([6, 3], [1, 1]).init(&device);
        let bias = input([1, 6, 3, 4]).detach();
        let cases: [(&str, &Op, &Op); 5] = [
            ("gelu", &|x| gelu(x), &|x| activation::gelu(x)),
            ("gelu over [-6, 6)", &|x| gelu(x.mul_scalar(6.0)), &|x| {
                activation::gelu(x.mul_scalar(6.0))
            }),
            ("linear", &|x| linear(&layer, x), &|x| layer.forward(x)),
            (
                "pointwise",
                &|x| crate::model::common::conv(&conv, x),
                &|x| conv.forward(x),
            ),
            (
                "attention_softmax",
                &|x| attention_softmax(x, 0.3, bias.clone()),
                &|x| activation::softmax(x.mul_scalar(0.3) + bias.clone(), 3),
            ),
        ];
        for (name, ours, burns) in cases {
            let (a, b) = (grad_of(ours), grad_of(burns));
            assert!(
                b.iter().any(|v| v.abs() > 1e-6),
                "{name}: burn's gradient is zero"
            );
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                    "{name}: {x} against {y}"
                );
            }
        }
    }

    #[test]
    fn matches_burns_gelu() {
        // Every 1/1000 over [-10, 10], plus the extremes, through the vector body and the tail.
        let mut xs: Vec<f32> = (-10_000..=10_000).map(|i| i as f32 / 1000.0).collect();
        xs.extend([f32::MAX, f32::MIN, 0.0, -0.0, 1e-30, -1e-30]);
        let device = Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &device);
        let ours = gelu(t.clone()).into_data().try_to_vec::<f32>().unwrap();
        let burns = activation::gelu(t).into_data().try_to_vec::<f32>().unwrap();
        for ((x, a), b) in xs.iter().zip(&ours).zip(&burns) {
            assert!(
                (a - b).abs() <= 1e-6 * x.abs().max(1.0),
                "gelu({x}): {a} against burn's {b}"
            );
            assert_eq!(*a, gelu_scalar(*x), "the tail differs from the body at {x}");
        }
    }

    #[test]
    fn attention_softmax_matches_burns() {
        // TinyViT's shapes: 49 and 196 positions (a vector body and a tail), several heads and
        // windows, logits wide enough to reach exp's clamp.
        let device = Device::flex();
        for (windows, heads, n) in [(3, 2, 49), (2, 5, 196), (1, 1, 5)] {
            let logits = crate::backend::pattern(windows * heads * n * n, 1)
                .iter()
                .map(|v| v * 40.0)
                .collect::<Vec<_>>();
            let bias = crate::backend::pattern(heads * n * n, 2);
            let logits =
                Tensor::<4>::from_data(TensorData::new(logits, [windows, heads, n, n]), &device);
            let bias = Tensor::<4>::from_data(TensorData::new(bias, [1, heads, n, n]), &device);
            let scale = 0.17;
            let ours = attention_softmax(logits.clone(), scale, bias.clone());
            let burns = activation::softmax(logits.mul_scalar(scale) + bias, 3);
            let ours = ours.into_data().try_to_vec::<f32>().unwrap();
            let burns = burns.into_data().try_to_vec::<f32>().unwrap();
            for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 + 1e-5 * b,
                    "[{windows}, {heads}, {n}] at {i}: {a} against burn's {b}"
                );
            }
        }
    }

    #[test]
    fn linear_and_pointwise_match_burns() {
        use burn::nn::LinearConfig;
        use burn::nn::conv::Conv2dConfig;
        let device = Device::flex();
        let close = |a: Vec<f32>, b: Vec<f32>| {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                    "{x} against burn's {y}"
                );
            }
        };
        let x = |dims: [usize; 3], seed| {
            let n = dims.iter().product();
            Tensor::<3>::from_data(
                TensorData::new(crate::backend::pattern(n, seed), dims),
                &device,
            )
        };
        for bias in [true, false] {
            let layer = LinearConfig::new(40, 24).with_bias(bias).init(&device);
            let input = x([2, 30, 40], 3);
            let ours = linear(&layer, input.clone())
                .into_data()
                .try_to_vec::<f32>();
            let burns = layer.forward(input).into_data().try_to_vec::<f32>();
            close(ours.unwrap(), burns.unwrap());
            let conv = Conv2dConfig::new([12, 20], [1, 1])
                .with_bias(bias)
                .init(&device);
            let input = x([2, 12, 35], 4).reshape([2, 12, 5, 7]);
            let ours = super::super::common::conv(&conv, input.clone())
                .into_data()
                .try_to_vec::<f32>();
            let burns = conv.forward(input).into_data().try_to_vec::<f32>();
            close(ours.unwrap(), burns.unwrap());
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn column_blocks_match_the_plain_product() {
        // Wider than three blocks with a ragged last one; each bias kind.
        let (m, n, k) = (5, 3 * COLUMN_BLOCK + 17, 7);
        let lhs = crate::backend::pattern(m * k, 1);
        let rhs = crate::backend::pattern(k * n, 2);
        let (rows, columns) = (crate::backend::pattern(m, 3), crate::backend::pattern(n, 4));
        for bias in [
            None,
            Some(Bias::PerRow(&rows)),
            Some(Bias::PerColumn(&columns)),
        ] {
            let expected: Vec<f32> = (0..m * n)
                .map(|i| {
                    let (r, c) = (i / n, i % n);
                    let b = match &bias {
                        Some(Bias::PerRow(b)) => b[r],
                        Some(Bias::PerColumn(b)) => b[c],
                        None => 0.0,
                    };
                    b + (0..k).map(|j| lhs[r * k + j] * rhs[j * n + c]).sum::<f32>()
                })
                .collect();
            let product = Product {
                m,
                n,
                k,
                lhs: &lhs,
                rhs: &rhs,
            };
            let out = product_output(m * n, |out| {
                // Values left over in the buffer must not show: start from NaNs.
                out.fill(MaybeUninit::new(f32::NAN));
                gemm_bias_by_columns(out, &product, bias)
            });
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-5, "{a} against {b}");
            }
        }
    }
}
