//! Checkpoints: a folder per saved step with the weights (burnpack, which keeps parameter ids so
//! the optimizer state matches on resume), the optimizer state, and `manifest.json` (config,
//! step, RNG and data position, and the size and CRC-32 of every file).
//!
//! Writing is atomic: files go into a temporary folder, are fsynced, and the folder is renamed
//! into place; `latest` is then replaced by rename. An interrupted save never touches the last
//! good checkpoint. Loading checks every file's size and checksum before anything is parsed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use super::migrate::FORMAT;
/// Checkpoints kept on disk (older ones are deleted after a successful save).
pub const KEEP: usize = 3;

/// Size and checksum of one file of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the contents.
    pub crc32: u32,
}

/// `manifest.json` of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Model family ("diffusion", …).
    pub family: String,
    /// Optimizer steps taken.
    pub step: usize,
    /// Shape of one data point (so a model can be rebuilt without the data).
    pub shape: oxgen_models::DataShape,
    /// The run's full config.
    pub config: serde_json::Value,
    /// RNG state: every random draw of step `s` comes from a generator seeded by `(seed, s)`,
    /// so `(seed, step)` is the whole state.
    pub rng: RngState,
    /// Rows of training data consumed so far (epoch = position / train rows).
    pub data_position: u64,
    /// The files, by name.
    pub files: BTreeMap<String, FileEntry>,
    /// oxgen version that wrote it.
    pub oxgen_version: String,
}

