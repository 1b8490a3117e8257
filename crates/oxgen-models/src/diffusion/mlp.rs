//! An MLP denoiser with a timestep embedding, for low-dimensional (2D) data.

use crate::settings::settings;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, activation::silu};

use super::embed::{CondEmbedding, sinusoidal};

settings! {
    /// Configuration of [`MlpDenoiser`].
    pub struct MlpDenoiserConfig {
        /// Width of the hidden layers.
        pub hidden: usize = 128, with_hidden;
        /// Number of residual blocks.
        pub blocks: usize = 3, with_blocks;
        /// Sinusoidal frequencies per input coordinate (0: feed raw coordinates). Fourier features
        /// of the input let a small MLP draw sharp low-dimensional densities (Tancik et al., 2020).
        pub input_frequencies: usize = 0, with_input_frequencies;
    }
}

impl MlpDenoiserConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Module, Debug)]
struct Block {
    norm: LayerNorm,
    fc1: Linear,
    cond: Linear,
    fc2: Linear,
}

/// The LayerNorms' ε (burn's default, which `LayerNormConfig::new` builds with).
const LN_EPSILON: f64 = 1e-5;

// burn's own arithmetic, tapped for per-sample gradients (DP-SGD).
use crate::ops::per_sample::{burn_affine as affine, burn_layer_norm};

fn norm(x: Tensor<2>, norm: &LayerNorm) -> Tensor<2> {
    burn_layer_norm(x, norm, LN_EPSILON)
}

impl Block {
    fn forward(&self, h: Tensor<2>, cond: Tensor<2>) -> Tensor<2> {
        let y = affine(norm(h.clone(), &self.norm), &self.fc1);
        let y = silu(y + affine(cond, &self.cond));
        h + affine(y, &self.fc2)
    }
}

/// Residual MLP: x ↦ Linear → blocks (LayerNorm, Linear + cond, SiLU, Linear) → Linear.
#[derive(Module, Debug)]
pub struct MlpDenoiser {
    input: Linear,
    embed: CondEmbedding,
    blocks: Vec<Block>,
    norm: LayerNorm,
    output: Linear,
    frequencies: usize,
}

/// Scale applied to coordinates before their sinusoidal features.
const INPUT_SCALE: f64 = 25.0;

impl MlpDenoiserConfig {
    /// Builds the denoiser for data of `dim` features.
    pub fn init(&self, dim: usize, num_classes: Option<usize>, device: &Device) -> MlpDenoiser {
        let h = self.hidden;
        let features = if self.input_frequencies > 0 {
            2 * self.input_frequencies * dim
        } else {
            dim
        };
        MlpDenoiser {
            input: LinearConfig::new(features, h).init(device),
            embed: CondEmbedding::new(h, num_classes, device),
            blocks: (0..self.blocks)
                .map(|_| Block {
                    norm: LayerNormConfig::new(h).init(device),
                    fc1: LinearConfig::new(h, h).init(device),
                    cond: LinearConfig::new(h, h).init(device),
                    fc2: LinearConfig::new(h, h).init(device),
                })
                .collect(),
            norm: LayerNormConfig::new(h).init(device),
            output: LinearConfig::new(h, dim).init(device),
            frequencies: self.input_frequencies,
        }
    }
}

impl MlpDenoiser {
    /// # Shapes
    /// - `x`: `[batch, dim]`, `t`: `[batch]`, `labels`: `[batch]`; returns `[batch, dim]`.
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<2> {
        let cond = silu(self.embed.forward(t, labels)); // [b, h]
        let mut h = affine(self.features(x), &self.input);
        for block in &self.blocks {
            h = block.forward(h, cond.clone());
        }
        affine(silu(norm(h, &self.norm)), &self.output)
    }

    /// `[batch, dim]` → `[batch, 2·frequencies·dim]` (or the input itself without frequencies).
    fn features(&self, x: Tensor<2>) -> Tensor<2> {
        if self.frequencies == 0 {
            return x;
        }
        let [b, d] = x.dims();
        let cols = (0..d)
            .map(|j| {
                sinusoidal(
                    x.clone()
                        .slice([0..b, j..j + 1])
                        .reshape([b])
                        .mul_scalar(INPUT_SCALE),
                    2 * self.frequencies,
                )
            })
            .collect();
        Tensor::cat(cols, 1)
    }
}
