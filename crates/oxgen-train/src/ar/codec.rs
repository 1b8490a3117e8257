//! What a saved autoregressive run needs besides its weights: the codec between text (or
//! pixels) and tokens, loading a checkpoint for sampling, exact likelihoods of text, and the
//! image helpers of the pixel-sequence data.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::arithmetic::{self, Arithmetic};
use oxgen_models::ar::{DecodeOptions, Gpt, LoraConfig, Tokenizer, generate};
use serde::{Deserialize, Serialize};

use super::{ArTrainConfig, TextData};
use crate::checkpoint;
use crate::checkpoint::load_weights;
use crate::{Error, Result};

/// How a run turns text into tokens and back: the arithmetic language, or a tokenizer. Saved in
/// each checkpoint (`codec.json`), so sampling needs no data file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Codec {
    /// Sums (see `oxgen_models::ar::arithmetic`).
    Arithmetic(Arithmetic),
    /// 8×8 images with pixel levels 0..16 (tokens), after a start token.
    Pixels,
    /// A tokenizer.
    Text(Tokenizer),
}

impl Codec {
    pub(super) fn of(data: &TextData) -> Self {
        match data {
            TextData::Arithmetic(lang) => Codec::Arithmetic(*lang),
            TextData::Pixels { .. } => Codec::Pixels,
            TextData::Corpus { tokenizer, .. } => Codec::Text(tokenizer.clone()),
        }
    }

    /// Text to tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Codec::Arithmetic(_) => text
                .chars()
                .map(|c| match c {
                    '0'..='9' => Ok(c as u32 - '0' as u32),
                    '+' => Ok(arithmetic::PLUS),
                    '=' => Ok(arithmetic::EQUALS),
                    '\n' => Ok(arithmetic::START),
                    other => Err(Error::Config(format!(
                        "{other:?} is not in the arithmetic language (digits, +, =)"
                    ))),
                })
                .collect(),
            Codec::Pixels => Err(Error::Config(
                "an image model has no text codec: sample it into images".into(),
            )),
            Codec::Text(t) => t.encode(text).map_err(|e| Error::Config(e.to_string())),
        }
    }

    /// Tokens to text.
    pub fn decode(&self, tokens: &[u32]) -> String {
        match self {
            Codec::Arithmetic(_) => Arithmetic::render(tokens),
            Codec::Pixels => format!("{tokens:?}"),
            Codec::Text(t) => t.decode(tokens),
        }
    }

    /// A prompt: the text's tokens, after a line start for arithmetic (every training line
    /// begins with one, and positions count from it).
    pub fn prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut tokens = self.encode(text)?;
        if matches!(self, Codec::Arithmetic(_)) && tokens.first() != Some(&arithmetic::START) {
            tokens.insert(0, arithmetic::START);
        }
        Ok(tokens)
    }

    /// The prompt used when none is given: the line start (arithmetic) or a newline.
    pub fn default_prompt(&self) -> Vec<u32> {
        match self {
            Codec::Arithmetic(_) => vec![arithmetic::START],
            Codec::Pixels => vec![PIXEL_START],
            Codec::Text(t) => t.encode("\n").unwrap_or_else(|_| vec![0]),
        }
    }
}

/// A trained run, loaded for sampling and likelihoods.
#[derive(Debug)]
pub struct ArRun {
    /// Its config.
    pub config: ArTrainConfig,
    /// The model (no autodiff).
    pub model: Gpt,
    /// Its text codec.
    pub codec: Codec,
}

/// Whether `path` (a run or checkpoint folder) holds an autoregressive checkpoint.
pub fn is_ar_checkpoint(path: &Path) -> bool {
    checkpoint::load(path).is_ok_and(|ck| is_ar_family(&ck.manifest.family))
}

/// `ar`, or a tuned autoregressive run (`ar-grpo`, …), whose manifest config holds the base's
/// config under `base_config`.
fn is_ar_family(family: &str) -> bool {
    family == "ar" || family.starts_with("ar-")
}

/// The LoRA adapters of a tuned run, if it has any: `lora` in the section of its method
/// (`{"method": "sft", "sft": {"lora": {...}}}`).
fn lora_of(config: &serde_json::Value) -> std::result::Result<Option<LoraConfig>, String> {
    let section = config
        .get("method")
        .and_then(|m| m.as_str())
        .and_then(|m| config.get(m));
    match section.and_then(|s| s.get("lora")) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("LoRA config unreadable: {e}")),
    }
}

/// Loads the latest (or the given) checkpoint of an autoregressive run; a run tuned with LoRA
/// comes back with its adapters unmerged ([`oxgen_models::ar::Gpt::merge_lora`] folds them in).
pub fn load_ar(path: &Path, device: &Device) -> Result<ArRun> {
    let ck = checkpoint::load(path)?;
    let refuse = |reason: String| Error::Checkpoint {
        path: ck.dir.clone(),
        reason,
    };
    if !is_ar_family(&ck.manifest.family) {
        return Err(refuse(format!(
            "it is a {} checkpoint, not ar",
            ck.manifest.family
        )));
    }
    let config = match ck.manifest.family.as_str() {
        "ar" => ck.manifest.config.clone(),
        _ => ck.manifest.config["base_config"].clone(),
    };
    let config: ArTrainConfig =
        serde_json::from_value(config).map_err(|e| refuse(format!("config unreadable: {e}")))?;
    let codec: Codec = serde_json::from_slice(ck.file("codec.json")?)
        .map_err(|e| refuse(format!("codec.json unreadable: {e}")))?;
    let mut model = config.model.init(device);
    if let Some(lora) = lora_of(&ck.manifest.config).map_err(refuse)? {
        lora.validate(&config.model).map_err(refuse)?;
        // The adapters' initial values are overwritten by the weights below; the lock keeps
        // their draw out of any seeded initialisation running at the same time.
        model = crate::trainer::optim::seeded_init(device, 0, || model.with_lora(&lora));
    }
    let model = load_weights(model, ck.file("model.bpk")?, &ck.dir)?;
    Ok(ArRun {
        config,
        model,
        codec,
    })
}

