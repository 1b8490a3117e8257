//! What every WGSL kernel of this crate shares: a `KernelSource` keyed on its compile-time
//! variant, and the byte layout of its parameter words.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::wgpu::{KernelSource, SourceTemplate};
use burn::cubecl::prelude::{ExecutionMode, KernelId};

/// Whether kernels compile with naga's loop bounding (cubecl's `ExecutionMode::Checked`).
static LOOP_BOUNDING: AtomicBool = AtomicBool::new(false);

/// Compile the kernels launched from now on with naga's `force_loop_bounding` (cubecl's
/// `ExecutionMode::Checked`: a counter in every loop, which also blocks unrolling;
/// gfx-rs/wgpu#7698) or without it (the default, `Unchecked`: every kernel here bounds its own
/// loops and indices). The two are cached apart, so a benchmark can compare them in one run.
pub fn set_loop_bounding(on: bool) {
    LOOP_BOUNDING.store(on, Ordering::Relaxed);
}

/// A compile-time variant of a WGSL template.
pub(crate) trait Template: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// The template with this variant's placeholders registered.
    fn template(&self) -> SourceTemplate;
}

/// A WGSL kernel: its source and cache key come from the variant.
pub(crate) struct Wgsl<V>(pub V);

impl<V: Template> KernelSource for Wgsl<V> {
    fn source(&self) -> SourceTemplate {
        self.0.template()
    }

    fn id(&self) -> KernelId {
        // `info` replaces rather than appends: key the cache on the whole variant.
        let mode = if LOOP_BOUNDING.load(Ordering::Relaxed) {
            ExecutionMode::Checked
        } else {
            ExecutionMode::Unchecked
        };
        KernelId::new::<Self>().info(self.0).mode(mode)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Runs `f` with the thread-local setting `cell` at `value`, then restores this thread's previous
/// value, also when `f` panics. The scoped overrides of the tuning settings (rows per invocation,
/// decode splits) are per thread, so that tests and benchmarks on different threads (and devices)
/// can each run their own. Each call captures them where it is made (burn's fusion may launch
/// the kernel later, on the device's thread).
pub(crate) fn with_local<T: Copy + 'static, R>(
    cell: &'static std::thread::LocalKey<std::cell::Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static std::thread::LocalKey<std::cell::Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(cell, cell.with(|c| c.replace(value)));
    f()
}

/// Parameter words as the little-endian bytes of a storage buffer.
pub(crate) fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
