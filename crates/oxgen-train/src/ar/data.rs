//! The autoregressive trainer's data: the embedded languages (sums, digit images) and text
//! files, and how a step draws its batches from them.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::Gpt;
use oxgen_models::ar::Tokenizer;
use oxgen_models::ar::arithmetic::{self, Arithmetic};
use rand::Rng;
use rand::rngs::StdRng;

use super::{ArTrainConfig, PIXEL_START, PIXEL_VOCAB};
use crate::privacy::dpsgd::DpPlan;
use crate::trainer::rng::{Stream, step_rng};
use crate::{Error, Result};

/// The training data.
#[derive(Clone, Debug)]
pub enum TextData {
    /// Sums; loss on the answer tokens.
    Arithmetic(Arithmetic),
    /// Images as sequences: 8×8 digits, START then 64 pixel tokens (levels 0..16, row-major);
    /// the loss is on every pixel, so `log_prob` is the exact log-likelihood of a discrete image.
    Pixels {
        /// Training images, 64 tokens each.
        train: Vec<Vec<u32>>,
        /// Validation images.
        val: Vec<Vec<u32>>,
    },
    /// A corpus, tokenized.
    Corpus {
        /// Its tokenizer.
        tokenizer: Tokenizer,
        /// Training tokens (the first 90%).
        train: Vec<u32>,
        /// Validation tokens (the rest).
        val: Vec<u32>,
    },
}

/// Loads `config.data`.
pub fn load_text(config: &ArTrainConfig) -> Result<TextData> {
    if config.data == "arithmetic" {
        return Ok(TextData::Arithmetic(Arithmetic {
            digits: config.digits,
            seed: config.seed,
        }));
    }
    if config.data == "digits8" {
        let d = crate::data::digits8();
        let (train, val) = d.split(config.val_fraction, config.seed);
        let rows = |d: &crate::data::Dataset| -> Vec<Vec<u32>> {
            (0..d.len())
                .map(|i| {
                    d.row(i)
                        .iter()
                        .map(|v| ((v + 1.0) * 8.0).round().clamp(0.0, 16.0) as u32)
                        .collect()
                })
                .collect()
        };
        let mut train = rows(&train);
        if let Some([images, repeats]) = config.duplicates {
            crate::copyright::duplicates::plant_rows(&mut train, images, repeats, config.seed)?;
        }
        return Ok(TextData::Pixels {
            train,
            val: rows(&val),
        });
    }
    let path = Path::new(&config.data);
    if !path.exists() {
        return Err(Error::UnknownDataset {
            name: config.data.clone(),
            known: "arithmetic, digits8 (or a path to a text file)".into(),
        });
    }
    let (tokenizer, tokens) = match config.tokenizer.as_str() {
        "chars" => {
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::io("text data", path, e))?;
            let tokenizer = Tokenizer::chars_of(&text);
            let tokens = tokenizer
                .encode(&text)
                .expect("every character is in the vocabulary");
            (tokenizer, tokens)
        }
        "bytes" => {
            let bytes = std::fs::read(path).map_err(|e| Error::io("text data", path, e))?;
            (Tokenizer::Bytes, bytes.into_iter().map(u32::from).collect())
        }
        other => {
            return Err(Error::Config(format!(
                "tokenizer must be chars or bytes, not {other:?}"
            )));
        }
    };
    let cut = tokens.len() * 9 / 10;
    if cut < config.model.context + 2 || tokens.len() - cut < config.model.context + 2 {
        return Err(Error::Config(format!(
            "{} has {} characters: too few for a context of {}",
            path.display(),
            tokens.len(),
            config.model.context
        )));
    }
    Ok(TextData::Corpus {
        tokenizer,
        train: tokens[..cut].to_vec(),
        val: tokens[cut..].to_vec(),
    })
}

impl TextData {
    pub(crate) fn vocab(&self) -> usize {
        match self {
            TextData::Arithmetic(_) => arithmetic::VOCAB,
            TextData::Pixels { .. } => PIXEL_VOCAB,
            TextData::Corpus { tokenizer, .. } => tokenizer.vocab(),
        }
    }

    /// A batch of `n` sequences and the mean negative log-likelihood (nats per scored token) the
    /// model gives them.
    pub(crate) fn loss(
        &self,
        model: &Gpt,
        n: usize,
        val: bool,
        rng: &mut StdRng,
        device: &Device,
    ) -> Tensor<1> {
        self.loss_of(model, self.draw(n, val, rng, model.context()), device)
    }

    /// `n` sequences of the training (or validation) pool, drawn with `rng`, on the host.
    pub(crate) fn draw(&self, n: usize, val: bool, rng: &mut StdRng, context: usize) -> TokenRows {
        let (data, cols): (Vec<i64>, usize) = match self {
            TextData::Arithmetic(lang) => {
                let pool = lang.problems(val);
                let data = (0..n)
                    .flat_map(|_| {
                        let (a, b) = pool[rng.random_range(0..pool.len())];
                        lang.line(a, b).into_iter().map(|t| t as i64)
                    })
                    .collect();
                (data, lang.line_len())
            }
            TextData::Pixels { train, val: v } => {
                let pool = if val { v } else { train };
                let data = (0..n)
                    .flat_map(|_| {
                        let img = &pool[rng.random_range(0..pool.len())];
                        std::iter::once(PIXEL_START as i64).chain(img.iter().map(|&t| t as i64))
                    })
                    .collect();
                (data, 65)
            }
            TextData::Corpus { train, val: v, .. } => {
                let tokens = if val { v } else { train };
                let len = context + 1;
                let data = (0..n)
                    .flat_map(|_| {
                        let s = rng.random_range(0..=tokens.len() - len);
                        tokens[s..s + len].iter().map(|&t| t as i64)
                    })
                    .collect();
                (data, len)
            }
        };
        TokenRows {
            data,
            rows: n,
            cols,
        }
    }

