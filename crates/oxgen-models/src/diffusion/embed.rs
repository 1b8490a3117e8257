//! Timestep and class embeddings shared by the denoisers.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData, activation::silu};

/// Sinusoidal embedding of (float) timesteps, as in "Attention Is All You Need".
///
/// # Shapes
/// - `t`: `[batch]`; returns `[batch, dim]`.
pub fn sinusoidal(t: Tensor<1>, dim: usize) -> Tensor<2> {
    let half = dim / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f32.ln()) * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::<1>::from_data(TensorData::new(freqs, [half]), &device);
    let args = t.unsqueeze_dim::<2>(1).mul(freqs.unsqueeze_dim(0)); // [b, half]
    Tensor::cat(vec![args.clone().sin(), args.cos()], 1)
}

/// Maps (timestep, optional class) to a conditioning vector.
///
/// Class `num_classes` is the "null" class that classifier-free guidance trains with.
#[derive(Module, Debug)]
pub struct CondEmbedding {
    time1: Linear,
    time2: Linear,
    class: Option<Embedding>,
    freq_dim: usize,
}

impl CondEmbedding {
    /// An embedding of width `dim`, with `num_classes + 1` class rows when conditional.
    pub fn new(dim: usize, num_classes: Option<usize>, device: &Device) -> Self {
        let freq_dim = dim.max(32);
        Self {
            time1: LinearConfig::new(freq_dim, dim).init(device),
            time2: LinearConfig::new(dim, dim).init(device),
            class: num_classes.map(|n| EmbeddingConfig::new(n + 1, dim).init(device)),
            freq_dim,
        }
    }

    /// # Shapes
    /// - `t`: `[batch]` (timestep as float), `labels`: `[batch]`; returns `[batch, dim]`.
    pub fn forward(&self, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<2> {
        // burn's own arithmetic, tapped for per-sample gradients (DP-SGD).
        let affine = crate::ops::per_sample::burn_affine;
        let emb = affine(
            silu(affine(sinusoidal(t, self.freq_dim), &self.time1)),
            &self.time2,
        );
        match (&self.class, labels) {
            (Some(class), Some(labels)) => {
                let [b] = labels.dims();
                let c = crate::ops::embedding::embedding(labels.unsqueeze_dim::<2>(1), class); // [b, 1, dim]
                let dim = c.dims()[2];
                emb + c.reshape([b, dim])
            }
            _ => emb,
        }
    }
}
