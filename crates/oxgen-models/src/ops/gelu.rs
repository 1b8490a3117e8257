//! GELU, x · Φ(x) with the exact (erf) Φ (Hendrycks & Gimpel, 2016), as the op the MLPs call:
//! the built-in CPU kernel on burn's Flex device ([`super::cpu::gelu`]), burn's `gelu`
//! elsewhere.
//!
//! burn's autodiff differentiates `gelu` with the derivative of the *tanh approximation*
//! (`burn-backend`'s `gelu_backward`), about 1e-3 off the exact one near |x| ≈ 2; the CPU kernel
//! uses the exact Φ(x) + x·φ(x).

use std::sync::Mutex;

use burn::tensor::{DType, Tensor, activation};

use super::cpu::is_flex;

static LAST: Mutex<Option<&'static str>> = Mutex::new(None);

/// Name of the implementation the most recent call ran: `"reference"` or `"cpu-gelu"`.
pub fn last_path() -> Option<&'static str> {
    *LAST.lock().expect("gelu path lock")
}

/// x · Φ(x), elementwise.
///
/// # Shapes
/// - any; returns the shape of `x`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let accepted = is_flex(&device) && x.dtype() == DType::F32;
    if super::take_fused("gelu", accepted, &device) && accepted {
        *LAST.lock().expect("gelu path lock") = Some("cpu-gelu");
        super::cpu::gelu::cpu_gelu(x)
    } else {
        *LAST.lock().expect("gelu path lock") = Some("reference");
        gelu_reference(x)
    }
}

/// burn's `gelu` (exact forward; tanh-approximation gradient, see the module docs).
pub fn gelu_reference<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::gelu(x)
}
