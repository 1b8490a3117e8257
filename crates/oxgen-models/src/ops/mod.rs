//! The op API that models call, with plain-burn references. Kernel crates plug fused versions in
//! behind it (see `docs/architecture.md`).
//!
//! Every op with a fused version follows the same contract: a kernel crate registers it once,
//! tensors on a device it accepts take it, every other device takes the reference, and
//! [`set_path`] forces one path for all ops (tests, benchmarks, `--op-path`).
//!
//! A kernel crate announces itself with `inventory::submit!(KernelInstaller(...))`. The first
//! call of any fused op runs every installer linked into the program, so the kernels take
//! effect on any device they accept, including one the program created itself: nothing has to
//! be called first.

use std::sync::RwLock;

pub mod attention;
pub mod conv;
pub mod cpu;
pub mod denoise;
pub mod embedding;
pub mod gelu;
pub mod group_norm;
pub mod layer_norm;
pub mod linear;
pub mod noising;
pub mod per_sample;
pub mod stats;

/// Which implementation the fused ops use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpPath {
    /// The fused kernel where one accepts the device, else the reference.
    #[default]
    Auto,
    /// Always the plain-burn reference.
    Reference,
    /// Always the fused kernel; panics where none accepts the device.
    Fused,
}

static PATH: RwLock<OpPath> = RwLock::new(OpPath::Auto);

/// A kernel crate's installer: registers its fused ops with each op's `register_fused`.
#[derive(Debug)]
pub struct KernelInstaller(pub fn());

inventory::collect!(KernelInstaller);

/// Runs every linked [`KernelInstaller`], once per process.
pub fn install_kernels() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for k in inventory::iter::<KernelInstaller> {
            (k.0)();
        }
    });
}

/// A forced fused path that some op cannot honour on a device.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "--op-path fused: no kernel accepts {device} for {}; use --op-path auto (the reference runs where no kernel does) or a wgpu device",
    ops.join(", ")
)]
pub struct PathRefused {
    /// The ops whose kernels refuse the device.
    pub ops: Vec<&'static str>,
    /// The device, as its debug name.
    pub device: String,
}

/// Whether `path` can be honoured on `device`: with [`OpPath::Fused`], every fused op must have
/// a kernel that accepts it (an autodiff device, for training, needs kernels with a backward).
/// Check this (with [`path`]) before running anything, so that a forced path is a clear error
/// rather than a silent reference.
pub fn check_path(path: OpPath, device: &burn::tensor::Device) -> Result<(), PathRefused> {
    install_kernels();
    if path != OpPath::Fused {
        return Ok(());
    }
    let mut ops: Vec<&'static str> = [
        ("attention", attention::accepts(device)),
        ("conv2d", conv::accepts(device)),
        ("group_norm_silu", group_norm::accepts(device)),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(op, _)| op)
    .collect();
    // Sampling ops run on the inner (non-autodiff) device.
    let inner = device.clone().inner();
    if !denoise::accepts(&inner) {
        ops.push("denoise");
    }
    if !noising::accepts(device) {
        ops.push("noising");
    }
    if ops.is_empty() {
        Ok(())
    } else {
        Err(PathRefused {
            ops,
            device: format!("{device:?}"),
        })
    }
}

/// Forces a path for every later call of every fused op.
pub fn set_path(path: OpPath) {
    *PATH.write().expect("op path lock") = path;
}

thread_local! {
    static LOCAL: std::cell::Cell<Option<OpPath>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with `path` forced on this thread only (over [`set_path`]'s), then restores the
/// thread's previous setting, also when `f` panics. Ops decide their path on the calling
/// thread, so a whole training run or sampler inside `f` takes it, and other threads do not.
pub fn with_path<R>(path: OpPath, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<OpPath>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LOCAL.with(|l| l.replace(Some(path))));
    f()
}

/// The path in force on this thread: [`with_path`]'s, else [`set_path`]'s.
pub fn path() -> OpPath {
    LOCAL
        .with(|l| l.get())
        .unwrap_or_else(|| *PATH.read().expect("op path lock"))
}

/// Whether an op takes its fused path, given whether a fused kernel accepts the device. A
/// forced fused path that no kernel accepts runs the reference (and the op records why, see
/// [`reference_reason`]); [`check_path`] reports that as an error before a run starts.
pub(crate) fn take_fused(_op: &str, accepted: bool, _device: &burn::tensor::Device) -> bool {
    match path() {
        OpPath::Auto | OpPath::Fused => accepted,
        OpPath::Reference => false,
    }
}

/// Why an op took its reference, given whether a fused kernel accepts the device (for
/// [`stats::reference`]).
pub(crate) fn reference_reason(accepted: bool, device: &burn::tensor::Device) -> &'static str {
    if path() == OpPath::Reference {
        "--op-path reference"
    } else if !accepted && device.is_autodiff() {
        "no kernel for this device with autodiff"
    } else if !accepted {
        "no kernel for this device"
    } else {
        "the kernel declined the input"
    }
}
