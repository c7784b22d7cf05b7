//! The matrix product in wasm (SIMD128). gemm's kernel there keeps 12 accumulators, which with
//! its operands outnumber the 15 vector registers V8 allocates on x86-64, so its inner loop
//! spills; this one keeps 8 (a tile of 4 rows by 8 columns). On the encoder's linear layers it
//! ran 1.2-1.5x faster than gemm's in Chromium 156, and a whole encoder pass 1.2x faster (a tile
//! of 2 x 16, faster on 1x1 convolutions over 65536 pixels alone, was slower over the pass). Each element is summed over k one product at a time onto zero, then
//! added onto the destination, as gemm does.

use core::arch::wasm32::{
    f32x4_add, f32x4_div, f32x4_mul, f32x4_pmax, f32x4_pmin, f32x4_splat, v128, v128_load,
    v128_store,
};

use super::kernels::{ERF_P, ERF_Q, gelu_scalar};

/// Tile rows, and columns in NV vectors of four: 4 x 8 accumulators in 8 vectors.
const MR: usize = 4;
const NV: usize = 2;
const NR: usize = 4 * NV;
/// Block sizes: a packed lhs block of MC x KC (64 KiB) stays in cache while every packed rhs
/// panel of KC x NR passes it; KC x NC (1 MiB) bounds the packed rhs.
const MC: usize = 64;
const KC: usize = 256;
const NC: usize = 1024;

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

/// `dst += lhs rhs` for [m, n] = [m, k] [k, n].
///
/// # Safety
/// Each operand's pointer must address its values at the strides given.
pub(crate) unsafe fn gemm_add(
    [m, n, k]: [usize; 3],
    dst: Strided<*mut f32>,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let mut packed_rhs = vec![0f32; KC.min(k) * NC.min(n).next_multiple_of(NR)];
    let mut packed_lhs = vec![0f32; MC.min(m).next_multiple_of(MR) * KC.min(k)];
    for j0 in (0..n).step_by(NC) {
        let nc = NC.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            // SAFETY: the caller's; the blocks lie inside the operands.
            unsafe {
                pack_rhs(&mut packed_rhs, rhs, p0, j0, kc, nc);
                for i0 in (0..m).step_by(MC) {
                    let mc = MC.min(m - i0);
                    pack_lhs(&mut packed_lhs, lhs, i0, p0, mc, kc);
                    for jr in (0..nc).step_by(NR) {
                        let b = packed_rhs.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let a = packed_lhs.as_ptr().add(ir * kc);
                            let tile = kernel(a, b, kc);
                            let at = (i0 + ir, j0 + jr);
                            add_tile(&tile, dst, at, (MR.min(mc - ir), NR.min(nc - jr)));
                        }
                    }
                }
            }
        }
    }
}

/// rhs[p0.., j0..] (kc x nc) as panels of NR columns, each kc rows of NR values, the last
/// panel padded with zeros.
unsafe fn pack_rhs(
    out: &mut [f32],
    rhs: Strided<*const f32>,
    p0: usize,
    j0: usize,
    kc: usize,
    nc: usize,
) {
    for (jp, panel) in out[..kc * nc.next_multiple_of(NR)]
        .chunks_exact_mut(kc * NR)
        .enumerate()
    {
        let width = NR.min(nc - jp * NR);
        for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
            // SAFETY: the caller's.
            let src = unsafe {
                rhs.ptr
                    .offset((p0 + p) as isize * rhs.rows + (j0 + jp * NR) as isize * rhs.cols)
            };
            for (q, v) in row.iter_mut().enumerate() {
                *v = if q < width {
                    unsafe { *src.offset(q as isize * rhs.cols) }
                } else {
                    0.0
                };
            }
        }
    }
}

/// lhs[i0.., p0..] (mc x kc) as blocks of MR rows, each kc columns of MR values, the last block
/// padded with zeros.
unsafe fn pack_lhs(
    out: &mut [f32],
    lhs: Strided<*const f32>,
    i0: usize,
    p0: usize,
    mc: usize,
    kc: usize,
) {
    for (ib, block) in out[..mc.next_multiple_of(MR) * kc]
        .chunks_exact_mut(MR * kc)
        .enumerate()
    {
        let height = MR.min(mc - ib * MR);
        for r in 0..MR {
            if r >= height {
                for p in 0..kc {
                    block[p * MR + r] = 0.0;
                }
                continue;
            }
            // SAFETY: the caller's.
            let src = unsafe {
                lhs.ptr
                    .offset((i0 + ib * MR + r) as isize * lhs.rows + p0 as isize * lhs.cols)
            };
            for p in 0..kc {
                block[p * MR + r] = unsafe { *src.offset(p as isize * lhs.cols) };
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

/// Adds the tile's first rows x cols values onto dst from (row, column) `at`.
#[inline(always)]
unsafe fn add_tile(
    tile: &[[v128; NV]; MR],
    dst: Strided<*mut f32>,
    (i, j): (usize, usize),
    (rows, cols): (usize, usize),
) {
    // SAFETY: the caller's: the rows x cols block from (i, j) lies inside dst.
    unsafe {
        let corner = dst
            .ptr
            .offset(i as isize * dst.rows + j as isize * dst.cols);
        for (r, row) in tile.iter().enumerate().take(rows) {
            let d = corner.offset(r as isize * dst.rows);
            if cols == NR && dst.cols == 1 {
                for (v, sum) in row.iter().enumerate() {
                    let d = d.add(4 * v);
                    v128_store(d as *mut v128, f32x4_add(v128_load(d as *const v128), *sum));
                }
            } else {
                let values: [f32; NR] = core::mem::transmute(*row);
                for (q, v) in values.iter().enumerate().take(cols) {
                    *d.offset(q as isize * dst.cols) += v;
                }
            }
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

#[inline(always)]
fn gelu(x: v128) -> v128 {
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
    let erf = f32x4_div(f32x4_mul(z, p), q);
    f32x4_mul(
        f32x4_mul(f32x4_splat(0.5), x),
        f32x4_add(f32x4_splat(1.0), erf),
    )
}
