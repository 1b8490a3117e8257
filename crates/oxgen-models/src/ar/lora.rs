//! LoRA adapters on the GPT (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language
//! Models"): a target layer's weight W (`[in, out]`) becomes W + (α / r) · A·B with A `[in, r]`
//! and B `[r, out]`; only A and B train, and B starts at zero, so the adapted model starts as the
//! base.
//!
//! burn 0.22 carries the mechanism ([`burn::module::Lora`]: every parameter frozen, an adapter on
//! each weight of a parameter group, `materialize` to merge), so this file only says which of the
//! GPT's weights are targets and keeps the config. The adapted weight is composed where a layer
//! reads it (`Param::val`), so every op, the CPU kernels included, runs unchanged.

use burn::module::{Lora, Module, ParamGroup};

use super::gpt::{Gpt, GptConfig};
use crate::settings::settings;

/// Layers a LoRA adapter can target: the attention's input and output projections, the MLP's
/// two layers, and the output head (only when it is not tied to the token embedding).
pub const TARGETS: [&str; 5] = ["qkv", "proj", "fc", "out", "head"];

settings! {
    /// Configuration of LoRA adapters. The defaults are PEFT's common choice for small models:
    /// rank 8, α = 16, every linear layer of every block.
    pub struct LoraConfig {
        /// Rank r of A·B.
        pub rank: usize = 8, with_rank;
        /// α: the update is scaled by α / r.
        pub alpha: f64 = 16.0, with_alpha;
        /// Target layers, from [`TARGETS`].
        pub targets: Vec<String> = ["qkv", "proj", "fc", "out"].map(String::from).to_vec(), with_targets;
    }
}

impl LoraConfig {
    /// Refuses adapters that `model` cannot take: rank 0, a non-positive or non-finite α, no
    /// targets, an unknown target, or `head` on a model whose head is tied.
    pub fn validate(&self, model: &GptConfig) -> Result<(), String> {
        if self.rank == 0 {
            return Err("LoRA rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("LoRA alpha must be positive, got {}", self.alpha));
        }
        if self.targets.is_empty() {
            return Err("LoRA needs at least one target layer".into());
        }
        for t in &self.targets {
            if !TARGETS.contains(&t.as_str()) {
                return Err(format!(
                    "unknown LoRA target {t:?}; the targets are {}",
                    TARGETS.join(", ")
                ));
            }
            if t == "head" && model.tie_weights {
                return Err("LoRA target head: this model's head is tied to the token \
                            embedding; it has no separate head weight"
                    .into());
            }
        }
        Ok(())
    }

    /// The module paths of the target weights of a model with `layers` blocks.
    fn paths(&self, layers: usize) -> Vec<String> {
        let mut paths = Vec::new();
        for t in &self.targets {
            if t == "head" {
                paths.push("head.weight".to_string());
            } else {
                paths.extend((0..layers).map(|i| format!("blocks.{i}.{t}.weight")));
            }
        }
        paths
    }
}

impl Gpt {
    /// The model with LoRA adapters on the target weights of `config`: every weight of the
    /// base is frozen, A ~ N(0, 1/r) and B = 0 (burn's initialisation, from the device's
    /// generator: seed it first for a reproducible run).
    ///
    /// # Panics
    /// On a config that [`LoraConfig::validate`] refuses for this model; tuners validate first.
    pub fn with_lora(self, config: &LoraConfig) -> Gpt {
        let layers = self.layers();
        let lora = Lora::new(config.rank, config.alpha)
            .set_param_group(ParamGroup::from_paths(config.paths(layers)));
        let model = self.apply_lora(lora);
        assert!(
            model.adapters() > 0,
            "LoRA targets {:?} matched no weight",
            config.targets
        );
        model
    }

    /// The number of weights carrying a LoRA adapter.
    pub fn adapters(&self) -> usize {
        let mut n = 0;
        self.for_each_weight(|w| n += usize::from(w.adapter().is_some()));
        n
    }

    /// The model with every adapter folded into its weight (W ← W + (α / r)·A·B): a plain GPT
    /// that computes what the adapted one does. Its weights stay frozen; call
    /// `set_require_grad(true)` to train them.
    pub fn merge_lora(self) -> Gpt {
        self.materialize()
    }

