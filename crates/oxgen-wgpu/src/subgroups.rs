//! Subgroup operations (warps, wavefronts, SIMD rows): which devices have them, whether a kernel
//! should use them, and the WGSL functions it appends either way.
//!
//! Two uses, each with a fallback checked against the reference by the same tests:
//! - **Reductions.** A kernel that merges per-invocation state (the attention decode path's
//!   softmax states, GroupNorm+SiLU's sums) reduces within each subgroup first with `subgroupMax`
//!   and `subgroupAdd` (`shaders/subgroup_ops.wgsl`, `workgroup_sum_subgroup.wgsl`), so that only
//!   one entry per subgroup goes through workgroup memory. Without subgroups the same kernel
//!   appends `subgroup_ops_fallback.wgsl` (each invocation a subgroup of its own) or
//!   `workgroup_sum.wgsl` (a tree).
//! - **Broadcasts.** The flash-attention kernels, where the workgroup fits in the adapter's
//!   smallest subgroup, share each step's chunks by `subgroupBroadcast` instead of staging tiles
//!   in workgroup memory (`crate::attention::Variant::broadcast`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use burn::backend::wgpu::CubeTensor;

/// The subgroup reductions.
pub const OPS: &str = include_str!("../../../shaders/subgroup_ops.wgsl");
/// The same functions for adapters without subgroups: each returns its argument.
pub const FALLBACK: &str = include_str!("../../../shaders/subgroup_ops_fallback.wgsl");

/// The smallest subgroup of the adapter named `name` if it has wgpu's `SUBGROUP` feature, else
/// `None`. cubecl's device properties say so only for hardware adapters (it leaves its plane
/// operations off on software ones such as lavapipe, which has them), so this asks wgpu's
/// adapter list, once per name.
fn adapter_subgroups(name: &str) -> Option<u32> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<u32>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    *cache.entry(name.to_string()).or_insert_with(|| {
        crate::device::adapters()
            .iter()
            .find(|a| a.name == name && a.subgroups)
            .map(|a| a.subgroup_sizes.0)
    })
}

/// Whether kernels launched on `t`'s device can use subgroup operations. cubecl requests every
/// feature its adapter has, `SUBGROUP` included, when it makes the device.
pub fn available(t: &CubeTensor) -> bool {
    adapter_subgroups(&t.client.properties().identity.name).is_some()
}

/// The smallest subgroup the device may run (0 where it has no subgroup operations, or does not
/// say). The broadcast forms assume that a workgroup of at most this many invocations is one
/// subgroup, as on lavapipe (tested) and, by their documentation, on NVIDIA and AMD.
pub fn min_size(t: &CubeTensor) -> u32 {
    adapter_subgroups(&t.client.properties().identity.name).unwrap_or(0)
}

/// 0: the device decides; 1: never; 2: where available.
static SETTING: AtomicU8 = AtomicU8::new(0);

thread_local! {
    static HERE: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

fn encode(on: Option<bool>) -> u8 {
    match on {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

/// Use subgroup operations where the device has them (`None` or `Some(true)`, the default) or
/// never (`Some(false)`: the workgroup-memory fallback everywhere). For benchmarks, which compare
/// the two in one run.
pub fn set_enabled(on: Option<bool>) {
    SETTING.store(encode(on), Ordering::Relaxed);
}

/// Runs `f` with subgroups set as [`set_enabled`] sets them, on this thread only (`None`: the
/// process-wide setting).
pub fn with_enabled<R>(on: Option<bool>, f: impl FnOnce() -> R) -> R {
    crate::kernel::with_local(&HERE, encode(on), f)
}

/// Whether a call made now on this thread may use subgroups where the device has them. Captured
/// at the call ([`crate::attention::FlashLaunch::subgroups`]): burn's fusion may launch the
/// kernel later, on the device's own thread.
pub fn allowed() -> bool {
    let setting = match HERE.with(|c| c.get()) {
        0 => SETTING.load(Ordering::Relaxed),
        here => here,
    };
    setting != 1
}

static LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// Launches of a subgroup variant in this process; the tests read it to know that the variant
/// they checked is the one that ran.
pub fn launches() -> usize {
    LAUNCHES.load(Ordering::Relaxed)
}

/// The functions to append to a kernel (`sg_max`, `sg_add`, `sg_add4`), its entry point's
/// builtins, and the statements that name its subgroup, lane and subgroup count (`sg`, `lane`,
/// `nsg`; `lid`, 0 and `wg` without subgroups).
pub(crate) struct Snippets {
    pub functions: &'static str,
    pub builtins: &'static str,
    pub ids: String,
}

pub(crate) fn snippets(on: bool, wg: u32) -> Snippets {
    if on {
        Snippets {
            functions: OPS,
            builtins: "@builtin(subgroup_id) sg: u32,\n    \
                       @builtin(subgroup_invocation_id) lane: u32,\n    \
                       @builtin(num_subgroups) nsg: u32,",
            ids: String::new(),
        }
    } else {
        Snippets {
            functions: FALLBACK,
            builtins: "",
            ids: format!("let sg = lid;\n    let lane = 0u;\n    let nsg = {wg}u;"),
        }
    }
}

/// Counts a launch of a variant with subgroups `on`.
pub(crate) fn note_launch(on: bool) {
    if on {
        LAUNCHES.fetch_add(1, Ordering::Relaxed);
    }
}
