//! An MLP denoiser with a timestep embedding, for low-dimensional (2D) data.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, activation::silu};

use super::embed::CondEmbedding;

/// Configuration of [`MlpDenoiser`].
#[derive(Config, Debug, PartialEq)]
pub struct MlpDenoiserConfig {
    /// Width of the hidden layers.
    #[config(default = 256)]
    pub hidden: usize,
    /// Number of residual blocks.
    #[config(default = 3)]
    pub blocks: usize,
}

#[derive(Module, Debug)]
struct Block {
    norm: LayerNorm,
    fc1: Linear,
    cond: Linear,
    fc2: Linear,
}

impl Block {
    fn forward(&self, h: Tensor<2>, cond: Tensor<2>) -> Tensor<2> {
        let y = self.fc1.forward(self.norm.forward(h.clone()));
        let y = silu(y + self.cond.forward(cond));
        h + self.fc2.forward(y)
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
}

impl MlpDenoiserConfig {
    /// Builds the denoiser for data of `dim` features.
    pub fn init(&self, dim: usize, num_classes: Option<usize>, device: &Device) -> MlpDenoiser {
        let h = self.hidden;
        MlpDenoiser {
            input: LinearConfig::new(dim, h).init(device),
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
        }
    }
}

impl MlpDenoiser {
    /// # Shapes
    /// - `x`: `[batch, dim]`, `t`: `[batch]`, `labels`: `[batch]`; returns `[batch, dim]`.
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<2> {
        let cond = silu(self.embed.forward(t, labels)); // [b, h]
        let mut h = self.input.forward(x);
        for block in &self.blocks {
            h = block.forward(h, cond.clone());
        }
        self.output.forward(silu(self.norm.forward(h)))
    }
}
