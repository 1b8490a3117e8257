//! Tests of oxgen-wgpu: one binary. The wgpu tests run on lavapipe in CI and fail, never skip,
//! when no adapter is found.

mod attention;
mod attention_decode;
mod denoise;
mod gpt;
mod group_norm;
mod naga_validation;
mod noising;
mod per_sample_norm;

use std::sync::Mutex;

/// Tests that set the global op path (or count fused calls) must not interleave.
pub static PATH_LOCK: Mutex<()> = Mutex::new(());

/// The wgpu device of one test; waits for the device's queue when the test ends.
///
/// cubecl runs each device's work on its own thread, fed by a queue: a test can return while
/// kernels it launched (or buffers it dropped) are still being compiled there. When the last
/// test returned, the process exited under that thread, and lavapipe's LLVM, torn down by the
/// exit, crashed it ("LLVM ERROR: Do not know how to split the result of this operator!", or a
/// segfault) in about one run of seven. Tensors are declared after the device, so they are
/// dropped before it and their work is in the queue the sync waits for.
pub struct Gpu(burn::tensor::Device);

impl std::ops::Deref for Gpu {
    type Target = burn::tensor::Device;
    fn deref(&self) -> &burn::tensor::Device {
        &self.0
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        let _ = self.0.sync();
    }
}

/// The wgpu device (lavapipe in CI), with oxgen's kernels registered.
pub fn gpu() -> Gpu {
    let d = oxgen_wgpu::select(oxgen_wgpu::DeviceChoice::Wgpu).unwrap_or_else(|e| {
        panic!("no wgpu adapter: {e}. Install mesa-vulkan-drivers to run the kernel tests.")
    });
    Gpu(d.device)
}