/// Exact negative log-likelihood of `text` under the run's model: (total nats, scored tokens,
/// scored characters). The first token is the condition and is not scored. Text longer than the
/// context window is scored in windows of `context` tokens that overlap by one, so every token
/// after the first is scored once, given up to `context − 1` tokens before it.
pub fn nll_of_text(run: &ArRun, text: &str, device: &Device) -> Result<(f64, usize, usize)> {
    let tokens = run.codec.encode(text)?;
    if tokens.len() < 2 {
        return Err(Error::Config("the text needs at least two tokens".into()));
    }
    let ctx = run.model.context();
    let mut total = 0.0;
    let mut start = 0;
    while start + 1 < tokens.len() {
        let end = (start + ctx).min(tokens.len());
        let data: Vec<i64> = tokens[start..end].iter().map(|&t| t as i64).collect();
        let window = Tensor::<2, Int>::from_data(TensorData::new(data, [1, end - start]), device);
        total -= run.model.log_prob(window).into_scalar::<f32>() as f64;
        start = end - 1;
    }
    let scored_chars = match &run.codec {
        Codec::Text(Tokenizer::Bytes) => String::from_utf8_lossy(&text.as_bytes()[1..])
            .chars()
            .count(),
        _ => text.chars().count() - 1,
    };
    Ok((total, tokens.len() - 1, scored_chars))
}

/// Pixel levels of the 8×8 digits (0..16) plus the start token.
pub const PIXEL_VOCAB: usize = 18;
/// The start token of an image sequence.
pub const PIXEL_START: u32 = 17;

/// `n` images (64 pixel levels each) drawn at temperature 1 with the KV cache, seeds seed..seed+n.
pub fn sample_images(model: &Gpt, n: usize, seed: u64, device: &Device) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let options = DecodeOptions {
                max_new_tokens: 64,
                seed: seed.wrapping_add(i as u64),
                ..DecodeOptions::default()
            };
            generate(model, &[PIXEL_START], &options, true, device, |_| {})
        })
        .collect()
}

/// Mean exact negative log-likelihood of `images` in nats per image (64 pixels, 17 levels).
pub fn images_nll(model: &Gpt, images: &[Vec<u32>], device: &Device) -> f64 {
    let data: Vec<i64> = images
        .iter()
        .flat_map(|img| std::iter::once(PIXEL_START as i64).chain(img.iter().map(|&t| t as i64)))
        .collect();
    let batch = Tensor::<2, Int>::from_data(TensorData::new(data, [images.len(), 65]), device);
    -(model.log_prob(batch).mean().into_scalar::<f32>() as f64)
}

/// Writes `samples.png` (and `samples.npy`) of 8×8 pixel-level images into `out`.
pub fn write_images(out: &Path, images: &[Vec<u32>]) -> Result<()> {
    let values: Vec<f32> = images
        .iter()
        .flat_map(|img| img.iter().map(|&v| v as f32 / 8.0 - 1.0))
        .collect();
    let shape = oxgen_models::DataShape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    crate::run::write_samples(out, &values, None, shape, None)
}

/// A GPT trained on pixel sequences (`--data digits8`), behind the shared
/// [`Generative`](oxgen_models::generative::Generative) API: rows are 8×8 images scaled to
/// [−1, 1] as the other families see them; the likelihood is exact, of the 17-level pixels.
#[derive(Debug)]
pub struct PixelGpt<'a>(pub &'a Gpt);

impl oxgen_models::generative::Generative for PixelGpt<'_> {
    fn capabilities(&self) -> oxgen_models::generative::Capabilities {
        oxgen_models::generative::Capabilities {
            family: "ar",
            sample: true,
            conditional: false,
            likelihood: oxgen_models::generative::Likelihood::Exact,
        }
    }

    fn sample(&self, n: usize, _labels: Option<&[u32]>, seed: u64, device: &Device) -> Tensor<2> {
        let values: Vec<f32> = sample_images(self.0, n, seed, device)
            .iter()
            .flat_map(|img| img.iter().map(|&v| v as f32 / 8.0 - 1.0))
            .collect();
        Tensor::from_data(TensorData::new(values, [n, 64]), device)
    }

    /// Exact: each value is rounded to its pixel level, `round((x + 1) · 8)` in 0..=16.
    fn nll(&self, x: Tensor<2>, _seed: u64) -> Option<Tensor<1>> {
        let [b, f] = x.dims();
        assert_eq!(f, 64, "a pixel GPT scores 8×8 images, got {f} features");
        let device = x.device();
        let levels = x
            .add_scalar(1.0)
            .mul_scalar(8.0)
            .round()
            .clamp(0.0, 16.0)
            .int();
        let start = Tensor::<2, Int>::full([b, 1], PIXEL_START as i64, &device);
        Some(self.0.log_prob(Tensor::cat(vec![start, levels], 1)).neg())
    }
}
