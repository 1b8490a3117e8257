//! The affine layer x·W + b, as the op the GPT and UNet blocks call: the built-in CPU kernel on
//! burn's Flex device ([`super::cpu::linear`]), burn's `Linear` module elsewhere (and for a layer
//! without a bias, or a 1-D input). Same arithmetic either way. Inputs in another dtype than the
//! weights (f16 activations, [`crate::precision`]) read the weights cast to theirs.

use std::sync::Mutex;

use burn::nn::Linear;
use burn::tensor::{DType, Tensor};

use super::cpu::is_flex;

static LAST: Mutex<Option<&'static str>> = Mutex::new(None);

/// Name of the implementation the most recent call ran: `"reference"` or `"cpu-linear"`.
pub fn last_path() -> Option<&'static str> {
    *LAST.lock().expect("linear path lock")
}

/// `layer.forward(x)`: x·W + b over the last dimension.
///
/// # Shapes
/// - `x`: `[..., k]` with k = the layer's input width; returns `[..., n]`, n its output width.
pub fn linear<const D: usize>(x: Tensor<D>, layer: &Linear) -> Tensor<D> {
    let device = x.device();
    let [k, _] = layer.weight.dims();
    let accepted = is_flex(&device)
        && x.dtype() == DType::F32
        && layer.bias.is_some()
        && D >= 2
        && k > 0
        && x.dims()[D - 1] == k;
    let y = if super::take_fused("linear", accepted, &device) && accepted {
        *LAST.lock().expect("linear path lock") = Some("cpu-linear");
        let bias = layer.bias.as_ref().expect("checked above").val();
        super::cpu::linear::cpu_linear(x.clone(), layer.weight.val(), bias)
    } else {
        *LAST.lock().expect("linear path lock") = Some("reference");
        reference(x.clone(), layer)
    };
    // Differentially private training records per-sample gradient taps here.
    super::per_sample::tap_affine(&x, y, layer)
}

/// burn's `Linear`, with the weights cast to the input's dtype when they differ (f16
/// activations over f32 master weights: the weights' gradients come back in f32 through the
/// cast).
fn reference<const D: usize>(x: Tensor<D>, layer: &Linear) -> Tensor<D> {
    let dtype = x.dtype();
    if layer.weight.val().dtype() == dtype {
        return layer.forward(x);
    }
    let weight = crate::precision::to_dtype(layer.weight.val(), dtype);
    let bias = layer
        .bias
        .as_ref()
        .map(|b| crate::precision::to_dtype(b.val(), dtype));
    burn::tensor::module::linear(x, weight, bias)
}