    /// The mean negative log-likelihood of `rows` (of the answers, for arithmetic).
    pub(crate) fn loss_of(&self, model: &Gpt, rows: TokenRows, device: &Device) -> Tensor<1> {
        let (n, t) = (rows.rows, rows.cols);
        let batch = Tensor::<2, Int>::from_data(TensorData::new(rows.data, [n, t]), device);
        let log_probs = model.token_log_probs(batch);
        match self {
            TextData::Arithmetic(lang) => {
                let answer = lang.digits as usize + 1;
                log_probs.slice([0..n, t - 1 - answer..t - 1]).mean().neg()
            }
            _ => log_probs.mean().neg(),
        }
    }
}

impl TextData {
    /// The training records a DP run samples (its privacy unit): each problem of the arithmetic
    /// language, each digit image, or each of the corpus's disjoint blocks of `context + 1`
    /// tokens (a block, not a document or an author, is then what the guarantee protects).
    pub(crate) fn records(&self, context: usize) -> usize {
        match self {
            TextData::Arithmetic(lang) => lang.problems(false).len(),
            TextData::Pixels { train, .. } => train.len(),
            TextData::Corpus { train, .. } => train.len() / (context + 1),
        }
    }

    /// The training records `idx` (each below [`TextData::records`]) as one batch.
    pub(crate) fn record_rows(&self, idx: &[usize], context: usize) -> TokenRows {
        let (data, cols): (Vec<i64>, usize) = match self {
            TextData::Arithmetic(lang) => {
                let pool = lang.problems(false);
                let data = idx
                    .iter()
                    .flat_map(|&i| {
                        let (a, b) = pool[i];
                        lang.line(a, b).into_iter().map(|t| t as i64)
                    })
                    .collect();
                (data, lang.line_len())
            }
            TextData::Pixels { train, .. } => {
                let data = idx
                    .iter()
                    .flat_map(|&i| {
                        std::iter::once(PIXEL_START as i64)
                            .chain(train[i].iter().map(|&t| t as i64))
                    })
                    .collect();
                (data, 65)
            }
            TextData::Corpus { train, .. } => {
                let len = context + 1;
                let data = idx
                    .iter()
                    .flat_map(|&i| train[i * len..(i + 1) * len].iter().map(|&t| t as i64))
                    .collect();
                (data, len)
            }
        };
        TokenRows {
            data,
            rows: idx.len(),
            cols,
        }
    }
}

/// Token sequences on the host: `rows` × `cols`, row-major.
pub(crate) struct TokenRows {
    data: Vec<i64>,
    pub(crate) rows: usize,
    cols: usize,
}

impl TokenRows {
    /// Consecutive shards of `sizes` rows each (they sum to `rows`), with their row counts.
    pub(crate) fn split(self, sizes: &[usize]) -> Vec<(TokenRows, usize)> {
        let mut rest = self.data;
        let mut out = Vec::with_capacity(sizes.len());
        for &n in sizes {
            let tail = rest.split_off(n * self.cols);
            let data = std::mem::replace(&mut rest, tail);
            let shard = TokenRows {
                data,
                rows: n,
                cols: self.cols,
            };
            out.push((shard, n));
        }
        out
    }

    /// A copy of rows `r`.
    pub(crate) fn rows_in(&self, r: std::ops::Range<usize>) -> TokenRows {
        TokenRows {
            data: self.data[r.start * self.cols..r.end * self.cols].to_vec(),
            rows: r.len(),
            cols: self.cols,
        }
    }
}

/// What step `step` draws: the dropout seed and one batch per micro-batch, in the order the
/// step's generator gives them (a pure function of the step, so it can be made ahead).
pub(crate) fn step_draws(
    c: &ArTrainConfig,
    data: &TextData,
    context: usize,
    plan: Option<&DpPlan>,
    step: usize,
) -> StepDraws {
    let mut rng = step_rng(c.seed, step, Stream::Ar);
    let dropout_seed: u64 = rng.random();
    if let Some(plan) = plan {
        // DP: the plan's Poisson (or fixed-size) draw of records; an empty draw runs record 0
        // at weight 0.
        let idx = plan.batch(c.seed, step, c.batch_size);
        let count = idx.len();
        let idx = if count == 0 { vec![0] } else { idx };
        return StepDraws {
            dropout_seed,
            batches: vec![data.record_rows(&idx, context)],
            dp_rows: Some(count),
        };
    }
    let batches = (0..c.grad_accum)
        .map(|_| data.draw(c.batch_size, false, &mut rng, context))
        .collect();
    StepDraws {
        dropout_seed,
        batches,
        dp_rows: None,
    }
}

/// See [`step_draws`].
pub(crate) struct StepDraws {
    pub(crate) dropout_seed: u64,
    pub(crate) batches: Vec<TokenRows>,
    /// A DP step's batch size (its one batch is padded to a row when the draw is empty).
    pub(crate) dp_rows: Option<usize>,
}
