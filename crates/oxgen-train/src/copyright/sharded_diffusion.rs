//! Sharded training of diffusion models: K models, each on the training rows that a keyed hash
//! of the row's values sends to its shard (every copy of an image in one shard), all from the
//! same train/validation split, for NAF sampling by averaging their predictions
//! ([`oxgen_models::diffusion::naf`]).
//!
//! Each shard is an ordinary diffusion run in `shard-i` whose config is the run's with the
//! validation share at 0 and the duplicates already planted (its rows are the shard's, chosen
//! here; the split's held-out rows are the run's, not the shard's).

use std::path::Path;

use burn::tensor::Device;

use super::duplicates::plant_dataset;
use super::shard::{DocumentUnit, ShardPlan};
use super::sharded::{
    ShardManifest, ShardSpec, hash_bytes, key_hex, open_manifest, read_manifest, shard_options,
};
use crate::data::Dataset;
use crate::diffusion::{TrainReport, train_on};
use crate::eval::sample::{LoadedRun, load_run};
use crate::trainer::TrainOptions;
use crate::{Error, Result, TrainConfig};

/// The training rows (planted duplicates included) and held-out rows of `config`'s data, as a
/// single diffusion run splits them.
pub fn split_rows(config: &TrainConfig) -> Result<(Dataset, Dataset)> {
    let data = config.load_data()?;
    let (train, val) = data.train_val(config.val_fraction, config.seed);
    let Some(val) = val.filter(|v| !v.is_empty()) else {
        return Err(Error::Config(
            "sharded diffusion training needs a dataset with held-out rows (not a built-in 2D set, val_fraction above 0)".into(),
        ));
    };
    let train = match config.duplicates {
        Some([k, r]) => plant_dataset(&train, k, r, config.seed)?,
        None => train,
    };
    Ok((train, val))
}

fn row_bytes(row: &[f32]) -> Vec<u8> {
    row.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Trains `spec.shards` diffusion models as `config` says, each on its shard of the training
/// rows. With `opts.out`, writes `shards.json` and `shard-i/`; with `opts.resume`, checks the
/// manifest and resumes every shard.
pub fn train_diffusion_sharded(
    config: &TrainConfig,
    spec: &ShardSpec,
    opts: &TrainOptions,
) -> Result<Vec<TrainReport>> {
    config.validate()?;
    spec.validate()?;
    let (train, _) = split_rows(config)?;
    let plan = ShardPlan {
        shards: spec.shards,
        unit: DocumentUnit::Row,
        documents: (0..train.len())
            .map(|i| {
                (
                    i..i + 1,
                    spec.key.shard_of(&row_bytes(train.row(i)), spec.shards),
                )
            })
            .collect(),
    };
    let manifest = ShardManifest {
        version: 1,
        family: "diffusion".into(),
        data: config.data.clone(),
        data_bytes: train.x.len() * 4,
        data_hash: hash_bytes(&row_bytes(&train.x)),
        key: key_hex(&spec.key),
        train_bytes: train.len(),
        counts: plan.counts(),
        plan,
        config: Some(serde_json::to_value(config).expect("serialises")),
    };
    open_manifest(&manifest, opts)?;
    let mut shard_config = config.clone();
    (shard_config.val_fraction, shard_config.duplicates) = (0.0, None);
    let mut reports = Vec::with_capacity(spec.shards);
    for i in 0..spec.shards {
        let idx: Vec<usize> = manifest
            .plan
            .documents
            .iter()
            .filter(|(_, s)| *s == i)
            .map(|(r, _)| r.start)
            .collect();
        if idx.len() < 2 {
            return Err(Error::Config(format!(
                "shard {i} received {} rows: too few for {} shards",
                idx.len(),
                spec.shards
            )));
        }
        let mut o = shard_options(opts, i);
        // The held-out rows are the run's: a shard has none of its own to report on.
        o.skip_eval = true;
        tracing::info!("shard {}/{}: {} rows", i + 1, spec.shards, idx.len());
        reports.push(train_on(&shard_config, &train.subset(&idx), &o)?);
    }
    Ok(reports)
}

/// A sharded diffusion run: the run's config (not the shards'), and each shard's latest
/// checkpoint (EMA weights).
pub fn load_sharded_diffusion(
    dir: &Path,
    device: &Device,
) -> Result<(TrainConfig, Vec<LoadedRun>)> {
    let manifest = read_manifest(dir)?;
    if manifest.family != "diffusion" {
        return Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            reason: format!("a sharded {} run, not diffusion", manifest.family),
        });
    }
    let config: TrainConfig = manifest
        .config
        .clone()
        .and_then(|c| serde_json::from_value(c).ok())
        .ok_or_else(|| Error::Parse {
            path: dir.join(super::sharded::SHARDS_FILE),
            reason: "no readable diffusion config".into(),
        })?;
    let runs = (0..manifest.plan.shards)
        .map(|i| load_run(&ShardManifest::shard_dir(dir, i), device))
        .collect::<Result<Vec<_>>>()?;
    Ok((config, runs))
}
