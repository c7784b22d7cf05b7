//! TinyViT's attention windows: a [B, R R, C] token grid cut into ws x ws windows, zero-padded to
//! a whole number of them ([B n n, ws ws, C]), and the attention's windows put back onto the
//! residual. burn's CPU backend runs each as a pad, a 6-D permute and a reshape (and a slice and
//! an add on the way back), copying through its generic tiled copy: about 6% of a LiteMedSAM pass
//! in wasm. Here each is one pass that moves whole window rows (ws tokens of C values are
//! contiguous on both sides). Other devices, and tensors that carry gradients, keep burn's ops.

use burn::tensor::ops::PadMode;
use burn::tensor::{Tensor, TensorData};

use super::kernels::{self, f32s, values};

/// [B, R R, C] -> [B n n, ws ws, C], n = ceil(R / ws), the padding zeros.
pub fn partition(x: Tensor<3>, r: usize, ws: usize) -> Tensor<3> {
    let [b, l, c] = x.dims();
    assert_eq!(l, r * r, "a square grid of tokens");
    let n = r.div_ceil(ws);
    if !kernels::on_flex(&x) {
        let pad = n * ws - r;
        let grid = x.reshape([b, r, r, c]);
        let grid = if pad > 0 {
            grid.pad([(0, 0), (0, pad), (0, pad), (0, 0)], PadMode::Constant(0.0))
        } else {
            grid
        };
        return grid
            .reshape([b, n, ws, n, ws, c])
            .swap_dims(2, 3)
            .reshape([b * n * n, ws * ws, c]);
    }
    let device = x.device();
    let src = values(&x);
    let src = f32s(&src);
    let mut out = vec![0.0; b * n * n * ws * ws * c];
    for_window_rows(b, r, ws, c, |token, at, len| {
        out[at..at + len].copy_from_slice(&src[token..token + len]);
    });
    Tensor::from_data(TensorData::new(out, [b * n * n, ws * ws, c]), &device)
}

/// `x + merge(windows)`: the windows of [`partition`] put back in place, their padding dropped,
/// added onto `x` ([B, R R, C]).
pub fn add_merged(x: Tensor<3>, windows: Tensor<3>, r: usize, ws: usize) -> Tensor<3> {
    let [b, l, c] = x.dims();
    let n = r.div_ceil(ws);
    if !kernels::on_flex(&x) || !kernels::on_flex(&windows) {
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
        return x + grid.reshape([b, l, c]);
    }
    let device = x.device();
    let windows = values(&windows);
    let windows = f32s(&windows);
    let mut data = x.into_data();
    let out = data.as_mut_slice::<f32>().expect("an f32 tensor's data");
    for_window_rows(b, r, ws, c, |token, at, len| {
        for (o, w) in out[token..token + len]
            .iter_mut()
            .zip(&windows[at..at + len])
        {
            *o += w;
        }
    });
    Tensor::from_data(data, &device)
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
            let attended = Tensor::<3>::random([2, r * r, 5], Distribution::Default, &device);
            let windows = partition(attended.clone(), r, ws);
            // Tracked tensors take burn's ops, the reference here.
            let reference = partition(attended.clone().to_device(&autodiff), r, ws);
            close(windows.clone(), reference.clone().to_device(&device));
            let merged = add_merged(x.clone(), windows, r, ws);
            let reference = add_merged(x.to_device(&autodiff), reference, r, ws);
            close(merged.clone(), reference.to_device(&device));
        }
    }
}