    /// Parameters that train: with adapters, those of A and B only.
    pub fn trainable_params(&self) -> usize {
        let mut n = 0;
        self.for_each_weight(|w| {
            if let Some(a) = w.adapter() {
                n += a.a.val().shape().num_elements() + a.b.val().shape().num_elements();
            }
        });
        if n == 0 { self.num_params() } else { n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

    fn tiny(tie: bool) -> (Gpt, GptConfig, Device) {
        let device = Device::flex();
        let config = GptConfig::new(11)
            .with_context(16)
            .with_layers(2)
            .with_heads(2)
            .with_width(16)
            .with_tie_weights(tie);
        (config.init(&device), config, device)
    }

    fn tokens(device: &Device) -> Tensor<2, Int> {
        let data: Vec<i64> = (0..2 * 12).map(|i| (i * 7 % 11) as i64).collect();
        Tensor::from_data(TensorData::new(data, [2, 12]), device)
    }

    /// Moves every parameter (B included) away from its initial value, so that merging has
    /// something to fold in.
    struct Perturb;

    impl ModuleMapper for Perturb {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, 0.2), &t.device());
                t + noise
            })
        }
    }

    fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn a_new_adapter_leaves_the_model_as_it_was() {
        let (base, _, device) = tiny(true);
        let x = tokens(&device);
        let before = base.forward(x.clone());
        let adapted = base.with_lora(&LoraConfig::default());
        // 4 targets × 2 blocks; A: [in, 8], B: [8, out] for qkv 16→48, proj 16→16, fc 16→64,
        // out 64→16.
        assert_eq!(adapted.adapters(), 8);
        let per_block = (16 + 48) * 8 + (16 + 16) * 8 + (16 + 64) * 8 + (64 + 16) * 8;
        assert_eq!(adapted.trainable_params(), 2 * per_block);
        assert_eq!(max_abs_diff(adapted.forward(x), before), 0.0);
    }

    #[test]
    fn merged_adapters_compute_what_unmerged_ones_do() {
        for (tie, targets) in [(true, vec!["qkv", "out"]), (false, TARGETS.to_vec())] {
            let (base, _, device) = tiny(tie);
            let config = LoraConfig::default()
                .with_rank(3)
                .with_alpha(5.0)
                .with_targets(targets.iter().map(|t| t.to_string()).collect());
            let adapted = base.with_lora(&config).map(&mut Perturb);
            let x = tokens(&device);
            let unmerged = adapted.forward(x.clone());
            let merged = adapted.clone().merge_lora();
            assert_eq!(merged.adapters(), 0);
            let diff = max_abs_diff(merged.forward(x.clone()), unmerged.clone());
            assert!(diff < 1e-5, "merged differs by {diff}");
            // Something was folded in: the merged weights are not the adapted model's bases.
            let mut bases = Vec::new();
            adapted.for_each_weight(|w| bases.push(w.base()));
            let mut moved = 0.0f32;
            let mut i = 0;
            merged.for_each_weight(|w| {
                let d = (w.val() - bases[i].clone())
                    .abs()
                    .max()
                    .into_scalar::<f32>();
                moved = moved.max(d);
                i += 1;
            });
            assert!(moved > 1e-2, "merging changed no weight ({moved})");
        }
    }

    #[test]
    fn bad_targets_are_refused() {
        let (_, tied, _) = tiny(true);
        let bad = |c: LoraConfig| c.validate(&tied).unwrap_err();
        assert!(bad(LoraConfig::default().with_rank(0)).contains("rank"));
        assert!(bad(LoraConfig::default().with_alpha(f64::NAN)).contains("alpha"));
        assert!(bad(LoraConfig::default().with_targets(vec!["attn".into()])).contains("attn"));
        assert!(bad(LoraConfig::default().with_targets(vec!["head".into()])).contains("tied"));
        assert!(bad(LoraConfig::default().with_targets(vec![])).contains("target"));
        let (_, untied, _) = tiny(false);
        let head = LoraConfig::default().with_targets(vec!["head".into()]);
        assert!(head.validate(&untied).is_ok());
    }
}
