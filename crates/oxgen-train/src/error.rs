//! The errors of the I/O and setup boundaries: data, checkpoints, configs and devices.

use std::path::PathBuf;

/// Every error oxgen-train returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset name that is neither built in nor a path.
    #[error(
        "unknown dataset `{name}`; built in: {known}; or give a path to an IDX file, a PNG folder or a CSV file"
    )]
    UnknownDataset {
        /// What was asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// A file or folder that does not exist.
    #[error("{what} not found: {}", path.display())]
    NotFound {
        /// What the path was meant to be.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// An I/O error on a path.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Data whose shape is not what was expected.
    #[error("wrong shape in {context}: expected {expected}, got {got}")]
    Shape {
        /// Where.
        context: String,
        /// The shape expected.
        expected: String,
        /// The shape found.
        got: String,
    },
    /// A file whose contents cannot be parsed.
    #[error("cannot parse {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A collection file of languages that cannot be used, and where.
    #[error("{}{}: {reason}", path.display(), if *line > 0 { format!(", line {line}") } else { String::new() })]
    Collection {
        /// The file.
        path: PathBuf,
        /// The line (1-based; 0 when no line is to blame).
        line: usize,
        /// Why.
        reason: String,
    },
    /// Data containing NaN or infinity.
    #[error("{context} contains a non-finite value (NaN or infinity) at index {index}")]
    NonFinite {
        /// Where.
        context: String,
        /// The first bad index.
        index: usize,
    },
    /// A checkpoint that is corrupt, truncated or written by another config.
    #[error("refusing checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A run written by a newer oxgen, in a run format this one cannot read.
    #[error(
        "{} was written by oxgen {written_by} in run format {found}; this oxgen ({}) reads run formats up to {supported}; upgrade oxgen to load it",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    NewerRun {
        /// The checkpoint folder.
        path: PathBuf,
        /// Its run format.
        found: u32,
        /// The oxgen version that wrote it, as its manifest says.
        written_by: String,
        /// The newest run format this oxgen reads.
        supported: u32,
    },
    /// NAF sampling asked of a run that was not trained in shards.
    #[error(
        "{} is not a sharded run (it has no shards.json): NAF sampling combines the shard models of a run trained with `oxgen train ar --shards K`",
        path.display()
    )]
    NotSharded {
        /// The run folder.
        path: PathBuf,
    },
    /// A config that is invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// A reward that cannot be built, or that scored a sample NaN or infinite.
    #[error("reward {reward}: {reason}")]
    Reward {
        /// The reward's spec.
        reward: String,
        /// Why.
        reason: String,
    },
    /// Training diverged: too many non-finite losses in a row.
    #[error(
        "training diverged: {count} non-finite losses in a row (last at step {step}); lower the learning rate or check the data"
    )]
    Diverged {
        /// Consecutive bad steps.
        count: usize,
        /// Step of the last one.
        step: usize,
    },
    /// A compressed file that is corrupt, truncated, or for another model, codec or device.
    #[error("cannot decompress {}: {reason}", path.display())]
    Compressed {
        /// The compressed file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A privacy parameter out of range, or a budget that no noise reaches.
    #[error("privacy: {parameter}: {reason}")]
    Privacy {
        /// The parameter at fault (q, sigma, delta, epsilon, …).
        parameter: &'static str,
        /// Why.
        reason: String,
    },
    /// No device of the kind asked for.
    #[error("device error: {0}")]
    Device(String),
    /// A data-parallel replica failed mid-run: nothing of that step was applied, and the last
    /// checkpoint is intact.
    #[error(
        "{device} was lost at step {step}: {reason}; the last checkpoint is intact, and the run resumes (--resume) on any number of devices"
    )]
    DeviceLost {
        /// The device's name (`wgpu:1`).
        device: String,
        /// The step it failed in (0-based).
        step: usize,
        /// What it reported.
        reason: String,
    },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with its path; a missing file becomes [`Error::NotFound`].
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound { what, path }
        } else {
            Error::Io { path, source }
        }
    }
}
