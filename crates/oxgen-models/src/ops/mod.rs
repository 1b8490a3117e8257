//! The op API that models call, with plain-burn references. Kernel crates plug fused versions in
//! behind it (see `docs/architecture.md`).
//!
//! Every op with a fused version follows the same contract: a kernel crate registers it once,
//! tensors on a device it accepts take it, every other device takes the reference, and
//! [`set_path`] forces one path for all ops (tests, benchmarks, `--op-path`).

use std::sync::RwLock;

pub mod attention;
pub mod denoise;
pub mod group_norm;

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

/// Forces a path for every later call of every fused op.
pub fn set_path(path: OpPath) {
    *PATH.write().expect("op path lock") = path;
}

/// The path currently forced, if any.
pub fn path() -> OpPath {
    *PATH.read().expect("op path lock")
}

/// Whether an op takes its fused path, given whether a fused kernel accepts the device.
/// Panics when the fused path is forced and none does.
pub(crate) fn take_fused(op: &str, accepted: bool, device: &burn::tensor::Device) -> bool {
    match path() {
        OpPath::Auto => accepted,
        OpPath::Reference => false,
        OpPath::Fused => {
            assert!(
                accepted,
                "{op}: the fused path was forced, but no fused kernel accepts {device:?}"
            );
            true
        }
    }
}
