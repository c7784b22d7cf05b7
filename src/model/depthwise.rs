//! TinyViT's depthwise 3x3 convolutions (one 3x3 kernel per channel, padding 1): the MBConvs'
//! and patch mergings' (NCHW, stride 1 or 2) and the attention blocks' `local_conv`, which runs
//! here on the blocks' own token layout ([B, R R, C], channels last) instead of through two
//! transposes. burn's CPU backend takes a grouped convolution through its general one, about 4%
//! of a LiteMedSAM pass in wasm with the transposes as much again. Here each output row is the
//! bias plus nine shifted rows scaled, in loops the compiler vectorizes. Other devices, and
//! tensors that carry gradients, keep burn's convolution.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};

use super::kernels::{self, f32s, per_block, values};

/// Whether `conv` is a depthwise 3x3 convolution with padding 1 that the kernels here run.
pub(crate) fn fits(conv: &Conv2d, channels: usize, strides: &[usize]) -> bool {
    let [out, per_group, ..] = conv.weight.dims();
    conv.kernel_size == [3, 3]
        && conv.groups == channels
        && out == channels
        && per_group == 1
        && conv.dilation == [1, 1]
        && conv.stride[0] == conv.stride[1]
        && strides.contains(&conv.stride[0])
        && matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1))
}

/// `conv` on an NCHW tensor; stride 1 or 2.
pub fn depthwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if !kernels::on_flex(&x) || !fits(conv, c, &[1, 2]) {
        return conv.forward(x);
    }
    let s = conv.stride[0];
    let (oh, ow) = ((h - 1) / s + 1, (w - 1) / s + 1);
    let device = x.device();
    let (src, weight) = (values(&x), values(&conv.weight.val()));
    let bias = conv.bias.as_ref().map(|b| values(&b.val()));
    let (src, weight) = (f32s(&src), f32s(&weight));
    let bias = bias.as_ref().map(f32s);
    let mut out = vec![0.0; b * c * oh * ow];
    per_block(&mut out, oh * ow, |plane, dst| {
        let ch = plane % c;
        let src = &src[plane * h * w..(plane + 1) * h * w];
        let taps: &[f32; 9] = weight[ch * 9..ch * 9 + 9].try_into().expect("9 taps");
        let bias = bias.map_or(0.0, |b| b[ch]);
        plane_conv(src, [h, w], taps, bias, s, dst, ow);
    });
    Tensor::from_data(TensorData::new(out, [b, c, oh, ow]), &device)
}

/// One channel's plane: dst ([oh, ow]) = bias + the 3x3 taps over src ([h, w]) at stride `s`.
fn plane_conv(
    src: &[f32],
    [h, w]: [usize; 2],
    taps: &[f32; 9],
    bias: f32,
    s: usize,
    dst: &mut [f32],
    ow: usize,
) {
    // Rows above and below the plane read as zeros.
    let zeros = vec![0.0; w];
    let mut gathered = Vec::new();
    for (y, out) in dst.chunks_exact_mut(ow).enumerate() {
        let lines: [&[f32]; 3] =
            core::array::from_fn(
                |dy| match (s * y + dy).checked_sub(1).filter(|&iy| iy < h) {
                    Some(iy) => &src[iy * w..(iy + 1) * w],
                    None => &zeros,
                },
            );
        row(&lines, taps, bias, s, out, &mut gathered);
    }
}

/// One output row at stride `s` (1 or 2) from its three input rows (above, at, below; zeros
/// outside the plane): bias plus the nine taps. `gathered` is scratch for stride 2.
pub(crate) fn row(
    lines: &[&[f32]; 3],
    taps: &[f32; 9],
    bias: f32,
    s: usize,
    out: &mut [f32],
    gathered: &mut Vec<f32>,
) {
    if s == 1 {
        return row_stride1(lines, taps, bias, out);
    }
    let (w, ow) = (lines[0].len(), out.len());
    // Tap x's input column at output x, if inside the plane.
    let column = |x: usize, dx: usize| (s * x + dx).checked_sub(1).filter(|&ix| ix < w);
    // One input row's three taps along x as rows of ow values.
    gathered.resize(3 * ow, 0.0);
    out.fill(bias);
    for (dy, line) in lines.iter().enumerate() {
        for (dx, tap) in gathered.chunks_exact_mut(ow).enumerate() {
            for (x, t) in tap.iter_mut().enumerate() {
                *t = column(x, dx).map_or(0.0, |ix| line[ix]);
            }
        }
        for (dx, tap) in gathered.chunks_exact(ow).enumerate() {
            let k = taps[dy * 3 + dx];
            for (o, v) in out.iter_mut().zip(tap) {
                *o += k * v;
            }
        }
    }
}

