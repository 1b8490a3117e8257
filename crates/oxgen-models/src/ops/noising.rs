//! The forward noising of diffusion training, x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε, as an op: [`noising`].
//!
//! ε is element i of the counter-based Philox stream `(seed, stream)` of [`crate::rng`], so a
//! fused kernel draws it in registers (one pass: read x₀, write x_t and ε) while the reference
//! draws the same numbers on the host. Both give the same ε to within the last bits of the
//! normal transform. x₀ is data, so nothing here needs a gradient: on an autodiff device the op
//! runs on the inner device and returns constants.

use std::sync::OnceLock;

use burn::tensor::{Device, Tensor, TensorData};

/// The op's name in [`super::stats`].
pub const OP: &str = "noising";

/// One batch's noising: per-row coefficients and the noise stream.
#[derive(Clone, Debug, PartialEq)]
pub struct NoisingPlan {
    /// √ᾱ_t of each row, `[b]`.
    pub signal: Vec<f32>,
    /// √(1 − ᾱ_t) of each row, `[b]`.
    pub noise: Vec<f32>,
    /// Philox key.
    pub seed: u64,
    /// Philox stream (the trainer uses the step).
    pub stream: u32,
}

/// A fused noising, provided by a kernel crate.
pub trait FusedNoising: Send + Sync {
    /// A short name for logs and tests.
    fn name(&self) -> &'static str;
    /// Whether tensors on `device` (never an autodiff one: the op passes the inner device) can
    /// take this path.
    fn accepts(&self, device: &Device) -> bool;
    /// (x_t, ε). Only called when [`FusedNoising::accepts`] is true.
    fn noising(&self, x0: Tensor<2>, plan: &NoisingPlan) -> (Tensor<2>, Tensor<2>);
}

static FUSED: OnceLock<Box<dyn FusedNoising>> = OnceLock::new();

/// Registers the fused implementation. The first registration wins; later ones return false.
pub fn register_fused(kernel: Box<dyn FusedNoising>) -> bool {
    FUSED.set(kernel).is_ok()
}

/// Whether a registered kernel accepts tensors on `device` (or, for an autodiff device, on its
/// inner device).
pub fn accepts(device: &Device) -> bool {
    super::install_kernels();
    let inner = device.clone().inner();
    FUSED.get().is_some_and(|k| k.accepts(&inner))
}

/// Name of the implementation the latest call on this thread ran.
pub fn last_path() -> Option<&'static str> {
    super::stats::last(OP)
}

/// (x_t, ε) with x_t = signal[r]·x₀ + noise[r]·ε row by row, ε the Philox stream of `plan`.
///
/// # Shapes
/// - `x0`: `[b, n]`; `plan.signal`, `plan.noise`: `[b]`; returns `[b, n]` twice.
///
/// # Panics
/// When the coefficient lists are not one per row (a caller's bug, not user input).
pub fn noising(x0: Tensor<2>, plan: &NoisingPlan) -> (Tensor<2>, Tensor<2>) {
    let [b, _] = x0.dims();
    assert!(
        plan.signal.len() == b && plan.noise.len() == b,
        "noising: {} and {} coefficients for {b} rows",
        plan.signal.len(),
        plan.noise.len()
    );
    let device = x0.device();
    let autodiff = device.is_autodiff();
    let inner = device.clone().inner();
    super::install_kernels();
    let fused = FUSED.get().filter(|k| k.accepts(&inner));
    let use_fused = super::take_fused(OP, fused.is_some(), &device);
    match fused.filter(|_| use_fused) {
        Some(kernel) => {
            super::stats::fused(OP, kernel.name());
            let (xt, eps) = kernel.noising(x0.inner(), plan);
            if autodiff {
                (xt.autodiff(), eps.autodiff())
            } else {
                (xt, eps)
            }
        }
        None => {
            super::stats::reference(OP, super::reference_reason(fused.is_some(), &inner));
            noising_reference(x0, plan)
        }
    }
}

/// The plain-burn reference: ε drawn on the host ([`crate::rng::normals`]) and copied in, then
/// two broadcast multiplies and an add.
///
/// # Shapes
/// - as [`noising`].
pub fn noising_reference(x0: Tensor<2>, plan: &NoisingPlan) -> (Tensor<2>, Tensor<2>) {
    let [b, n] = x0.dims();
    let device = x0.device();
    let eps = Tensor::<2>::from_data(
        TensorData::new(crate::rng::normals(plan.seed, plan.stream, b * n), [b, n]),
        &device,
    );
    let col = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [b, 1]), &device);
    let xt = x0 * col(&plan.signal) + eps.clone() * col(&plan.noise);
    (xt, eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference by hand: row coefficients apply to their own row, and ε is the Philox
    /// stream in row-major order.
    #[test]
    fn reference_by_hand() {
        let device = Device::flex();
        let x0 = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]),
            &device,
        );
        let plan = NoisingPlan {
            signal: vec![0.5, 2.0],
            noise: vec![0.25, -1.0],
            seed: 11,
            stream: 3,
        };
        let (xt, eps) = noising_reference(x0, &plan);
        let z = crate::rng::normals(11, 3, 6);
        let xt = xt.into_data().try_to_vec::<f32>().unwrap();
        let eps = eps.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(eps, z);
        for i in 0..6 {
            let (a, s) = if i < 3 { (0.5, 0.25) } else { (2.0, -1.0) };
            assert!((xt[i] - (a * (i + 1) as f32 + s * z[i])).abs() < 1e-6);
        }
    }
}
