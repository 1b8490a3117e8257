//! The per-sample squared norm of an affine tap's weight gradient, ‖aᵢᵀ gᵢ‖²_F, as an op: a
//! kernel crate may register a fused version (`shaders/per_sample_norm.wgsl` on wgpu) that never
//! writes the `[B, K, N]` per-sample gradients to memory; the reference here materialises them
//! (or, for short sequences, takes the Gram matrices).

use std::sync::OnceLock;

use burn::tensor::{Device, Tensor};

/// A fused per-sample norm, provided by a kernel crate.
pub trait FusedSqNorms: Send + Sync {
    /// A short name for logs and tests.
    fn name(&self) -> &'static str;
    /// Whether tensors on `device` can take this path.
    fn accepts(&self, device: &Device) -> bool;
    /// ‖aᵢᵀ gᵢ‖²_F for every sample i. Only called when [`FusedSqNorms::accepts`] is true.
    ///
    /// # Shapes
    /// - `a`: `[B, T, K]`, `g`: `[B, T, N]`; returns `[B]`.
    fn affine_sq_norms(&self, a: Tensor<3>, g: Tensor<3>) -> Tensor<1>;
}

static FUSED: OnceLock<Box<dyn FusedSqNorms>> = OnceLock::new();

/// Registers the fused implementation. The first registration wins; later ones return false.
pub fn register_fused(kernel: Box<dyn FusedSqNorms>) -> bool {
    FUSED.set(kernel).is_ok()
}

/// The op's name in [`crate::ops::stats`].
pub const OP: &str = "per_sample_norm";

/// Name of the implementation the latest call on this thread ran: `"reference"` or the kernel's
/// name.
pub fn last_path() -> Option<&'static str> {
    crate::ops::stats::last(OP)
}

/// ‖aᵢᵀ gᵢ‖²_F for every sample i: the fused kernel where one accepts the device, else
/// [`affine_sq_norms_reference`].
///
/// # Shapes
/// - `a`: `[B, T, K]`, `g`: `[B, T, N]`; returns `[B]`.
pub fn affine_sq_norms(a: Tensor<3>, g: Tensor<3>) -> Tensor<1> {
    let device = a.device();
    crate::ops::install_kernels();
    let fused = FUSED.get().filter(|k| k.accepts(&device));
    let use_fused = crate::ops::take_fused(OP, fused.is_some(), &device);
    match fused.filter(|_| use_fused) {
        Some(kernel) => {
            crate::ops::stats::fused(OP, kernel.name());
            kernel.affine_sq_norms(a, g)
        }
        None => {
            crate::ops::stats::reference(
                OP,
                crate::ops::reference_reason(fused.is_some(), &device),
            );
            affine_sq_norms_reference(a, g)
        }
    }
}

/// The plain-burn reference: the Gram matrices when T² ≤ K·N (Σ_{t,s} (aaᵀ)_{ts} (ggᵀ)_{ts}),
/// else the materialised per-sample gradient; ‖a‖²‖g‖² when T = 1.
///
/// # Shapes
/// - `a`: `[B, T, K]`, `g`: `[B, T, N]`; returns `[B]`.
pub fn affine_sq_norms_reference(a: Tensor<3>, g: Tensor<3>) -> Tensor<1> {
    let [b, t, k] = a.dims();
    let n = g.dims()[2];
    if t == 1 {
        a.square().sum_dim(2).reshape([b]) * g.square().sum_dim(2).reshape([b])
    } else if t * t <= k * n {
        let aa = a.clone().matmul(a.swap_dims(1, 2));
        let gg = g.clone().matmul(g.swap_dims(1, 2));
        (aa * gg).sum_dim(2).sum_dim(1).reshape([b])
    } else {
        a.swap_dims(1, 2)
            .matmul(g)
            .square()
            .sum_dim(2)
            .sum_dim(1)
            .reshape([b])
    }
}
