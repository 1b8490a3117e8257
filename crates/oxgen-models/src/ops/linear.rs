//! The affine layer x·W + b, as the op the GPT and UNet blocks call: the built-in CPU kernel on
//! burn's Flex device ([`super::cpu::linear`]), burn's `Linear` module elsewhere (and for a layer
//! without a bias, or a 1-D input). Same arithmetic either way.

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
        layer.forward(x.clone())
    };
    // Differentially private training records per-sample gradient taps here.
    super::per_sample::tap_affine(&x, y, layer)
}
