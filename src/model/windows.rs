//! TinyViT's attention windows: a [B, R R, C] token grid cut into ws x ws windows, padded to a
//! whole number of them ([B n n, ws ws, C]), and the attention's windows put back. burn's CPU
//! backend runs each as a pad, a 6-D permute and a reshape (and a slice on the way back),
//! copying through its generic tiled copy: with the transposes around `local_conv`, about 6% of a
//! LiteMedSAM pass in wasm. Here each is one pass that moves whole window rows (ws tokens of C
//! values are contiguous on both sides). Other devices, and tensors that carry gradients, keep
//! burn's ops.

use burn::tensor::{Tensor, TensorData};

use super::kernels::{self, f32s, values};

/// [B, R R, C] -> [B n n, ws ws, C], n = ceil(R / ws), every padding token `pad` ([C]).
pub fn partition(x: Tensor<3>, r: usize, ws: usize, pad: Tensor<1>) -> Tensor<3> {
    let [b, l, c] = x.dims();
    assert_eq!(l, r * r, "a square grid of tokens");
    assert_eq!(pad.dims(), [c], "one padding token");
    let n = r.div_ceil(ws);
    let p = n * ws;
    if !kernels::on_flex(&x) || !kernels::on_flex(&pad) {
        let mut grid = x.reshape([b, r, r, c]);
        if p > r {
            let pad = pad.reshape([1, 1, 1, c]);
            let right = pad.clone().expand([b, r, p - r, c]);
            grid = Tensor::cat(vec![grid, right], 2);
            let below = pad.expand([b, p - r, p, c]);
            grid = Tensor::cat(vec![grid, below], 1);
        }
        return grid
            .reshape([b, n, ws, n, ws, c])
            .swap_dims(2, 3)
            .reshape([b * n * n, ws * ws, c]);
    }
    let device = x.device();
    let (src, pad) = (values(&x), values(&pad));
    let (src, pad) = (f32s(&src), f32s(&pad));
    let mut out = vec![0.0; b * n * n * ws * ws * c];
    for (i, window) in out.chunks_exact_mut(ws * ws * c).enumerate() {
        let (wy, wx) = (i / n % n, i % n);
        let (rows, cols) = (ws.min(r - wy * ws), ws.min(r - wx * ws));
        for (t, token) in window.chunks_exact_mut(c).enumerate() {
            if t / ws >= rows || t % ws >= cols {
                token.copy_from_slice(pad);
            }
        }
    }
    for_window_rows(b, r, ws, c, |token, at, len| {
        out[at..at + len].copy_from_slice(&src[token..token + len]);
    });
    Tensor::from_data(TensorData::new(out, [b * n * n, ws * ws, c]), &device)
}

/// The windows of [`partition`] put back in place as [B, R R, C], their padding dropped.
pub fn merge(windows: Tensor<3>, b: usize, r: usize, ws: usize) -> Tensor<3> {
    let [_, _, c] = windows.dims();
    let n = r.div_ceil(ws);
    if !kernels::on_flex(&windows) {
        let p = n * ws;
        let grid = windows
            .reshape([b, n, n, ws, ws, c])
            .swap_dims(2, 3)
            .reshape([b, p, p, c]);
        let grid = if p > r {
            grid.slice([0..b, 0..r, 0..r, 0..c])
        } else {
            grid
        };
        return grid.reshape([b, r * r, c]);
    }
    let device = windows.device();
    let windows = values(&windows);
    let windows = f32s(&windows);
    let mut out = vec![0.0; b * r * r * c];
    for_window_rows(b, r, ws, c, |token, at, len| {
        out[token..token + len].copy_from_slice(&windows[at..at + len]);
    });
    Tensor::from_data(TensorData::new(out, [b, r * r, c]), &device)
}

/// `f(grid offset, window offset, values)` for every run of a window row that lies inside the
/// grid: up to ws tokens of c values, contiguous both in the grid [B, R, R, C] and in the windows
/// [B, n, n, ws, ws, C].
fn for_window_rows(
    b: usize,
    r: usize,
    ws: usize,
    c: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let n = r.div_ceil(ws);
    for image in 0..b {
        for (wy, wx) in (0..n).flat_map(|wy| (0..n).map(move |wx| (wy, wx))) {
            let window = ((image * n + wy) * n + wx) * ws * ws;
            let (x0, tokens) = (wx * ws, ws.min(r - wx * ws));
            for i in 0..ws.min(r - wy * ws) {
                let y = wy * ws + i;
                let token = (image * r + y) * r + x0;
                f(token * c, (window + i * ws) * c, tokens * c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;

    fn close(a: Tensor<3>, b: Tensor<3>) {
        let (a, b) = (a.into_data(), b.into_data());
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (
            a.try_to_vec::<f32>().unwrap(),
            b.try_to_vec::<f32>().unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(x, y)| x == y), "values differ");
    }

    #[test]
    fn partition_and_merge_match_burns_permutes() {
        let device = Device::flex();
        let autodiff = device.clone().autodiff();
        // Padded (10 into windows of 7) and whole (14 into 7), two images.
        for (r, ws) in [(10, 7), (14, 7)] {
            let x = Tensor::<3>::random([2, r * r, 5], Distribution::Default, &device);
            let pad = Tensor::<1>::random([5], Distribution::Default, &device);
            let windows = partition(x.clone(), r, ws, pad.clone());
            // Tracked tensors take burn's ops, the reference here.
            let tracked = partition(
                x.clone().to_device(&autodiff),
                r,
                ws,
                pad.to_device(&autodiff),
            );
            close(windows.clone(), tracked.clone().to_device(&device));
            close(merge(windows, 2, r, ws), x.clone());
            close(merge(tracked, 2, r, ws).to_device(&device), x);
        }
    }
}
