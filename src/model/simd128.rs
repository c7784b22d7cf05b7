//! The wasm build's own SIMD128 kernels, where V8's code for the generic ones is slow.
//! - The matrix product: gemm's kernel keeps 12 accumulators, which with its operands outnumber
//!   the 15 vector registers V8 allocates on x86-64, so its inner loop spills; this one keeps 8
//!   (a tile of 4 rows by 8 columns). On the encoder's linear layers it ran 1.2-1.5x faster
//!   than gemm's in Chromium 156, and a whole encoder pass 1.2x faster (a tile of 2 x 16, faster
//!   on 1x1 convolutions over 65536 pixels alone, was slower over the pass). Each element is
//!   summed over k one product at a time onto zero, then added onto the destination, as gemm
//!   does.
//! - GELU and its gradient, the same operations as `kernels`' generic ones with the clamps
//!   through `f32x4.pmin` and `pmax` (see [`gelu_in_place`]).

use core::arch::wasm32::{
    f32x4_add, f32x4_div, f32x4_extract_lane, f32x4_mul, f32x4_nearest, f32x4_pmax, f32x4_pmin,
    f32x4_splat, f32x4_sub, i32x4_add, i32x4_shl, i32x4_shuffle, i32x4_splat,
    i32x4_trunc_sat_f32x4, v128, v128_load, v128_store,
};

use super::kernels::{
    ERF_P, ERF_Q, EXP_TAYLOR, INV_SQRT_2PI, LN2_HI, LN2_LO, gelu_grad_scalar, gelu_scalar,
};

/// Tile rows, and columns in NV vectors of four: 4 x 8 accumulators in 8 vectors.
const MR: usize = 4;
const NV: usize = 2;
const NR: usize = 4 * NV;
/// Block sizes: a packed lhs block of MC x KC (64 KiB) stays in cache while every packed rhs
/// panel of KC x NR passes it; KC x NC bounds the packed rhs: 1 MiB where the lhs has many rows
/// (the linear layers' tokens), 256 KiB where it has few (the 1x1 convolutions' channels) and
/// each output row is long, so that the block of output rows a packed rhs passes stays in cache.
const MC: usize = 64;
const KC: usize = 256;
const NC_TALL: usize = 1024;
const NC_SHORT: usize = 256;
/// Fewer lhs rows than this take the short NC.
const SHORT_ROWS: usize = 512;

/// An operand's values at (row stride, column stride).
#[derive(Clone, Copy)]
pub(crate) struct Strided<P> {
    pub ptr: P,
    pub rows: isize,
    pub cols: isize,
}

impl<P> From<(P, isize, isize)> for Strided<P> {
    fn from((ptr, rows, cols): (P, isize, isize)) -> Self {
        Self { ptr, rows, cols }
    }
}

