//! The arithmetic precision of a model's activations: mixed-precision training keeps f32 master
//! weights (and optimizer state) and runs the forward and backward in f16 where the device has
//! it (Micikevicius et al., 2018, "Mixed Precision Training").
//!
//! Under [`Precision::F16`] a model casts its activations to f16 once, at its input; each op
//! casts the weights it reads to the activations' dtype (so their gradients come back in f32,
//! through the cast), normalisations compute their statistics in f32, and the model casts its
//! output (logits) back to f32 for the loss.

use std::str::FromStr;

use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// The dtype of activations in the forward and backward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// f16 activations, f32 master weights and accumulation (with dynamic loss scaling in the
    /// trainer).
    F16,
}

impl Precision {
    /// The activations' dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }

    /// Whether this is f32 (the default).
    pub fn is_f32(&self) -> bool {
        *self == Self::F32
    }

    /// Whether `device` can hold tensors of this precision (a wgpu adapter needs shader-f16).
    pub fn supported_on(self, device: &Device) -> bool {
        self == Self::F32 || device.supports_dtype(self.dtype())
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "half" | "float16" => Ok(Self::F16),
            other => Err(format!("unknown precision `{other}`; expected f32 or f16")),
        }
    }
}

/// `x` in `dtype` (no copy when it already is).
pub fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype { x } else { x.cast(dtype) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for p in [Precision::F32, Precision::F16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
        }
        assert!("bf16".parse::<Precision>().is_err());
    }

    /// f16 keeps 11 significant bits: a cast there and back rounds to the nearest of them
    /// (IEEE 754-2008 binary16; 1 + 2⁻¹⁰ is the next value after 1).
    #[test]
    fn casts_round_to_binary16() {
        let device = Device::flex();
        assert!(
            Precision::F16.supported_on(&device),
            "burn's Flex device holds f16"
        );
        let x = Tensor::<1>::from_floats(
            [1.0, 1.0 + 1.0 / 1024.0, 1.0 + 1.0 / 4096.0, 65504.0],
            &device,
        );
        let back = to_dtype(to_dtype(x, DType::F16), DType::F32);
        let v: Vec<f32> = back.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![1.0, 1.0 + 1.0 / 1024.0, 1.0, 65504.0]);
    }

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
    }

    /// A GPT computing in f16 gives the f32 model's logits and weight gradients to f16's
    /// precision (11 significant bits, so ~10⁻³ per op, a few 10⁻³ after two blocks): the
    /// activations are f16, the logits and the gradients of the (f32) weights come back f32.
    #[test]
    fn an_f16_gpt_matches_the_f32_one() {
        use crate::ar::GptConfig;
        use burn::tensor::{Int, TensorData};
        let device = Device::flex().autodiff();
        let config = GptConfig::new(13)
            .with_context(9)
            .with_layers(2)
            .with_heads(2)
            .with_width(32);
        device.seed(3);
        let model = config.init(&device);
        let tokens: Vec<i64> = (0..3 * 9).map(|i| (i * 7 + 2) % 13).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [3, 9]), &device);
        let run = |precision: Precision| {
            let m = model.clone().with_precision(precision);
            assert_eq!(m.precision(), precision);
            let logits = m.forward(tokens.clone());
            assert_eq!(logits.dtype(), DType::F32, "logits come back in f32");
            let values: Vec<f32> = logits
                .clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            let grads = logits.square().mean().backward();
            let mut g: Vec<f32> = Vec::new();
            m.for_each_weight(|w| {
                let grad = w.grad(&grads).expect("every weight has a gradient");
                assert_eq!(grad.dtype(), DType::F32, "master-weight gradients are f32");
                g.extend(grad.into_data().try_to_vec::<f32>().unwrap());
            });
            (values, g)
        };
        let (l32, g32) = run(Precision::F32);
        let (l16, g16) = run(Precision::F16);
        let (dl, dg) = (max_rel(&l16, &l32), max_rel(&g16, &g32));
        eprintln!("f16 against f32: logits {dl:.2e}, weight gradients {dg:.2e} of their scale");
        assert!(dl < 5e-3, "logits differ by {dl} of their scale");
        assert!(dg < 5e-3, "weight gradients differ by {dg} of their scale");
        // Not the same arithmetic: f16 did run.
        assert!(dl > 0.0, "the f16 model computed in f32");
    }
}
