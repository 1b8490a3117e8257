//! Tests of oxgen-wgpu: one binary. The wgpu tests run on lavapipe in CI and fail, never skip,
//! when no adapter is found.

mod attention;
mod denoise;
mod gpt;
mod group_norm;
mod naga_validation;

use std::sync::Mutex;

/// Tests that set the global op path (or count fused calls) must not interleave.
pub static PATH_LOCK: Mutex<()> = Mutex::new(());

/// The wgpu device (lavapipe in CI), with oxgen's kernels registered.
pub fn gpu() -> burn::tensor::Device {
    let d = oxgen_wgpu::select(oxgen_wgpu::DeviceChoice::Wgpu).unwrap_or_else(|e| {
        panic!("no wgpu adapter: {e}. Install mesa-vulkan-drivers to run the kernel tests.")
    });
    d.device
}
