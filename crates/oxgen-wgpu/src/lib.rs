//! wgpu devices and hand-written WGSL kernels for oxgen.
//!
//! This crate is the only one that names wgpu. It lists adapters ([`device::adapters`]), picks
//! one ([`device::select`]), and registers its fused kernels behind the op API of `oxgen-models`
//! (see `docs/architecture.md`): the denoising update and the GroupNorm+SiLU forward.

pub mod attention;
pub mod bench;
pub mod bench_attention;
pub mod copy;
pub mod denoise;
pub mod device;
pub mod group_norm;
mod kernel;

pub use device::{AdapterReport, DeviceChoice, SelectedDevice, adapters, is_wgpu, select};

/// Installs every fused kernel of this crate behind the op API of `oxgen-models`. Idempotent;
/// [`select`] calls it, so programs that pick their device through oxgen get the fused paths.
pub fn register_kernels() {
    attention::register();
    denoise::register();
    group_norm::register();
}