impl Manifest {
    /// The manifest of a checkpoint of `family` after `step` steps: the one writer every
    /// trainer uses. `files` is filled in by [`save`].
    pub fn new(
        family: &str,
        step: usize,
        shape: oxgen_models::DataShape,
        config: serde_json::Value,
        seed: u64,
        data_position: u64,
    ) -> Self {
        Self {
            format: FORMAT,
            family: family.into(),
            step,
            shape,
            config,
            rng: RngState {
                seed,
                next_step: step,
            },
            data_position,
            files: BTreeMap::new(),
            oxgen_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The random state of a run; see [`Manifest::rng`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct RngState {
    /// Run seed.
    pub seed: u64,
    /// Next step to draw for.
    pub next_step: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io("checkpoint", path, e)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) {
    // Directory fsync makes the rename durable; not every platform supports it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes a checkpoint of `files` for `manifest.step` under `root/checkpoints/`, atomically, and
/// points `root/checkpoints/latest` at it. Returns the checkpoint folder.
pub fn save(root: &Path, mut manifest: Manifest, files: &[(&str, Vec<u8>)]) -> Result<PathBuf> {
    let dir = root.join("checkpoints");
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let name = format!("step-{:08}", manifest.step);
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    manifest.files.clear();
    for (file, bytes) in files {
        write_synced(&tmp.join(file), bytes)?;
        manifest.files.insert(
            file.to_string(),
            FileEntry {
                bytes: bytes.len() as u64,
                crc32: crc32fast::hash(bytes),
            },
        );
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    write_synced(&tmp.join("manifest.json"), &json)?;
    sync_dir(&tmp);
    let target = dir.join(&name);
    if target.exists() {
        let old = dir.join(format!(".old-{name}-{}", std::process::id()));
        fs::rename(&target, &old).map_err(io(&target))?;
        fs::rename(&tmp, &target).map_err(io(&target))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(&tmp, &target).map_err(io(&target))?;
    }
    let latest_tmp = dir.join(format!(".latest-{}", std::process::id()));
    write_synced(&latest_tmp, name.as_bytes())?;
    fs::rename(&latest_tmp, dir.join("latest")).map_err(io(&dir))?;
    sync_dir(&dir);
    prune(&dir);
    Ok(target)
}

fn prune(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut steps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    steps.sort();
    let n = steps.len();
    for old in steps.into_iter().take(n.saturating_sub(KEEP)) {
        let _ = fs::remove_dir_all(old);
    }
}

/// The checkpoint folder that `path` means: a checkpoint folder itself, or a run folder (its
/// `checkpoints/latest`).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join("manifest.json").exists() {
        return Ok(path.to_path_buf());
    }
    let latest = path.join("checkpoints").join("latest");
    if !path.exists() {
        return Err(Error::NotFound {
            what: "checkpoint or run folder",
            path: path.into(),
        });
    }
    let name = fs::read_to_string(&latest).map_err(|_| Error::Checkpoint {
        path: path.into(),
        reason: "no manifest.json here and no checkpoints/latest; is this a run folder?".into(),
    })?;
    Ok(path.join("checkpoints").join(name.trim()))
}

/// A loaded checkpoint: its manifest and the verified bytes of its files.
#[derive(Debug)]
pub struct Loaded {
    /// The folder.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
    /// File contents, by name; every one matched its size and checksum.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Reads and verifies the checkpoint at `path` (see [`resolve`]).
pub fn load(path: &Path) -> Result<Loaded> {
    let dir = resolve(path)?;
    let refuse = |reason: String| Error::Checkpoint {
        path: dir.clone(),
        reason,
    };
    let raw = fs::read(dir.join("manifest.json"))
        .map_err(|e| refuse(format!("cannot read manifest.json: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| refuse(format!("manifest.json is corrupt: {e}")))?;
    let value = super::migrate::manifest(value, &dir)?;
    let manifest: Manifest = serde_json::from_value(value)
        .map_err(|e| refuse(format!("manifest.json is corrupt: {e}")))?;
    let mut files = BTreeMap::new();
    for (name, entry) in &manifest.files {
        let bytes =
            fs::read(dir.join(name)).map_err(|e| refuse(format!("cannot read {name}: {e}")))?;
        if bytes.len() as u64 != entry.bytes {
            return Err(refuse(format!(
                "{name} is truncated or padded: {} bytes, manifest says {}",
                bytes.len(),
                entry.bytes
            )));
        }
        let crc = crc32fast::hash(&bytes);
        if crc != entry.crc32 {
            return Err(refuse(format!(
                "{name} is corrupt: CRC-32 {crc:08x}, manifest says {:08x}",
                entry.crc32
            )));
        }
        files.insert(name.clone(), bytes);
    }
    Ok(Loaded {
        dir,
        manifest,
        files,
    })
}

impl Loaded {
    /// The bytes of file `name`, or a refusal naming it.
    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::Checkpoint {
                path: self.dir.clone(),
                reason: format!("{name} is missing from the manifest"),
            })
    }
}

/// A module's weights as burnpack bytes.
pub fn to_bytes<M: Module>(m: &M) -> Result<Vec<u8>> {
    m.clone()
        .into_record()
        .into_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| Error::Config(format!("serializing weights: {e}")))
}

/// Loads burnpack weights into `model`, refusing any mismatch.
pub fn load_weights<M: Module>(model: M, bytes: &[u8], dir: &Path) -> Result<M> {
    let refuse = |e: String| Error::Checkpoint {
        path: dir.into(),
        reason: e,
    };
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| refuse(format!("weights unreadable: {e}")))?;
    model
        .try_load_record(rec)
        .map_err(|e| refuse(format!("weights do not fit this model: {e}")))
}

/// An optimizer's state as bytes.
pub fn optim_bytes(optim: &ModuleOptimizer) -> Result<Vec<u8>> {
    Ok(optim
        .into_bytes()
        .map_err(|e| Error::Config(format!("serializing optimizer: {e}")))?
        .to_vec())
}

/// Loads the optimizer state saved as `name` in `ck` into `optim` (which keeps its config).
pub fn restore_optim(optim: &mut ModuleOptimizer, ck: &Loaded, name: &str) -> Result<()> {
    let bytes = ck.file(name)?;
    // `from_bytes` consumes the optimizer; a blank one holds its place for that call only.
    let configured = std::mem::replace(optim, burn::optim::AdamWConfig::new().init());
    *optim = configured
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::Checkpoint {
            path: ck.dir.clone(),
            reason: format!("optimizer state {name} unreadable: {e}"),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(step: usize) -> Manifest {
        Manifest {
            format: FORMAT,
            family: "test".into(),
            step,
            shape: oxgen_models::DataShape::Vector { dim: 2 },
            config: serde_json::json!({"a": 1}),
            rng: RngState {
                seed: 1,
                next_step: step,
            },
            data_position: 0,
            files: BTreeMap::new(),
            oxgen_version: "0".into(),
        }
    }

    #[test]
    fn save_load_roundtrip_and_prune() {
        let root = tempfile::tempdir().unwrap();
        for step in 1..=5 {
            save(
                root.path(),
                manifest(step),
                &[("w.bin", vec![step as u8; 100])],
            )
            .unwrap();
        }
        let l = load(root.path()).unwrap();
        assert_eq!(l.manifest.step, 5);
        assert_eq!(l.file("w.bin").unwrap(), &[5u8; 100][..]);
        let kept = fs::read_dir(root.path().join("checkpoints"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .starts_with("step-")
            });
        assert_eq!(kept.count(), KEEP);
    }

    #[test]
    fn corrupt_truncated_and_garbage_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = save(root.path(), manifest(7), &[("w.bin", vec![1u8; 64])]).unwrap();
        let w = dir.join("w.bin");
        let mut bytes = fs::read(&w).unwrap();
        bytes[10] ^= 0xff;
        fs::write(&w, &bytes).unwrap();
        let e = load(root.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("w.bin"), "{e}");
        fs::write(&w, &bytes[..30]).unwrap();
        let e = load(root.path()).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        fs::write(dir.join("manifest.json"), b"{ not json").unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains("manifest.json is corrupt"), "{e}");
        assert!(matches!(
            load(Path::new("/no/such/run")),
            Err(Error::NotFound { .. })
        ));
    }
}
