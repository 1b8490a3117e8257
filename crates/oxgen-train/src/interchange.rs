//! Weights interchange: a run's model as a safetensors file (`oxgen export`), a run folder from
//! such a file (`oxgen import`), and a GPT from a GPT-2-layout safetensors file.
//!
//! **Names.** The tensors are named by their path in the model, as burn's module tree gives it:
//! `blocks.0.qkv.weight`, `ln_f.gamma`, `wte.weight` for the GPT; the families' own module trees
//! for the others (`oxgen export --list` prints them). Linear weights are `[in, out]` and
//! LayerNorm's scale and shift are `gamma` and `beta`, as in burn. Diffusion runs export their EMA
//! weights. The metadata key `oxgen.manifest` holds the run's manifest (family, config, data
//! shape, step, run format), and `oxgen.codec` an autoregressive run's tokenizer, so an import
//! rebuilds the model without any other file.
//!
//! **GPT-2 layout** ([`load_gpt2`]): `wte`, `wpe`, `h.N.ln_1`, `h.N.attn.c_attn`,
//! `h.N.attn.c_proj`, `h.N.ln_2`, `h.N.mlp.c_fc`, `h.N.mlp.c_proj`, `ln_f`, with or without a
//! `transformer.` prefix. GPT-2's `Conv1D` stores weights `[in, out]`, as burn's `Linear` does, so
//! no tensor is transposed; `weight`/`bias` of the norms become `gamma`/`beta`. The attention
//! masks (`attn.bias`, `attn.masked_bias`) and a tied `lm_head.weight` are skipped. GPT-2 uses
//! the tanh approximation of GELU; oxgen's GPT uses the exact one, so logits differ slightly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use oxgen_models::ar::{Gpt, GptConfig};

use crate::checkpoint::{self, Manifest};
use crate::error::{Error, Result};
use crate::sample::{Loaded, load_any};

const MANIFEST_KEY: &str = "oxgen.manifest";
const CODEC_KEY: &str = "oxgen.codec";

/// What [`export`] wrote.
#[derive(Debug)]
pub struct Exported {
    /// The file.
    pub path: PathBuf,
    /// Tensor names and shapes, by name.
    pub tensors: BTreeMap<String, Vec<usize>>,
}

fn parse_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Parse {
        path: path.into(),
        reason: reason.to_string(),
    }
}

/// Writes the weights of the run (or checkpoint) at `ckpt` to the safetensors file `out`,
/// atomically, with the manifest in its metadata.
pub fn export(ckpt: &Path, out: &Path) -> Result<Exported> {
    let device = Device::flex();
    let loaded = load_any(ckpt, &device)?;
    let mut manifest = loaded.manifest().clone();
    manifest.files.clear();
    let mut store = SafetensorsStore::from_bytes(None).metadata(
        MANIFEST_KEY,
        serde_json::to_string(&manifest).expect("manifest serializes"),
    );
    let saved = match &loaded {
        Loaded::Diffusion(r) => r.ema.save_into(&mut store),
        Loaded::Family(_, t, _) => match t {
            crate::family::Trained::Vae(m) => m.save_into(&mut store),
            crate::family::Trained::Flow(m) => m.save_into(&mut store),
            crate::family::Trained::Gan(m) => m.save_into(&mut store),
        },
        Loaded::Ar(run, _) => {
            store = store.metadata(
                CODEC_KEY,
                serde_json::to_string(&run.codec).expect("codec serializes"),
            );
            run.model.save_into(&mut store)
        }
    };
    saved.map_err(|e| Error::Config(format!("collecting the weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| Error::Config(format!("writing safetensors: {e}")))?;
    crate::run::write_atomic(out, &bytes, "export")?;
    Ok(Exported {
        path: out.into(),
        tensors: tensor_shapes(&bytes, out)?,
    })
}

/// The tensors of a safetensors file: name → shape.
pub fn tensor_shapes(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, Vec<usize>>> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| parse_err(path, e))?;
    Ok(st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect())
}

fn metadata(bytes: &[u8], path: &Path) -> Result<std::collections::HashMap<String, String>> {
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| parse_err(path, e))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("safetensors file", path, e))
}