/// One output row at stride 1 from its three input rows (above, at, below; zeros outside the
/// plane): bias plus the nine taps.
fn row_stride1(lines: &[&[f32]; 3], taps: &[f32; 9], bias: f32, row: &mut [f32]) {
    let w = row.len();
    let column = |x: usize, dx: usize| (x + dx).checked_sub(1).filter(|&ix| ix < w);
    if w < 3 {
        for (x, o) in row.iter_mut().enumerate() {
            *o = edge(lines, taps, bias, |dx| column(x, dx));
        }
        return;
    }
    // Inside the row every tap reads the plane: all nine sums in one pass (the compiler keeps
    // them in vector registers), the same order as the edges'.
    let n = w - 2;
    let t = |dy: usize, dx: usize| &lines[dy][dx..dx + n];
    let ([a0, a1, a2], [b0, b1, b2], [c0, c1, c2]) = (
        [t(0, 0), t(0, 1), t(0, 2)],
        [t(1, 0), t(1, 1), t(1, 2)],
        [t(2, 0), t(2, 1), t(2, 2)],
    );
    let k = taps;
    for (i, o) in row[1..w - 1].iter_mut().enumerate() {
        *o = bias
            + k[0] * a0[i]
            + k[1] * a1[i]
            + k[2] * a2[i]
            + k[3] * b0[i]
            + k[4] * b1[i]
            + k[5] * b2[i]
            + k[6] * c0[i]
            + k[7] * c1[i]
            + k[8] * c2[i];
    }
    for x in [0, w - 1] {
        row[x] = edge(lines, taps, bias, |dx| column(x, dx));
    }
}

/// One output value from its three input rows, tap columns outside the plane reading zero.
fn edge(
    lines: &[&[f32]; 3],
    taps: &[f32; 9],
    bias: f32,
    column: impl Fn(usize) -> Option<usize>,
) -> f32 {
    let mut sum = bias;
    for (dy, line) in lines.iter().enumerate() {
        for dx in 0..3 {
            sum += taps[dy * 3 + dx] * column(dx).map_or(0.0, |ix| line[ix]);
        }
    }
    sum
}

/// `conv` (stride 1) on tokens [B, R R, C] of an R x R grid, channels last: the same values as
/// the NCHW convolution of the grid, laid out as tokens again.
pub fn depthwise_tokens(conv: &Conv2d, x: Tensor<3>, r: usize) -> Tensor<3> {
    let [b, l, c] = x.dims();
    assert_eq!(l, r * r, "a square grid of tokens");
    if !kernels::on_flex(&x) || !fits(conv, c, &[1]) {
        let grid = x.swap_dims(1, 2).reshape([b, c, r, r]);
        return conv.forward(grid).reshape([b, c, l]).swap_dims(1, 2);
    }
    let device = x.device();
    let (src, weight) = (values(&x), values(&conv.weight.val()));
    let bias = conv.bias.as_ref().map(|b| values(&b.val()));
    let (src, weight) = (f32s(&src), f32s(&weight));
    let bias = bias.as_ref().map(f32s);
    // Tap t's weights over the channels: [9, C].
    let taps: Vec<f32> = (0..9)
        .flat_map(|t| (0..c).map(move |ch| weight[ch * 9 + t]))
        .collect();
    let mut out = vec![0.0; b * l * c];
    per_block(&mut out, r * c, |row_index, row| {
        let (image, y) = (row_index / r, row_index % r);
        for pixel in row.chunks_exact_mut(c) {
            match bias {
                Some(b) => pixel.copy_from_slice(b),
                None => pixel.fill(0.0),
            }
        }
        for dy in 0..3 {
            let Some(iy) = (y + dy).checked_sub(1).filter(|&iy| iy < r) else {
                continue;
            };
            let line = &src[(image * r + iy) * r * c..(image * r + iy + 1) * r * c];
            for dx in 0..3 {
                let (x0, x1) = (1usize.saturating_sub(dx), (r + 1 - dx).min(r));
                let k = &taps[(dy * 3 + dx) * c..(dy * 3 + dx + 1) * c];
                let from = &line[(x0 + dx - 1) * c..(x1 + dx - 1) * c];
                for (o, v) in row[x0 * c..x1 * c]
                    .chunks_exact_mut(c)
                    .zip(from.chunks_exact(c))
                {
                    for ((o, v), k) in o.iter_mut().zip(v).zip(k) {
                        *o += k * v;
                    }
                }
            }
        }
    });
    Tensor::from_data(TensorData::new(out, [b, l, c]), &device)
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>) {
        let (a, b) = (a.into_data(), b.into_data());
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (
            a.try_to_vec::<f32>().unwrap(),
            b.try_to_vec::<f32>().unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{x} against {y}");
        }
    }

    fn depthwise_conv(c: usize, stride: usize, device: &Device) -> Conv2d {
        Conv2dConfig::new([c, c], [3, 3])
            .with_groups(c)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device)
    }

    #[test]
    fn matches_burns_grouped_convolution() {
        let device = Device::flex();
        // Odd and even sides (stride 2's last output reads the padding or not), two images.
        for (h, w, stride) in [
            (9, 7, 1),
            (9, 7, 2),
            (8, 10, 2),
            (1, 1, 1),
            (2, 2, 1),
            (3, 1, 2),
        ] {
            let conv = depthwise_conv(3, stride, &device);
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Default, &device);
            close(depthwise(&conv, x.clone()), conv.forward(x));
        }
    }

    #[test]
    fn tokens_match_the_grids_convolution() {
        let device = Device::flex();
        let (r, c) = (6, 5);
        let conv = depthwise_conv(c, 1, &device);
        let x = Tensor::<3>::random([2, r * r, c], Distribution::Default, &device);
        let grid = x.clone().swap_dims(1, 2).reshape([2, c, r, r]);
        let reference = conv.forward(grid).reshape([2, c, r * r]).swap_dims(1, 2);
        close(depthwise_tokens(&conv, x, r), reference);
    }
}