/// What a product does with its destination: adds onto it, or overwrites it with the product
/// alone or plus a bias (one value per row or per column).
#[derive(Clone, Copy)]
pub(crate) enum Start<'a> {
    Add,
    Zero,
    Rows(&'a [f32]),
    Columns(&'a [f32]),
}

/// `dst += lhs rhs` for [m, n] = [m, k] [k, n].
///
/// # Safety
/// Each operand's pointer must address its values at the strides given.
pub(crate) unsafe fn gemm_add(
    mnk: [usize; 3],
    dst: Strided<*mut f32>,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
) {
    // SAFETY: the caller's.
    unsafe { gemm(mnk, dst, lhs, rhs, Start::Add) }
}

/// `dst = bias + lhs rhs` for [m, n] = [m, k] [k, n] (`Start::Add`: `dst += lhs rhs`). The
/// first block of depths writes bias plus its sums where `gemm_add` onto a filled bias would
/// read the destination back: the same values, without a pass over an output that can be
/// 64 MiB (a 1x1 convolution over 65536 pixels).
///
/// # Safety
/// Each operand's pointer must address its values at the strides given, and a bias must hold
/// one value per row (m) or per column (n).
// Inlined, so that `gemm_add`'s copy has no choice left in its tile stores (the attention's
// small products ran 5% slower with it).
#[inline(always)]
pub(crate) unsafe fn gemm(
    [m, n, k]: [usize; 3],
    dst: Strided<*mut f32>,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    start: Start,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // SAFETY: the caller's; an empty product leaves the bias alone.
        unsafe { fill(start, [m, n], dst) };
        return;
    }
    let nc_block = if m < SHORT_ROWS { NC_SHORT } else { NC_TALL };
    let mut packed_rhs = vec![0f32; KC.min(k) * nc_block.min(n).next_multiple_of(NR)];
    let mut packed_lhs = vec![0f32; MC.min(m).next_multiple_of(MR) * KC.min(k)];
    for j0 in (0..n).step_by(nc_block) {
        let nc = nc_block.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            // SAFETY: the caller's; the blocks lie inside the operands.
            unsafe {
                pack::<NR>(
                    &mut packed_rhs,
                    rhs.ptr,
                    (rhs.cols, rhs.rows),
                    (j0, nc),
                    (p0, kc),
                );
                for i0 in (0..m).step_by(MC) {
                    let mc = MC.min(m - i0);
                    pack::<MR>(
                        &mut packed_lhs,
                        lhs.ptr,
                        (lhs.rows, lhs.cols),
                        (i0, mc),
                        (p0, kc),
                    );
                    for jr in (0..nc).step_by(NR) {
                        let b = packed_rhs.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let a = packed_lhs.as_ptr().add(ir * kc);
                            let tile = kernel(a, b, kc);
                            let at = (i0 + ir, j0 + jr);
                            let start = if p0 == 0 { start } else { Start::Add };
                            store_tile(&tile, dst, at, (MR.min(mc - ir), NR.min(nc - jr)), start);
                        }
                    }
                }
            }
        }
    }
}

/// Packs `count` consecutive indices t from `t0` of a matrix, each over kc depths p from `p0`,
/// into strips of W: strip s holds, for each p, the W values at t = t0 + s W + w, zero past
/// `count`. `(st, sp)` are the strides of t and p. A full strip moves in vectors where one of the
/// strides is 1 (the linear layers' inputs and weights, the 1x1 convolutions' images, the
/// attention's queries, keys and values): in Chromium 156 the attention's small products took
/// 10-18% less time so, the large ones about the same. Otherwise the loop follows the smaller
/// stride, so that a transposed operand (a gradient's product) is read along its rows, not
/// across them.
///
/// # Safety
/// Every (t, p) inside the block must lie inside the matrix behind `base`.
unsafe fn pack<const W: usize>(
    out: &mut [f32],
    base: *const f32,
    (st, sp): (isize, isize),
    (t0, count): (usize, usize),
    (p0, kc): (usize, usize),
) {
    for (strip, values) in out[..count.next_multiple_of(W) * kc]
        .chunks_exact_mut(W * kc)
        .enumerate()
    {
        let first = t0 + strip * W;
        let width = W.min(count - strip * W);
        // SAFETY: the caller's; (t, p) stays inside the block.
        let at = |w: usize, p: usize| unsafe {
            base.offset((first + w) as isize * st + (p0 + p) as isize * sp)
        };
        if width == W && st == 1 {
            // SAFETY: the strip's W values at each p are consecutive.
            unsafe { pack_rows::<W>(values, |p| at(0, p), kc) };
        } else if width == W && sp == 1 {
            // SAFETY: each t's kc values are consecutive.
            unsafe { pack_columns::<W>(values, |w| at(w, 0), kc) };
        } else if sp.abs() <= st.abs() {
            for w in 0..W {
                for p in 0..kc {
                    values[p * W + w] = if w < width { unsafe { *at(w, p) } } else { 0.0 };
                }
            }
        } else {
            for p in 0..kc {
                for w in 0..W {
                    values[p * W + w] = if w < width { unsafe { *at(w, p) } } else { 0.0 };
                }
            }
        }
    }
}

/// A full strip whose W values at each depth p start at `row(p)`: W / 4 vectors a depth.
///
/// # Safety
/// `row(p)` must address W readable values for each p below kc.
#[inline(always)]
unsafe fn pack_rows<const W: usize>(
    values: &mut [f32],
    row: impl Fn(usize) -> *const f32,
    kc: usize,
) {
    for (p, dst) in values[..kc * W].chunks_exact_mut(W).enumerate() {
        let src = row(p);
        for v in 0..W / 4 {
            // SAFETY: the caller's; dst holds W values.
            unsafe {
                v128_store(
                    dst.as_mut_ptr().add(4 * v) as *mut v128,
                    v128_load(src.add(4 * v) as *const v128),
                )
            };
        }
    }
}