/// Loads `store` into `model`, refusing missing tensors, wrong shapes and (unless filtered out
/// by the store) unknown names.
fn apply<M: ModuleSnapshot>(
    model: &mut M,
    store: &mut SafetensorsStore,
    path: &Path,
) -> Result<()> {
    apply_skipping(model, store, path, |_| false)
}

/// [`apply`], with file tensors for which `skip` holds allowed to stay unused.
fn apply_skipping<M: ModuleSnapshot>(
    model: &mut M,
    store: &mut SafetensorsStore,
    path: &Path,
    skip: fn(&str) -> bool,
) -> Result<()> {
    let mut r = model
        .load_from(store)
        .map_err(|e| parse_err(path, format!("weights do not fit the model: {e}")))?;
    r.unused.retain(|n| !skip(n));
    if !r.errors.is_empty() || !r.missing.is_empty() || !r.unused.is_empty() {
        return Err(parse_err(
            path,
            format!(
                "weights do not fit the model: {} errors {:?}, missing {:?}, unknown {:?}",
                r.errors.len(),
                r.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                r.missing.iter().map(|m| &m.0).collect::<Vec<_>>(),
                r.unused
            ),
        ));
    }
    Ok(())
}

/// Makes the run folder `out` from a file [`export`] wrote: one checkpoint with the weights (and
/// no optimizer state: the run samples and evaluates; it does not resume).
pub fn import(file: &Path, out: &Path) -> Result<PathBuf> {
    let bytes = read(file)?;
    let meta = metadata(&bytes, file)?;
    let raw = meta.get(MANIFEST_KEY).ok_or_else(|| {
        parse_err(
            file,
            "no oxgen manifest in its metadata: not written by `oxgen export` (for GPT-2 weights use --gpt2)",
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| parse_err(file, e))?;
    let value = crate::run::migrate::manifest(value, file)?;
    let mut manifest: Manifest = serde_json::from_value(value).map_err(|e| parse_err(file, e))?;
    manifest.format = checkpoint::FORMAT;
    let device = Device::flex();
    let shape = manifest.shape;
    let bad = |e: serde_json::Error| parse_err(file, format!("config in the manifest: {e}"));
    let store = || SafetensorsStore::from_bytes(Some(bytes.clone()));
    let files: Vec<(&str, Vec<u8>)> = match manifest.family.as_str() {
        "diffusion" => {
            let c: crate::TrainConfig =
                serde_json::from_value(manifest.config.clone()).map_err(bad)?;
            let mut m = c.model.init(shape, &device);
            apply(&mut m, &mut store(), file)?;
            let w = checkpoint::to_bytes(&m)?;
            vec![("model.bpk", w.clone()), ("ema.bpk", w)]
        }
        "ar" => {
            let c: crate::ar::ArTrainConfig =
                serde_json::from_value(manifest.config.clone()).map_err(bad)?;
            c.model.validate().map_err(|e| parse_err(file, e))?;
            let mut m = c.model.init(&device);
            apply(&mut m, &mut store(), file)?;
            let codec = meta
                .get(CODEC_KEY)
                .ok_or_else(|| parse_err(file, "an autoregressive export needs oxgen.codec"))?;
            vec![
                ("model.bpk", checkpoint::to_bytes(&m)?),
                ("codec.json", codec.as_bytes().to_vec()),
            ]
        }
        f if crate::family::FAMILIES.contains(&f) => {
            let c: crate::family::FamilyConfig =
                serde_json::from_value(manifest.config.clone()).map_err(bad)?;
            c.validate(shape)?;
            let w = match &c.model {
                crate::family::FamilyModel::Vae(v) => {
                    let mut m = v.init(shape, &device);
                    apply(&mut m, &mut store(), file)?;
                    checkpoint::to_bytes(&m)?
                }
                crate::family::FamilyModel::Flow(v) => {
                    let mut m = v.init(shape, &device);
                    apply(&mut m, &mut store(), file)?;
                    checkpoint::to_bytes(&m)?
                }
                crate::family::FamilyModel::Gan(v) => {
                    let mut m = v.init(shape, &device);
                    apply(&mut m, &mut store(), file)?;
                    checkpoint::to_bytes(&m)?
                }
            };
            vec![("model.bpk", w)]
        }
        other => return Err(parse_err(file, format!("unknown family `{other}`"))),
    };
    let run = crate::run::RunDir::create(out, false)?;
    run.write_config(&manifest.config)?;
    checkpoint::save(run.path(), manifest, &files)
}

/// Renames GPT-2's tensor names to this GPT's.
fn gpt2_store(bytes: Vec<u8>) -> SafetensorsStore {
    let mut s = SafetensorsStore::from_bytes(Some(bytes));
    for (from, to) in [
        (r"^transformer\.", ""),
        (r"^h\.(\d+)\.", "blocks.$1."),
        (r"\.ln_1\.weight$", ".ln1.gamma"),
        (r"\.ln_1\.bias$", ".ln1.beta"),
        (r"\.ln_2\.weight$", ".ln2.gamma"),
        (r"\.ln_2\.bias$", ".ln2.beta"),
        (r"^ln_f\.weight$", "ln_f.gamma"),
        (r"^ln_f\.bias$", "ln_f.beta"),
        (r"\.attn\.c_attn\.", ".qkv."),
        (r"\.attn\.c_proj\.", ".proj."),
        (r"\.mlp\.c_fc\.", ".fc."),
        (r"\.mlp\.c_proj\.", ".out."),
    ] {
        s = s.with_key_remapping(from, to);
    }
    s
}

/// A GPT with the weights of a GPT-2-layout safetensors file. The sizes come from the tensors
/// (vocabulary and width from `wte`, context from `wpe`, layers from `h.N`); the head count is
/// not in the file and is given. The output head is tied to `wte`, as in GPT-2.
pub fn load_gpt2(file: &Path, heads: usize, device: &Device) -> Result<(GptConfig, Gpt)> {
    let bytes = read(file)?;
    let shapes = tensor_shapes(&bytes, file)?;
    let get = |name: &str| {
        shapes
            .get(name)
            .or_else(|| shapes.get(&format!("transformer.{name}")))
            .cloned()
            .ok_or_else(|| parse_err(file, format!("no `{name}` tensor: not a GPT-2-layout file")))
    };
    let (wte, wpe) = (get("wte.weight")?, get("wpe.weight")?);
    if wte.len() != 2 || wpe.len() != 2 || wte[1] != wpe[1] {
        return Err(parse_err(
            file,
            format!("wte {wte:?} and wpe {wpe:?} must be [vocab, width] and [context, width]"),
        ));
    }
    let layers = shapes
        .keys()
        .filter_map(|k| {
            let k = k.strip_prefix("transformer.").unwrap_or(k);
            k.strip_prefix("h.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    let config = GptConfig::new(wte[0])
        .with_context(wpe[0])
        .with_width(wte[1])
        .with_layers(layers)
        .with_heads(heads)
        .with_tie_weights(true);
    config
        .validate()
        .map_err(|e| parse_err(file, format!("the GPT-2 sizes: {e}")))?;
    let mut model = config.init(device);
    // Masks and a tied output head are not weights of this model.
    apply_skipping(&mut model, &mut gpt2_store(bytes), file, |name| {
        name.ends_with("attn.bias") || name.ends_with("masked_bias") || name.starts_with("lm_head")
    })?;
    Ok((config, model))
}
