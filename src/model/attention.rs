//! TinyViT's windowed attention core, `softmax(q kᵀ scale + bias) v` for every window and head,
//! as one task per (window, head) on the CPU backend. burn runs it as two batched products with
//! a transposed view, a softmax and a copy between them; the products split poorly over threads
//! (layer 2's 196-token windows: 1.45x from a second thread, a fifth of what a two-thread pass
//! lost). Here each task reads q, k and v where the qkv layer wrote them (gemm takes strides),
//! keeps its scores in a scratch buffer, and writes its head's columns of the output.

use burn::tensor::{Tensor, TensorData};

use super::kernels::{self, Disjoint, f32s, gemm_add, softmax_rows, values};

/// Which query rows of each window the attention computes.
#[derive(Debug, Clone, Copy)]
pub enum Queries {
    All,
    /// Those above the end of a grid of side `resolution` cut into windows of side `window`
    /// (windows of a batch in row-major order): the rows below it are padding, whose outputs
    /// are dropped, in the last row of windows (a twelfth of a LiteMedSAM pass's queries in
    /// layers 2 and 3). Their output rows are left at zero.
    AboveGridEnd {
        resolution: usize,
        window: usize,
    },
}

impl Queries {
    /// The leading query rows of window `index` to compute, of `n`.
    fn count(self, index: usize, n: usize) -> usize {
        match self {
            Self::All => n,
            Self::AboveGridEnd { resolution, window } => {
                let per_side = resolution.div_ceil(window);
                let wy = index / per_side % per_side;
                (window.min(resolution - wy * window) * window).min(n)
            }
        }
    }
}

/// `qkv` [windows, n, heads * 3 * key_dim] (per head q, k, v side by side) to the attended
/// values [windows, n, heads * key_dim], with `bias` [1, heads, n, n]; only the rows `queries`
/// names on the CPU backend.
pub fn attend(
    qkv: Tensor<3>,
    heads: usize,
    scale: f32,
    bias: Tensor<4>,
    queries: Queries,
) -> Tensor<3> {
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
        queries,
    };
    let mut out = vec![0.0f32; windows * n * heads * kd];
    // Each task writes its own (window, head) block.
    let out_ptr = Disjoint::new(&mut out);
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
    queries: Queries,
}

impl Windows<'_> {
    /// Window `window`, head `head`: its kd columns of the window's rows of `out`.
    ///
    /// # Safety
    /// No other task may write window `window`, head `head` of `out` meanwhile.
    unsafe fn attend(
        &self,
        window: usize,
        head: usize,
        scores: &mut Vec<f32>,
        out: &Disjoint<f32>,
    ) {
        let Self { n, heads, kd, .. } = *self;
        let m = self.queries.count(window, n);
        let row = heads * 3 * kd;
        let base = &self.qkv[window * n * row + head * 3 * kd..];
        let (q, k, v) = (base.as_ptr(), base[kd..].as_ptr(), base[2 * kd..].as_ptr());
        // The products add onto their destination: fresh scores, and output columns that only
        // this task writes, still zero.
        scores.clear();
        scores.resize(m * n, 0.0);
        let row = row as isize;
        let single = gemm::Parallelism::None;
        // SAFETY: q and k rows lie `row` apart inside the window's n rows; scores holds m x n.
        unsafe {
            gemm_add(
                [m, n, kd],
                (scores.as_mut_ptr(), n as isize, 1),
                (q, row, 1),
                // kᵀ: its row c is k's column c, walking the tokens at `row` apart.
                (k, 1, row),
                single,
            );
        }
        softmax_rows(scores, head * n, [heads, n, n], self.scale, self.bias);
        let dst = out.at(window * n * heads * kd + head * kd);
        // SAFETY: dst rows are the window's output rows (heads * kd apart), this head's kd
        // columns.
        unsafe {
            gemm_add(
                [m, kd, n],
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

    /// burn's composition of the attention, every query row.
    fn burns(qkv: Tensor<3>, heads: usize, scale: f32, bias: Tensor<4>) -> Vec<f32> {
        let [windows, n, width] = qkv.dims();
        let kd = width / heads / 3;
        let qkv = qkv.reshape([windows, n, heads, 3 * kd]).swap_dims(1, 2);
        let q = qkv.clone().narrow(3, 0, kd);
        let k = qkv.clone().narrow(3, kd, kd);
        let v = qkv.narrow(3, 2 * kd, kd);
        let attn = burn::tensor::activation::softmax(
            q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias,
            3,
        );
        attn.matmul(v)
            .swap_dims(1, 2)
            .reshape([windows, n, heads * kd])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    fn inputs(windows: usize, n: usize, heads: usize, kd: usize) -> (Tensor<3>, Tensor<4>) {
        let device = crate::backend::cpu();
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
        (qkv, bias)
    }

    /// The fused kernel against burn's composition, on windows of 49 and of 20 tokens (not a
    /// multiple of any vector width) with two and three heads.
    #[test]
    fn matches_burns_attention() {
        for (windows, n, heads, kd) in [(3, 49, 2, 8), (2, 20, 3, 5)] {
            let (qkv, bias) = inputs(windows, n, heads, kd);
            let scale = (kd as f32).powf(-0.5);
            let ours = attend(qkv.clone(), heads, scale, bias.clone(), Queries::All);
            let ours = ours.into_data().try_to_vec::<f32>().unwrap();
            let burns = burns(qkv, heads, scale, bias);
            assert_eq!(ours.len(), burns.len());
            let worst = ours
                .iter()
                .zip(&burns)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "max difference {worst}");
        }
    }

    /// A 5 x 5 grid in 3 x 3 windows, two images: the bottom windows' last row is padding and
    /// stays zero; every other row is burn's.
    #[test]
    fn skips_the_queries_below_the_grid() {
        let (ws, r, heads, kd) = (3, 5, 2, 4);
        let (windows, n) = (2 * 4, ws * ws);
        let (qkv, bias) = inputs(windows, n, heads, kd);
        let queries = Queries::AboveGridEnd {
            resolution: r,
            window: ws,
        };
        let ours = attend(qkv.clone(), heads, 0.5, bias.clone(), queries);
        let ours = ours.into_data().try_to_vec::<f32>().unwrap();
        let burns = burns(qkv, heads, 0.5, bias);
        let width = heads * kd;
        for window in 0..windows {
            let bottom = window % 4 >= 2;
            for t in 0..n {
                let row = (window * n + t) * width;
                let (a, b) = (&ours[row..row + width], &burns[row..row + width]);
                if bottom && t / ws == 2 {
                    assert!(a.iter().all(|&v| v == 0.0), "window {window} token {t}");
                } else {
                    let worst = a
                        .iter()
                        .zip(b)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0.0, f32::max);
                    assert!(worst < 1e-5, "window {window} token {t}: {worst}");
                }
            }
        }
    }
}
