//! wgpu devices and hand-written WGSL kernels for oxgen.
//!
//! This crate is the only one that names wgpu. It lists adapters ([`device::adapters`]), picks
//! one ([`device::select`]), and registers its fused kernels behind the op API of `oxgen-models`
//! (see `docs/architecture.md`): attention, 2D convolution, the denoising update, the forward noising of
//! training, GroupNorm+SiLU and per-sample gradient norms.

pub mod attention;
mod attention_autodiff;
pub mod attention_decode;
mod attention_dkdv;
mod attention_dq;
mod attention_fwd;
pub mod attention_tiling;
pub mod autotune;
pub mod conv;
mod conv_codegen;
pub mod copy;
pub mod denoise;
pub mod device;
pub mod devices;
pub mod group_norm;
mod kernel;
pub mod noising;
pub mod per_sample_norm;
pub mod subgroups;

pub use device::{AdapterReport, DeviceChoice, SelectedDevice, adapters, is_wgpu, select};
pub use kernel::set_loop_bounding;

// Found by `oxgen_models::ops::install_kernels` at the first fused-op call, so the kernels take
// effect on any wgpu device, including one a program made itself.
inventory::submit!(oxgen_models::ops::KernelInstaller(register_kernels));

/// Installs every fused kernel of this crate behind the op API of `oxgen-models`. Idempotent;
/// the op API runs it at its first call, and [`select`] calls it too.
pub fn register_kernels() {
    attention::register();
    conv::register();
    denoise::register();
    group_norm::register();
    noising::register();
    per_sample_norm::register();
}