/// A full strip whose index w holds kc consecutive values from `column(w)`: four indices by four
/// depths at a time, transposed in registers.
///
/// # Safety
/// `column(w)` must address kc readable values for each w below W.
#[inline(always)]
unsafe fn pack_columns<const W: usize>(
    values: &mut [f32],
    column: impl Fn(usize) -> *const f32,
    kc: usize,
) {
    let body = kc / 4 * 4;
    for w0 in (0..W).step_by(4) {
        let src: [*const f32; 4] = core::array::from_fn(|i| column(w0 + i));
        for p in (0..body).step_by(4) {
            // SAFETY: the caller's: p + 4 <= kc values from each column.
            let [r0, r1, r2, r3] = src.map(|c| unsafe { v128_load(c.add(p) as *const v128) });
            let (t0, t1) = (
                i32x4_shuffle::<0, 4, 1, 5>(r0, r1),
                i32x4_shuffle::<2, 6, 3, 7>(r0, r1),
            );
            let (t2, t3) = (
                i32x4_shuffle::<0, 4, 1, 5>(r2, r3),
                i32x4_shuffle::<2, 6, 3, 7>(r2, r3),
            );
            let depths = [
                i32x4_shuffle::<0, 1, 4, 5>(t0, t2),
                i32x4_shuffle::<2, 3, 6, 7>(t0, t2),
                i32x4_shuffle::<0, 1, 4, 5>(t1, t3),
                i32x4_shuffle::<2, 3, 6, 7>(t1, t3),
            ];
            for (j, d) in depths.into_iter().enumerate() {
                // SAFETY: (p + j) W + w0 + 4 <= kc W, inside values.
                unsafe { v128_store(values.as_mut_ptr().add((p + j) * W + w0) as *mut v128, d) };
            }
        }
        for p in body..kc {
            for (i, c) in src.iter().enumerate() {
                // SAFETY: the caller's: p < kc.
                values[p * W + w0 + i] = unsafe { *c.add(p) };
            }
        }
    }
}

/// The MR x NR product of a packed lhs block and a packed rhs panel over kc.
#[inline(always)]
unsafe fn kernel(a: *const f32, b: *const f32, kc: usize) -> [[v128; NV]; MR] {
    let mut acc = [[f32x4_splat(0.0); NV]; MR];
    for p in 0..kc {
        // SAFETY: the packed panels hold kc rows of NR and of MR values.
        let b: [v128; NV] =
            core::array::from_fn(|v| unsafe { v128_load(b.add(p * NR + 4 * v) as *const v128) });
        for (r, row) in acc.iter_mut().enumerate() {
            let x = f32x4_splat(unsafe { *a.add(p * MR + r) });
            for (sum, b) in row.iter_mut().zip(b) {
                *sum = f32x4_add(*sum, f32x4_mul(x, b));
            }
        }
    }
    acc
}

/// The tile's first rows x cols values from (row, column) `at` of dst, added onto it or onto the
/// bias as `start` says.
#[inline(always)]
unsafe fn store_tile(
    tile: &[[v128; NV]; MR],
    dst: Strided<*mut f32>,
    (i, j): (usize, usize),
    (rows, cols): (usize, usize),
    start: Start,
) {
    // SAFETY: the caller's: the rows x cols block from (i, j) lies inside dst, and a bias covers
    // its rows or columns.
    unsafe {
        let corner = dst
            .ptr
            .offset(i as isize * dst.rows + j as isize * dst.cols);
        for (r, row) in tile.iter().enumerate().take(rows) {
            let d = corner.offset(r as isize * dst.rows);
            if cols == NR && dst.cols == 1 {
                for (v, sum) in row.iter().enumerate() {
                    let d = d.add(4 * v);
                    let onto = match start {
                        Start::Add => v128_load(d as *const v128),
                        Start::Zero => f32x4_splat(0.0),
                        Start::Rows(b) => f32x4_splat(b[i + r]),
                        Start::Columns(b) => {
                            v128_load(b[j + 4 * v..j + 4 * v + 4].as_ptr() as *const v128)
                        }
                    };
                    v128_store(d as *mut v128, f32x4_add(onto, *sum));
                }
            } else {
                let values: [f32; NR] = core::mem::transmute(*row);
                for (q, v) in values.iter().enumerate().take(cols) {
                    let d = d.offset(q as isize * dst.cols);
                    *d = match start {
                        Start::Add => *d,
                        Start::Zero => 0.0,
                        Start::Rows(b) => b[i + r],
                        Start::Columns(b) => b[j + q],
                    } + v;
                }
            }
        }
    }
}

