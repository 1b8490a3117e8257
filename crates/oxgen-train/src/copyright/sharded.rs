//! Sharded training of a text model: K GPTs, each on the documents that a keyed hash sends to
//! its shard, all with one tokenizer and one validation text, so that NAF sampling can combine
//! them token by token and their validation NLLs compare.
//!
//! The run folder holds `shards.json` (the [`ShardManifest`]: the key, the document unit, and
//! every document's byte range and shard) and one ordinary run per shard, `shard-0` … `shard-{K−1}`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use oxgen_models::ar::Tokenizer;
use serde::{Deserialize, Serialize};

use super::shard::{DocumentUnit, ShardKey, ShardPlan};
use crate::ar::{ArReport, ArRun, ArTrainConfig, TextData, load_ar, train_ar_on};
use crate::trainer::TrainOptions;
use crate::{Error, Result};

/// The file that marks a sharded run.
pub const SHARDS_FILE: &str = "shards.json";

/// How to shard.
#[derive(Clone, Copy, Debug)]
pub struct ShardSpec {
    /// Number of shards (at least 2).
    pub shards: usize,
    /// What a document is.
    pub unit: DocumentUnit,
    /// The hash key.
    pub key: ShardKey,
}

impl ShardSpec {
    /// Refuses fewer than two shards.
    pub fn validate(&self) -> Result<()> {
        if self.shards < 2 {
            return Err(Error::Config(format!(
                "--shards must be at least 2, got {}",
                self.shards
            )));
        }
        Ok(())
    }
}

/// What `shards.json` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// Format version.
    pub version: u32,
    /// The family of the shard runs: `ar` or `diffusion`.
    #[serde(default = "ar_family")]
    pub family: String,
    /// The data file.
    pub data: String,
    /// Its size in bytes and SipHash-1-3 (keys 0) of its contents, to refuse a changed file on
    /// resume.
    pub data_bytes: usize,
    /// See `data_bytes`.
    pub data_hash: u64,
    /// The key as 32 hex digits.
    pub key: String,
    /// Bytes of the data that were sharded (the rest is the validation text every shard shares).
    pub train_bytes: usize,
    /// Where each document went.
    pub plan: ShardPlan,
    /// Documents per shard.
    pub counts: Vec<usize>,
    /// The run's config, where the shards' differ from it (diffusion shards have no held-out
    /// share and their duplicates already planted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

fn ar_family() -> String {
    "ar".into()
}

impl ShardManifest {
    /// The folder of shard `i`'s run inside `dir`.
    pub fn shard_dir(dir: &Path, i: usize) -> PathBuf {
        dir.join(format!("shard-{i}"))
    }
}

/// Whether `dir` is a sharded run.
pub fn is_sharded(dir: &Path) -> bool {
    dir.join(SHARDS_FILE).is_file()
}

/// A key from 32 hex digits.
pub fn parse_key(hex: &str) -> Result<ShardKey> {
    let bad = || {
        Error::Config(format!(
            "a shard key is 32 hex digits, got {} characters",
            hex.len()
        ))
    };
    if hex.len() != 32 {
        return Err(bad());
    }
    let hi = u64::from_str_radix(&hex[..16], 16).map_err(|_| bad())?;
    let lo = u64::from_str_radix(&hex[16..], 16).map_err(|_| bad())?;
    Ok(ShardKey::from_words(hi, lo))
}

/// The key's 32 hex digits.
pub fn key_hex(key: &ShardKey) -> String {
    let [hi, lo] = key.words();
    format!("{hi:016x}{lo:016x}")
}

pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    h.write(bytes);
    h.finish()
}

/// What is sharded: a text file's training part, or the training rows of `digits8`.
enum Source {
    Text {
        text: String,
        tokenizer: Tokenizer,
        /// Bytes of the training part.
        cut: usize,
        val: Vec<u32>,
    },
    Rows {
        train: Vec<Vec<u32>>,
        val: Vec<Vec<u32>>,
    },
}

