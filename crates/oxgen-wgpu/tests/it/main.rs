//! Tests of oxgen-wgpu: one binary. The wgpu tests run on lavapipe in CI and fail, never skip,
//! when no adapter is found.

mod attention;
mod attention_decode;
mod conv;
mod denoise;
mod gpt;
mod group_norm;
mod naga_validation;
mod noising;
mod per_sample_norm;

use std::sync::{Condvar, Mutex};

/// Serialises the tests that switch Philox's 64-bit product (a process-wide setting, and
/// `mul64_launches` a process-wide count).
pub static U64_LOCK: Mutex<()> = Mutex::new(());

/// Held by the tests that launch f16 attention kernels: `half_storage_matches_the_reference`
/// counts the f16 launches of its own cases exactly, and the count is process-wide.
pub static F16_LOCK: Mutex<()> = Mutex::new(());

/// Which of the two test devices a running test holds.
static HELD: Mutex<[bool; 2]> = Mutex::new([false; 2]);
static FREED: Condvar = Condvar::new();

/// The wgpu device of one test, held by it alone while it runs; waits for the device's queue
/// when the test ends.
///
/// There are two: the adapter [`oxgen_wgpu::select`] picks, and
/// [`oxgen_wgpu::device::second_client`], a second client on it (lavapipe in CI) with its own
/// queue thread.
/// cubecl compiles a device's kernels on that thread, and a cold lavapipe compile of an attention
/// kernel takes seconds to tens of seconds (LLVM's coroutine lowering of its barriers), so with
/// one device the suite compiled on one core; with two, two tests compile at once. Every setting
/// the tests vary is per thread (`with_path`, `with_rows_per_invocation`, `with_target_groups`,
/// `stats::scope`), so tests on the two devices do not see each other's.
///
/// cubecl runs each device's work on its own thread, fed by a queue: a test can return while
/// kernels it launched (or buffers it dropped) are still being compiled there. When the last
/// test returned, the process exited under that thread, and lavapipe's LLVM, torn down by the
/// exit, crashed it ("LLVM ERROR: Do not know how to split the result of this operator!", or a
/// segfault) in about one run of seven. Tensors are declared after the device, so they are
/// dropped before it and their work is in the queue the sync waits for.
pub struct Gpu {
    device: burn::tensor::Device,
    slot: usize,
}

impl std::ops::Deref for Gpu {
    type Target = burn::tensor::Device;
    fn deref(&self) -> &burn::tensor::Device {
        &self.device
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        let _ = self.device.sync();
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held[self.slot] = false;
        FREED.notify_one();
    }
}

/// A wgpu device (lavapipe in CI) that no other running test holds, with oxgen's kernels
/// registered. burn's autotune takes its first close candidate on it
/// (`oxgen_wgpu::autotune::time_every_kernel`).
pub fn gpu() -> Gpu {
    oxgen_wgpu::autotune::time_every_kernel();
    let first = oxgen_wgpu::select(oxgen_wgpu::DeviceChoice::Wgpu).unwrap_or_else(|e| {
        panic!("no wgpu adapter: {e}. Install mesa-vulkan-drivers to run the kernel tests.")
    });
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    let slot = loop {
        match held.iter().position(|h| !h) {
            Some(slot) => break slot,
            None => held = FREED.wait(held).unwrap_or_else(|e| e.into_inner()),
        }
    };
    held[slot] = true;
    drop(held);
    let device = if slot == 0 {
        first.device
    } else {
        oxgen_wgpu::device::second_client(oxgen_wgpu::DeviceChoice::Wgpu)
            .unwrap_or_else(|e| panic!("no second wgpu client: {e}"))
    };
    Gpu { device, slot }
}