/// dst's [m, n] set to the bias alone (`Start::Add` leaves it).
///
/// # Safety
/// dst must address [m, n] values at its strides.
unsafe fn fill(start: Start, [m, n]: [usize; 2], dst: Strided<*mut f32>) {
    for r in 0..m {
        for c in 0..n {
            let value = match start {
                Start::Add => return,
                Start::Zero => 0.0,
                Start::Rows(b) => b[r],
                Start::Columns(b) => b[c],
            };
            // SAFETY: the caller's.
            unsafe {
                *dst.ptr
                    .offset(r as isize * dst.rows + c as isize * dst.cols) = value
            };
        }
    }
}

/// GELU in place, the same operations in the same order as `kernels::gelu_in_place`, with the
/// clamp through `f32x4.pmin` and `pmax`: V8 lowers wasm's `f32x4.min` and `max`, which must
/// order NaNs and signed zeros, to several x86 instructions each, and the pseudo-minimum to one
/// (GELU over 16 M values 1.5x faster in Chromium 156). The clamp's bounds are finite, so both
/// give the same values.
pub(crate) fn gelu_in_place(values: &mut [f32]) {
    let mut chunks = values.chunks_exact_mut(4);
    for chunk in &mut chunks {
        // SAFETY: each chunk holds exactly four values.
        unsafe {
            let x = v128_load(chunk.as_ptr() as *const v128);
            v128_store(chunk.as_mut_ptr() as *mut v128, gelu(x));
        }
    }
    for x in chunks.into_remainder() {
        *x = gelu_scalar(*x);
    }
}

/// `grad *= d gelu(x) / dx`, the same operations in the same order as
/// `kernels::gelu_grad_in_place`, with [`gelu_in_place`]'s clamps.
pub(crate) fn gelu_grad_in_place(x: &[f32], grad: &mut [f32]) {
    let body = grad.len() / 4 * 4;
    for (xs, gs) in x[..body]
        .chunks_exact(4)
        .zip(grad[..body].chunks_exact_mut(4))
    {
        // SAFETY: each chunk holds exactly four values.
        unsafe {
            let v = v128_load(xs.as_ptr() as *const v128);
            let g = v128_load(gs.as_ptr() as *const v128);
            let cdf = f32x4_mul(f32x4_splat(0.5), f32x4_add(f32x4_splat(1.0), erf_scaled(v)));
            let square = f32x4_mul(f32x4_mul(f32x4_splat(-0.5), v), v);
            let pdf = f32x4_mul(f32x4_splat(INV_SQRT_2PI), exp(square));
            let d = f32x4_add(cdf, f32x4_mul(v, pdf));
            v128_store(gs.as_mut_ptr() as *mut v128, f32x4_mul(g, d));
        }
    }
    for (x, g) in x[body..].iter().zip(&mut grad[body..]) {
        *g *= gelu_grad_scalar(*x);
    }
}

#[inline(always)]
fn gelu(x: v128) -> v128 {
    f32x4_mul(
        f32x4_mul(f32x4_splat(0.5), x),
        f32x4_add(f32x4_splat(1.0), erf_scaled(x)),
    )
}

