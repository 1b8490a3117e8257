//! 2D convolution as the op the UNet calls: the built-in CPU kernel on burn's Flex device
//! ([`super::cpu::conv`]), a kernel crate's fused one where it accepts the device (registered
//! with [`register_fused`]; it brings its own autodiff node, so training takes it too), burn's
//! `Conv2d` module elsewhere; and the transposed convolution, burn's module, tapped. The fused
//! paths take ungrouped, undilated convolutions with a bias and explicit or no padding.

use std::sync::{Mutex, OnceLock};

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::{DType, Device, Tensor};

pub use super::cpu::conv::ConvLaunch;
use super::cpu::conv::cpu_conv2d;
use super::cpu::is_flex;

static LAST: Mutex<Option<&'static str>> = Mutex::new(None);

/// Name of the implementation the most recent call ran: `"reference"`, `"cpu-conv2d"` or a
/// registered kernel's name.
pub fn last_path() -> Option<&'static str> {
    *LAST.lock().expect("conv path lock")
}

/// The op's name in [`super::stats`]: the CPU kernel's and a registered kernel's calls, and the
/// reference's on the devices that one of them serves (elsewhere burn's module is simply the
/// implementation, and is not counted).
pub const OP: &str = "conv2d";

/// A fused 2D convolution, provided by a kernel crate: forward, and on autodiff devices its own
/// backward (input, weight and bias gradients).
pub trait FusedConv2d: Send + Sync {
    /// A short name for logs and tests.
    fn name(&self) -> &'static str;
    /// Whether tensors on `device` can take this path.
    fn accepts(&self, device: &Device) -> bool;
    /// Whether this kernel takes a `kh × kw` kernel (it may bound the window's size).
    fn takes_kernel(&self, kh: usize, kw: usize) -> bool;
    /// Whether this kernel takes the stride (rows, columns).
    fn takes_stride(&self, stride: [usize; 2]) -> bool;
    /// The convolution: `x` `[b, cin, h, w]`, `weight` `[cout, cin, kh, kw]`, `bias` `[cout]`;
    /// returns `[b, cout, launch.out[0], launch.out[1]]`. Only called when
    /// [`FusedConv2d::accepts`] is true.
    fn forward(
        &self,
        x: Tensor<4>,
        weight: Tensor<4>,
        bias: Tensor<1>,
        launch: ConvLaunch,
    ) -> Tensor<4>;
}

static FUSED: OnceLock<Box<dyn FusedConv2d>> = OnceLock::new();

/// Registers the fused implementation. The first registration wins; later ones return false.
pub fn register_fused(kernel: Box<dyn FusedConv2d>) -> bool {
    FUSED.set(kernel).is_ok()
}

/// Whether a fused kernel accepts tensors on `device`: a registered one, or the built-in CPU
/// kernel on the Flex device.
pub fn accepts(device: &Device) -> bool {
    super::install_kernels();
    FUSED.get().is_some_and(|k| k.accepts(device)) || is_flex(device)
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
    let shape_ok = x.dtype() == DType::F32
        && conv.groups == 1
        && conv.dilation == [1, 1]
        && conv.bias.is_some()
        && padding.is_some_and(|(t, l, b, r)| h + t + b >= kh && w + l + r >= kw);
    let reference = |x: Tensor<4>| {
        *LAST.lock().expect("conv path lock") = Some("reference");
        conv.forward(x)
    };
    let launch = padding
        .filter(|_| shape_ok)
        .map(|(top, left, bottom, right)| {
            let [sh, sw] = conv.stride;
            ConvLaunch {
                stride: [sh, sw],
                pad: [top, left],
                out: [
                    (h + top + bottom - kh) / sh + 1,
                    (w + left + right - kw) / sw + 1,
                ],
            }
        });
    // The CPU kernel on Flex, else a registered kernel that accepts the device; elsewhere
    // burn's module is simply the implementation, and is not counted.
    let flex = is_flex(&device);
    super::install_kernels();
    let registered = FUSED.get().filter(|k| !flex && k.accepts(&device));
    if !flex && registered.is_none() {
        return reference(x);
    }
    let takes = registered.is_none_or(|k| k.takes_kernel(kh, kw) && k.takes_stride(conv.stride));
    match launch.filter(|_| takes && super::take_fused(OP, true, &device)) {
        Some(launch) => {
            let name = registered.map_or("cpu-conv2d", |k| k.name());
            super::stats::fused(OP, name);
            *LAST.lock().expect("conv path lock") = Some(name);
            let (weight, bias) = (
                conv.weight.val(),
                conv.bias.as_ref().expect("checked above").val(),
            );
            match registered {
                Some(kernel) => kernel.forward(x, weight, bias, launch),
                None => cpu_conv2d(x, weight, bias, launch),
            }
        }
        None => {
            let reason = if launch.is_none() || !takes {
                "the kernel declined the input"
            } else {
                super::reference_reason(true, &device)
            };
            super::stats::reference(OP, reason);
            reference(x)
        }
    }
}

/// The plain-burn reference: burn's `Conv2d` module.
///
/// # Shapes
/// - `x`: `[b, cin, h, w]`; returns `[b, cout, ho, wo]`.
pub fn conv2d_reference(x: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    conv.forward(x)
}
