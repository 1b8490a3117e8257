//! 2D convolution as the op the UNet calls: the built-in CPU kernel on burn's Flex device
//! ([`super::cpu::conv`]; ungrouped, undilated, with a bias and explicit or no padding), burn's
//! `Conv2d` module elsewhere; and the transposed convolution, burn's module, tapped.

use std::sync::Mutex;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::{DType, Tensor};

use super::cpu::conv::{ConvLaunch, cpu_conv2d};
use super::cpu::is_flex;

static LAST: Mutex<Option<&'static str>> = Mutex::new(None);

/// Name of the implementation the most recent call ran: `"reference"` or `"cpu-conv2d"`.
pub fn last_path() -> Option<&'static str> {
    *LAST.lock().expect("conv path lock")
}

/// `conv.forward(x)`, tapped for per-sample gradients while a
/// [`super::per_sample::record`] is open.
///
/// # Shapes
/// - `x`: `[b, cin, h, w]`; returns `[b, cout, ho, wo]` as the module does.
pub fn conv2d(x: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    let y = conv2d_untapped(x.clone(), conv);
    super::per_sample::tap_conv(&x, y, conv)
}

/// `conv.forward(x)` for a transposed convolution (burn's module), tapped for per-sample
/// gradients while a [`super::per_sample::record`] is open.
///
/// # Shapes
/// - `x`: `[b, cin, h, w]`; returns `[b, cout, ho, wo]` as the module does.
pub fn conv_transpose2d(x: Tensor<4>, conv: &ConvTranspose2d) -> Tensor<4> {
    super::per_sample::burn_conv_transpose(x, conv)
}

fn conv2d_untapped(x: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    let device = x.device();
    let [_, _, h, w] = x.dims();
    let [kh, kw] = conv.kernel_size;
    // Explicit and valid padding (`Same` takes the reference).
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some((top, left, bottom, right)),
        PaddingConfig2d::Valid => Some((0, 0, 0, 0)),
        PaddingConfig2d::Same => None,
    };
    let accepted = is_flex(&device)
        && x.dtype() == DType::F32
        && conv.groups == 1
        && conv.dilation == [1, 1]
        && conv.bias.is_some()
        && padding.is_some_and(|(t, l, b, r)| h + t + b >= kh && w + l + r >= kw);
    let Some((top, left, bottom, right)) = padding.filter(|_| accepted) else {
        *LAST.lock().expect("conv path lock") = Some("reference");
        return conv.forward(x);
    };
    if !super::take_fused("conv2d", true, &device) {
        *LAST.lock().expect("conv path lock") = Some("reference");
        return conv.forward(x);
    }
    let [sh, sw] = conv.stride;
    let launch = ConvLaunch {
        stride: [sh, sw],
        pad: [top, left],
        out: [
            (h + top + bottom - kh) / sh + 1,
            (w + left + right - kw) / sw + 1,
        ],
    };
    *LAST.lock().expect("conv path lock") = Some("cpu-conv2d");
    let bias = conv.bias.as_ref().expect("checked above").val();
    cpu_conv2d(x, conv.weight.val(), bias, launch)
}