/// The split of the data for sharded training, as [`crate::ar::load_text`] splits it: for a
/// text file its tokenizer (over the whole text), the sharded part and the shared validation
/// tokens; for `digits8` the training images (planted duplicates included) and the held-out ones.
fn split(config: &ArTrainConfig) -> Result<Source> {
    if config.data == "arithmetic" {
        return Err(Error::Config(
            "sharded training of an AR model takes a text file or digits8, not arithmetic".into(),
        ));
    }
    if config.data == "digits8" {
        return match crate::ar::load_text(config)? {
            TextData::Pixels { train, val } => Ok(Source::Rows { train, val }),
            _ => unreachable!("digits8 loads as pixels"),
        };
    }
    let path = Path::new(&config.data);
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("text data", path, e))?;
    let tokenizer = match config.tokenizer.as_str() {
        "chars" => Tokenizer::chars_of(&text),
        "bytes" => Tokenizer::Bytes,
        other => {
            return Err(Error::Config(format!(
                "tokenizer must be chars or bytes, not {other:?}"
            )));
        }
    };
    let tokens = tokenizer
        .encode(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let cut = tokens.len() * 9 / 10;
    let cut_byte = match config.tokenizer.as_str() {
        "bytes" => cut,
        _ => text.char_indices().nth(cut).map_or(text.len(), |(b, _)| b),
    };
    // A byte cut inside a character: move it to the next boundary.
    let cut = (cut_byte..=text.len())
        .find(|&b| text.is_char_boundary(b))
        .unwrap_or(text.len());
    let val = tokens[tokens.len() * 9 / 10..].to_vec();
    Ok(Source::Text {
        text,
        tokenizer,
        cut,
        val,
    })
}

fn row_bytes(row: &[u32]) -> Vec<u8> {
    row.iter().map(|&v| v as u8).collect()
}

impl Source {
    fn manifest(&self, config: &ArTrainConfig, spec: &ShardSpec) -> ShardManifest {
        let (bytes, train_bytes, plan) = match self {
            Source::Text { text, cut, .. } => (
                text.as_bytes().to_vec(),
                *cut,
                ShardPlan::of_text(&text[..*cut], spec.unit, &spec.key, spec.shards),
            ),
            Source::Rows { train, .. } => (
                train.iter().flat_map(|r| row_bytes(r)).collect(),
                train.len(),
                ShardPlan {
                    shards: spec.shards,
                    unit: DocumentUnit::Row,
                    documents: train
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (i..i + 1, spec.key.shard_of(&row_bytes(r), spec.shards)))
                        .collect(),
                },
            ),
        };
        ShardManifest {
            version: 1,
            family: "ar".into(),
            data: config.data.clone(),
            data_bytes: bytes.len(),
            data_hash: hash_bytes(&bytes),
            key: key_hex(&spec.key),
            train_bytes,
            counts: plan.counts(),
            plan,
            config: None,
        }
    }

    fn shard(&self, plan: &ShardPlan, i: usize) -> Result<TextData> {
        Ok(match self {
            Source::Text {
                text,
                tokenizer,
                cut,
                val,
            } => TextData::Corpus {
                tokenizer: tokenizer.clone(),
                train: tokenizer
                    .encode(&plan.shard_text(&text[..*cut], i))
                    .map_err(|e| Error::Config(format!("shard {i}: {e}")))?,
                val: val.clone(),
            },
            Source::Rows { train, val } => TextData::Pixels {
                train: plan
                    .documents
                    .iter()
                    .filter(|(_, s)| *s == i)
                    .map(|(r, _)| train[r.start].clone())
                    .collect(),
                val: val.clone(),
            },
        })
    }
}