/// `erf(x / sqrt 2)`, as `kernels::erf_scaled_vector`.
#[inline(always)]
fn erf_scaled(x: v128) -> v128 {
    let scaled = f32x4_mul(x, f32x4_splat(core::f32::consts::FRAC_1_SQRT_2));
    let z = f32x4_pmin(f32x4_pmax(scaled, f32x4_splat(-4.0)), f32x4_splat(4.0));
    let z2 = f32x4_mul(z, z);
    let mut p = f32x4_splat(ERF_P[0]);
    for &c in &ERF_P[1..] {
        p = f32x4_add(f32x4_mul(p, z2), f32x4_splat(c));
    }
    let mut q = f32x4_splat(ERF_Q[0]);
    for &c in &ERF_Q[1..] {
        q = f32x4_add(f32x4_mul(q, z2), f32x4_splat(c));
    }
    f32x4_div(f32x4_mul(z, p), q)
}

/// `kernels::exp_vector`, the same operations in the same order.
#[inline(always)]
fn exp(x: v128) -> v128 {
    let x = f32x4_pmin(f32x4_pmax(x, f32x4_splat(-87.0)), f32x4_splat(88.0));
    let k = f32x4_nearest(f32x4_mul(x, f32x4_splat(core::f32::consts::LOG2_E)));
    let r = f32x4_sub(
        f32x4_sub(x, f32x4_mul(k, f32x4_splat(LN2_HI))),
        f32x4_mul(k, f32x4_splat(LN2_LO)),
    );
    let mut p = f32x4_splat(EXP_TAYLOR[0]);
    for &c in &EXP_TAYLOR[1..] {
        p = f32x4_add(f32x4_mul(p, r), f32x4_splat(c));
    }
    // k is a whole number in [-126, 127], so truncating it is exact.
    let scale = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(k), i32x4_splat(127)), 23);
    f32x4_mul(p, scale)
}

/// `softmax(row * scale + bias)` in place, the same operations in the same order as
/// `kernels::softmax_row`, with the row's maximum and [`exp`]'s clamps through `f32x4.pmax` and
/// `pmin` (the maximum of values that are not NaN either way).
pub(crate) fn softmax_row(row: &mut [f32], scale: f32, bias: &[f32]) {
    let body = row.len() / 4 * 4;
    let scale_v = f32x4_splat(scale);
    let mut max_v = f32x4_splat(f32::NEG_INFINITY);
    for i in (0..body).step_by(4) {
        // SAFETY: i + 4 <= body <= row.len() == bias.len().
        unsafe {
            let at = row.as_mut_ptr().add(i) as *mut v128;
            let b = v128_load(bias.as_ptr().add(i) as *const v128);
            let x = f32x4_add(f32x4_mul(v128_load(at), scale_v), b);
            v128_store(at, x);
            max_v = f32x4_pmax(max_v, x);
        }
    }
    let mut max = lanes(max_v).into_iter().fold(f32::NEG_INFINITY, f32::max);
    for (x, b) in row[body..].iter_mut().zip(&bias[body..]) {
        *x = *x * scale + b;
        max = max.max(*x);
    }
    let max_v = f32x4_splat(max);
    let mut sum_v = f32x4_splat(0.0);
    for i in (0..body).step_by(4) {
        // SAFETY: i + 4 <= body <= row.len().
        unsafe {
            let at = row.as_mut_ptr().add(i) as *mut v128;
            let e = exp(f32x4_sub(v128_load(at), max_v));
            v128_store(at, e);
            sum_v = f32x4_add(sum_v, e);
        }
    }
    // The lanes in macerator's order: (0 + 2) + (1 + 3).
    let [a, b, c, d] = lanes(sum_v);
    let mut sum = (a + c) + (b + d);
    let tail = &mut row[body..];
    if !tail.is_empty() {
        // The tail through a full vector, so it rounds as the body does.
        let mut lane = [f32::NEG_INFINITY; 4];
        lane[..tail.len()].copy_from_slice(tail);
        // SAFETY: `lane` holds four values.
        let e = lanes(exp(f32x4_sub(
            unsafe { v128_load(lane.as_ptr() as *const v128) },
            max_v,
        )));
        for (x, e) in tail.iter_mut().zip(e) {
            *x = e;
            sum += e;
        }
    }
    let inv = 1.0 / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

fn lanes(v: v128) -> [f32; 4] {
    [
        f32x4_extract_lane::<0>(v),
        f32x4_extract_lane::<1>(v),
        f32x4_extract_lane::<2>(v),
        f32x4_extract_lane::<3>(v),
    ]
}
