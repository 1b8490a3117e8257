//! Folding a LoRA run's adapters into its weights: `oxgen tune merge --run DIR --out DIR2`
//! writes a plain checkpoint (family `ar-merged`, no adapters) that samples, evaluates, exports
//! and serves as a base like any autoregressive run, and computes what the adapted run does.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::ar::{ArRun, ArTrainConfig, load_ar};
use crate::checkpoint::{self, Manifest, to_bytes};
use crate::run::RunDir;
use crate::{Error, Result};

/// Family name of merged runs in manifests.
pub const FAMILY: &str = "ar-merged";

/// What a merged run's manifest holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedRunConfig {
    /// `merge`.
    pub method: String,
    /// The LoRA run that was merged, as given.
    pub base: String,
    /// The model (the LoRA run's base config).
    pub base_config: ArTrainConfig,
    /// Where the adapters came from.
    pub merge: MergeInfo,
}

/// The merged run's origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeInfo {
    /// The method that trained the adapters (`sft`).
    pub from_method: String,
    /// Its step.
    pub step: usize,
    /// Adapted weights folded in.
    pub adapters: usize,
}

/// Merges the adapters of the run at `run` into a plain checkpoint written to `out` (a new run
/// folder). Refuses a run without adapters and an `out` that already holds a run. Returns the
/// checkpoint folder.
pub fn merge(run: &Path, out: &Path, device: &Device) -> Result<PathBuf> {
    let ck = checkpoint::load(run)?;
    let ArRun {
        config,
        model,
        codec,
    } = load_ar(run, device)?;
    let adapters = model.adapters();
    if adapters == 0 {
        return Err(Error::Config(format!(
            "{} has no LoRA adapters: it is a plain run already",
            run.display()
        )));
    }
    let dir = RunDir::create(out, false)?;
    let merged = model.merge_lora();
    let from_method = ck.manifest.config["method"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let tuned = MergedRunConfig {
        method: "merge".into(),
        base: run.display().to_string(),
        base_config: config,
        merge: MergeInfo {
            from_method,
            step: ck.manifest.step,
            adapters,
        },
    };
    dir.write_config(&tuned)?;
    let manifest = Manifest::new(
        FAMILY,
        ck.manifest.step,
        ck.manifest.shape,
        serde_json::to_value(&tuned).expect("config serializes"),
        ck.manifest.rng.seed,
        ck.manifest.data_position,
    );
    let codec = serde_json::to_vec(&codec).expect("codec serializes");
    checkpoint::save(
        dir.path(),
        manifest,
        &[("model.bpk", to_bytes(&merged)?), ("codec.json", codec)],
    )
}
