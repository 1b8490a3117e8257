//! Layer normalisation (Ba et al., 2016) over the last dimension, as the op the GPT blocks call:
//! the built-in CPU kernel on burn's Flex device ([`super::cpu::layer_norm`]), burn's
//! `LayerNorm` module elsewhere. Same arithmetic: biased variance, ε inside the square root.

use std::sync::Mutex;

use burn::nn::LayerNorm;
use burn::tensor::{DType, Tensor};

use super::cpu::is_flex;

static LAST: Mutex<Option<&'static str>> = Mutex::new(None);

/// Name of the implementation the most recent call ran: `"reference"` or `"cpu-layer-norm"`.
pub fn last_path() -> Option<&'static str> {
    *LAST.lock().expect("layer norm path lock")
}

/// `norm.forward(x)`: (x − mean) / √(var + ε) · γ + β over the last dimension. `epsilon` must
/// be the one `norm` was built with (burn keeps it private).
///
/// # Shapes
/// - `x`: `[..., d]` with d = γ's length; returns the shape of `x`.
pub fn layer_norm<const D: usize>(x: Tensor<D>, norm: &LayerNorm, epsilon: f64) -> Tensor<D> {
    let device = x.device();
    let accepted = is_flex(&device) && x.dtype() == DType::F32 && norm.beta.is_some();
    let y = if super::take_fused("layer_norm", accepted, &device) && accepted {
        *LAST.lock().expect("layer norm path lock") = Some("cpu-layer-norm");
        let beta = norm.beta.as_ref().expect("checked above").val();
        super::cpu::layer_norm::cpu_layer_norm(x.clone(), norm.gamma.val(), beta, epsilon)
    } else if x.dtype() != norm.gamma.val().dtype() {
        // f16 activations: the statistics in f32, the result back in the input's dtype.
        *LAST.lock().expect("layer norm path lock") = Some("reference");
        let dtype = x.dtype();
        crate::precision::to_dtype(norm.forward(x.clone().cast(DType::F32)), dtype)
    } else {
        *LAST.lock().expect("layer norm path lock") = Some("reference");
        norm.forward(x.clone())
    };
    // Differentially private training records per-sample gradient taps here.
    super::per_sample::tap_layer_norm(&x, y, norm, epsilon)
}
