//! TinyViT's windowed attention core, `softmax(q kᵀ scale + bias) v` for every window and head,
//! as one task per (window, head) on the CPU backend. burn runs it as two batched products with
//! a transposed view, a softmax and a copy between them; the products split poorly over threads
//! (layer 2's 196-token windows: 1.45x from a second thread, a fifth of what a two-thread pass
//! lost). Here each task reads q, k and v where the qkv layer wrote them (gemm takes strides),
//! keeps its scores in a scratch buffer, and writes its head's columns of the output.

use burn::tensor::{Tensor, TensorData};

use super::kernels::{self, f32s, gemm_add, softmax_rows, values};

/// `qkv` [windows, n, heads * 3 * key_dim] (per head q, k, v side by side) to the attended
/// values [windows, n, heads * key_dim], with `bias` [1, heads, n, n].
pub fn attend(qkv: Tensor<3>, heads: usize, scale: f32, bias: Tensor<4>) -> Tensor<3> {
    let [windows, n, width] = qkv.dims();
    let kd = width / heads / 3;
    if !kernels::on_flex(&qkv) {
        let qkv = qkv.reshape([windows, n, heads, 3 * kd]).swap_dims(1, 2);
        let q = qkv.clone().narrow(3, 0, kd);
        let k = qkv.clone().narrow(3, kd, kd);
        let v = qkv.narrow(3, 2 * kd, kd);
        let attn = kernels::attention_softmax(q.matmul(k.swap_dims(2, 3)), scale, bias);
        return attn
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([windows, n, heads * kd]);
    }
    let device = qkv.device();
    let (qkv, bias) = (values(&qkv), values(&bias));
    let inputs = Windows {
        qkv: f32s(&qkv),
        bias: f32s(&bias),
        scale,
        n,
        heads,
        kd,
    };
    let mut out = vec![0.0f32; windows * n * heads * kd];
    let out_ptr = Out(out.as_mut_ptr());
    let task = |scores: &mut Vec<f32>, task: usize| {
        // SAFETY: each task index is one (window, head) pair, run once.
        unsafe { inputs.attend(task / heads, task % heads, scores, &out_ptr) };
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..windows * heads)
            .into_par_iter()
            .for_each_init(Vec::new, |scores, t| task(scores, t));
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut scores = Vec::new();
        (0..windows * heads).for_each(|t| task(&mut scores, t));
    }
    Tensor::from_data(TensorData::new(out, [windows, n, heads * kd]), &device)
}

/// The attention's inputs: the qkv layer's output and the bias table as contiguous values, with
/// the scale, the tokens per window, the heads and the key size.
struct Windows<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    scale: f32,
    n: usize,
    heads: usize,
    kd: usize,
}

/// The output's address, shared by tasks that each write their own columns.
struct Out(*mut f32);
// SAFETY: tasks write disjoint (window, head) blocks of the buffer, which outlives them.
unsafe impl Sync for Out {}

impl Windows<'_> {
    /// Window `window`, head `head`: its kd columns of the window's rows of `out`.
    ///
    /// # Safety
    /// No other task may write window `window`, head `head` of `out` meanwhile.
    unsafe fn attend(&self, window: usize, head: usize, scores: &mut Vec<f32>, out: &Out) {
        let Self { n, heads, kd, .. } = *self;
        let row = heads * 3 * kd;
        let base = &self.qkv[window * n * row + head * 3 * kd..];
        let (q, k, v) = (base.as_ptr(), base[kd..].as_ptr(), base[2 * kd..].as_ptr());
        // The products add onto their destination: fresh scores, and output columns that only
        // this task writes, still zero.
        scores.clear();
        scores.resize(n * n, 0.0);
        let row = row as isize;
        let single = gemm::Parallelism::None;
        // SAFETY: q and k rows lie `row` apart inside the window's n rows; scores holds n x n.
        unsafe {
            gemm_add(
                [n, n, kd],
                (scores.as_mut_ptr(), n as isize, 1),
                (q, row, 1),
                // kᵀ: its row c is k's column c, walking the tokens at `row` apart.
                (k, 1, row),
                single,
            );
        }
        softmax_rows(scores, head * n, [heads, n, n], self.scale, self.bias);
        let dst = out.0.wrapping_add(window * n * heads * kd + head * kd);
        // SAFETY: dst rows are the window's output rows (heads * kd apart), this head's kd
        // columns.
        unsafe {
            gemm_add(
                [n, kd, n],
                (dst, (heads * kd) as isize, 1),
                (scores.as_ptr(), n as isize, 1),
                (v, row, 1),
                single,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    /// The fused kernel against burn's composition, on windows of 49 and of 20 tokens (not a
    /// multiple of any vector width) with two and three heads.
    #[test]
    fn matches_burns_attention() {
        let device = crate::backend::cpu();
        for (windows, n, heads, kd) in [(3, 49, 2, 8), (2, 20, 3, 5)] {
            let qkv = Tensor::<3>::from_data(
                TensorData::new(
                    crate::backend::pattern(windows * n * heads * 3 * kd, 5),
                    [windows, n, heads * 3 * kd],
                ),
                &device,
            );
            let bias = Tensor::<4>::from_data(
                TensorData::new(crate::backend::pattern(heads * n * n, 9), [1, heads, n, n]),
                &device,
            );
            let scale = (kd as f32).powf(-0.5);
            let ours = attend(qkv.clone(), heads, scale, bias.clone()).into_data();
            let qkv = qkv.reshape([windows, n, heads, 3 * kd]).swap_dims(1, 2);
            let q = qkv.clone().narrow(3, 0, kd);
            let k = qkv.clone().narrow(3, kd, kd);
            let v = qkv.narrow(3, 2 * kd, kd);
            let attn = burn::tensor::activation::softmax(
                q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias,
                3,
            );
            let burns = attn
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([windows, n, heads * kd])
                .into_data();
            let (ours, burns) = (
                ours.as_slice::<f32>().unwrap(),
                burns.as_slice::<f32>().unwrap(),
            );
            assert_eq!(ours.len(), burns.len());
            let worst = ours
                .iter()
                .zip(burns)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "max difference {worst}");
        }
    }
}