/// Trains `spec.shards` GPTs as `config` says, each on its shard of the training part of
/// `config.data` (a text file, or the images of `digits8`, each image its own item keyed by its
/// pixels, so that duplicates share a shard), all validated on the same held-out data. With `opts.out`, writes
/// `shards.json` and `shard-i/`; with `opts.resume`, checks the manifest against the data and
/// the spec and resumes every shard (a shard with no checkpoint yet starts).
pub fn train_ar_sharded(
    config: &ArTrainConfig,
    spec: &ShardSpec,
    opts: &TrainOptions,
) -> Result<Vec<ArReport>> {
    config.validate()?;
    spec.validate()?;
    let source = split(config)?;
    let manifest = source.manifest(config, spec);
    open_manifest(&manifest, opts)?;
    let mut reports = Vec::with_capacity(spec.shards);
    for i in 0..spec.shards {
        if manifest.counts[i] == 0 {
            return Err(Error::Config(format!(
                "shard {i} received no document: too few documents for {} shards",
                spec.shards
            )));
        }
        let data = source.shard(&manifest.plan, i)?;
        let o = shard_options(opts, i);
        tracing::info!(
            "shard {}/{}: {} documents",
            i + 1,
            spec.shards,
            manifest.counts[i]
        );
        reports.push(train_ar_on(config, &data, &o)?);
    }
    Ok(reports)
}

/// Writes `shards.json` in a fresh run folder, or checks it against `manifest` on resume.
pub(crate) fn open_manifest(manifest: &ShardManifest, opts: &TrainOptions) -> Result<()> {
    if let Some(dir) = &opts.out {
        let file = dir.join(SHARDS_FILE);
        if opts.resume {
            let saved = read_manifest(dir)?;
            if saved != *manifest {
                return Err(Error::Checkpoint {
                    path: file,
                    reason:
                        "the data, key, document unit or number of shards differ from the run's"
                            .into(),
                });
            }
        } else {
            if file.exists() {
                return Err(Error::Config(format!(
                    "{} already holds a sharded run; pass --resume to continue it or choose another --out",
                    dir.display()
                )));
            }
            std::fs::create_dir_all(dir).map_err(|e| Error::io("run folder", dir, e))?;
            let bytes = serde_json::to_vec_pretty(&manifest).expect("serialises");
            crate::run::write_atomic(&file, &bytes, "output")?;
        }
    }
    Ok(())
}

/// The options of shard `i`: its folder inside the run's, resumed if it has a checkpoint.
pub(crate) fn shard_options(opts: &TrainOptions, i: usize) -> TrainOptions {
    let mut o = opts.clone();
    if let Some(dir) = &opts.out {
        let d = ShardManifest::shard_dir(dir, i);
        o.resume = opts.resume && d.join("checkpoints").join("latest").exists();
        o.out = Some(d);
    }
    o
}

/// Reads `dir/shards.json`.
pub fn read_manifest(dir: &Path) -> Result<ShardManifest> {
    let file = dir.join(SHARDS_FILE);
    let bytes = std::fs::read(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotSharded {
            path: dir.to_path_buf(),
        },
        _ => Error::io("shard manifest", &file, e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
        path: file,
        reason: e.to_string(),
    })
}

/// A sharded run, loaded: its manifest and each shard's latest checkpoint.
pub struct ShardedRun {
    /// `shards.json`.
    pub manifest: ShardManifest,
    /// The shards, in order.
    pub shards: Vec<ArRun>,
}

impl ShardedRun {
    /// The shard models.
    pub fn models(&self) -> Vec<&oxgen_models::ar::Gpt> {
        self.shards.iter().map(|r| &r.model).collect()
    }
}

/// Loads a sharded run. Errors with [`Error::NotSharded`] on a folder without `shards.json`,
/// and refuses shards whose tokenizers differ or that are missing.
pub fn load_sharded(dir: &Path, device: &Device) -> Result<ShardedRun> {
    let manifest = read_manifest(dir)?;
    let shards = (0..manifest.plan.shards)
        .map(|i| load_ar(&ShardManifest::shard_dir(dir, i), device))
        .collect::<Result<Vec<_>>>()?;
    if shards.windows(2).any(|w| w[0].codec != w[1].codec) {
        return Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            reason: "the shards' tokenizers differ".into(),
        });
    }
    Ok(ShardedRun { manifest, shards })
}
