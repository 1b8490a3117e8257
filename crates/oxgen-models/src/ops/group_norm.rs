//! GroupNorm followed by SiLU, the UNet's most frequent pair: [`group_norm_silu`].
//!
//! The reference is burn's `GroupNorm` module followed by `silu`: three or more kernels and two
//! intermediate tensors. A kernel crate may register a fused version with [`register_fused`];
//! it takes tensors on the devices it accepts, forward and backward (it brings its own autodiff
//! node), so training takes it too.

use std::sync::OnceLock;

use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

/// The parameters of one GroupNorm, detached from the module.
#[derive(Clone, Debug)]
pub struct GroupNormParams {
    /// Per-channel scale γ, `[c]` (absent when not affine).
    pub gamma: Option<Tensor<1>>,
    /// Per-channel shift β, `[c]`.
    pub beta: Option<Tensor<1>>,
    /// Groups G (must divide the channels).
    pub groups: usize,
    /// ε added to the variance.
    pub epsilon: f64,
}

impl GroupNormParams {
    /// The parameters of a burn `GroupNorm` module.
    pub fn of(norm: &GroupNorm) -> Self {
        Self {
            gamma: norm.gamma.as_ref().map(|p| p.val()),
            beta: norm.beta.as_ref().map(|p| p.val()),
            groups: norm.num_groups,
            epsilon: norm.epsilon,
        }
    }
}

/// A fused GroupNorm+SiLU, provided by a kernel crate: forward, and on autodiff devices its
/// own backward.
pub trait FusedGroupNormSilu: Send + Sync {
    /// A short name for logs and tests.
    fn name(&self) -> &'static str;
    /// Whether tensors on `device` can take this path.
    fn accepts(&self, device: &Device) -> bool;
    /// `silu(group_norm(x))`. Only called when [`FusedGroupNormSilu::accepts`] is true.
    fn forward(&self, x: Tensor<4>, params: &GroupNormParams) -> Tensor<4>;
}

static FUSED: OnceLock<Box<dyn FusedGroupNormSilu>> = OnceLock::new();

/// Whether a fused kernel accepts tensors on `device`: a registered one, or the built-in CPU
/// kernel on the Flex device.
pub fn accepts(device: &Device) -> bool {
    super::install_kernels();
    FUSED.get().is_some_and(|k| k.accepts(device)) || super::cpu::is_flex(device)
}
/// Registers the fused implementation. The first registration wins; later ones return false.
pub fn register_fused(kernel: Box<dyn FusedGroupNormSilu>) -> bool {
    FUSED.set(kernel).is_ok()
}

/// The op's name in [`super::stats`].
pub const OP: &str = "group_norm_silu";

/// Name of the implementation the latest call on this thread ran: `"reference"` or the kernel's
/// name.
pub fn last_path() -> Option<&'static str> {
    super::stats::last(OP)
}

/// How many calls a registered (kernel crate's) fused kernel ran since the process started, on
/// any thread (lets tests prove that a whole model forward ran it).
pub fn fused_calls() -> usize {
    let counts = super::stats::process().op(OP);
    counts
        .kernels
        .iter()
        .filter(|(name, _)| !name.starts_with("cpu-"))
        .map(|(_, n)| *n as usize)
        .sum()
}

/// `silu(group_norm(x))`, fused where a kernel accepts the device.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; γ, β: `[c]`; output: `[b, c, h, w]`.
pub fn group_norm_silu(x: Tensor<4>, params: &GroupNormParams) -> Tensor<4> {
    let [_, c, _, _] = x.dims();
    assert!(
        params.groups > 0 && c % params.groups == 0,
        "group_norm_silu: {c} channels are not divisible into {} groups",
        params.groups
    );
    let device = x.device();
    // burn's Flex device: the built-in CPU kernel, forward and backward.
    let cpu = super::cpu::is_flex(&device)
        && x.dtype() == burn::tensor::DType::F32
        && params.gamma.is_some()
        && params.beta.is_some();
    if cpu && super::take_fused(OP, true, &device) {
        super::stats::fused(OP, "cpu-group-norm-silu");
        let launch = super::cpu::group_norm::NormLaunch {
            groups: params.groups,
            epsilon: params.epsilon as f32,
        };
        let (gamma, beta) = (params.gamma.clone(), params.beta.clone());
        return super::cpu::group_norm::cpu_group_norm_silu(
            x,
            gamma.expect("checked above"),
            beta.expect("checked above"),
            launch,
        );
    }
    super::install_kernels();
    let fused = FUSED.get().filter(|k| k.accepts(&device));
    match fused.filter(|_| super::take_fused(OP, true, &device)) {
        Some(kernel) => {
            super::stats::fused(OP, kernel.name());
            kernel.forward(x, params)
        }
        None => {
            super::stats::reference(OP, super::reference_reason(fused.is_some(), &device));
            group_norm_silu_reference(x, params)
        }
    }
}

/// `silu(norm.forward(x))` through [`group_norm_silu`], tapped for per-sample gradients while a
/// [`super::per_sample::record`] is open.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; output: `[b, c, h, w]`.
pub fn group_norm_silu_of(x: Tensor<4>, norm: &GroupNorm) -> Tensor<4> {
    let y = group_norm_silu(x.clone(), &GroupNormParams::of(norm));
    super::per_sample::tap_group_norm(&x, y, norm, true)
}

/// `norm.forward(x)` (burn's module), tapped for per-sample gradients while a
/// [`super::per_sample::record`] is open.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; output: `[b, c, h, w]`.
pub fn group_norm(x: Tensor<4>, norm: &GroupNorm) -> Tensor<4> {
    let y = norm.forward(x.clone());
    super::per_sample::tap_group_norm(&x, y, norm, false)
}

/// The plain-burn reference, the same arithmetic as burn's `GroupNorm` module (two-pass mean and
/// biased variance) followed by `silu`.
///
/// # Shapes
/// - `x`: `[b, c, h, w]`; output: `[b, c, h, w]`.
pub fn group_norm_silu_reference(x: Tensor<4>, params: &GroupNormParams) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let g = params.groups;
    let grouped = x.reshape([b, g, (c / g) * h * w]);
    let centred = grouped.clone() - grouped.mean_dim(2);
    let var = centred.clone().square().mean_dim(2);
    let mut y = (centred / var.add_scalar(params.epsilon).sqrt()).reshape([b, c, h, w]);
    if let (Some(gamma), Some(beta)) = (&params.gamma, &params.beta) {
        y = y * gamma.clone().reshape([1, c, 1, 1]) + beta.clone().reshape([1, c, 1, 1]);
    }
    silu(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::GroupNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    /// The reference equals burn's own `GroupNorm` module followed by `silu`.
    #[test]
    fn reference_matches_burns_group_norm_then_silu() {
        let device = Device::flex();
        let norm = GroupNormConfig::new(3, 6).init(&device);
        // A non-trivial affine: γ and β are not their 1/0 defaults.
        let norm = GroupNorm {
            gamma: Some(burn::module::Param::from_tensor(Tensor::random(
                [6],
                Distribution::Uniform(0.5, 1.5),
                &device,
            ))),
            beta: Some(burn::module::Param::from_tensor(Tensor::random(
                [6],
                Distribution::Uniform(-0.5, 0.5),
                &device,
            ))),
            ..norm
        };
        let x = Tensor::<4>::random([2, 6, 5, 3], Distribution::Normal(1.0, 2.0), &device);
        let want = silu(norm.forward(x.clone()));
        let got = group_norm_silu_reference(x, &GroupNormParams::of(&norm));
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
    }
}
