//! Token batches of post-training: prompt + completion rows with a mask on the completion
//! tokens, their log-probabilities, and the small logs the tuners keep.

use std::path::Path;

use burn::tensor::Device;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use oxgen_models::ar::{DecodeOptions, Gpt, generate_rows};

use crate::{Error, Result};

/// Completions of `prompts` (one per seed), batched by prompt length.
pub(crate) fn sample(
    model: &Gpt,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    options: &DecodeOptions,
    device: &Device,
) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); prompts.len()];
    let mut lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    lengths.sort_unstable();
    lengths.dedup();
    for len in lengths {
        let rows: Vec<usize> = (0..prompts.len())
            .filter(|&i| prompts[i].len() == len)
            .collect();
        let p: Vec<Vec<u32>> = rows.iter().map(|&i| prompts[i].clone()).collect();
        let s: Vec<u64> = rows.iter().map(|&i| seeds[i]).collect();
        for (i, c) in rows
            .into_iter()
            .zip(generate_rows(model, &p, &s, options, device))
        {
            out[i] = c;
        }
    }
    out
}

/// Rows of token ids, row-major `[n, l]` (0 after each row's end), and a mask `[n, l − 1]`
/// that is 1 where position j predicts a completion token (token j + 1).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rows {
    pub(crate) tokens: Vec<i64>,
    pub(crate) mask: Vec<f32>,
    pub(crate) n: usize,
    pub(crate) l: usize,
}

impl Rows {
    /// One (prompt, completion) per row, padded to the longest (at least 2 tokens), each cut
    /// to its first `cap` tokens.
    pub(crate) fn one_per_row(pairs: &[(&[u32], &[u32])], cap: usize) -> Self {
        let l = pairs
            .iter()
            .map(|(p, c)| (p.len() + c.len()).min(cap))
            .max()
            .unwrap_or(2)
            .max(2);
        Self::build(pairs.iter().map(|&pc| vec![pc]).collect(), l)
    }

    /// Examples packed into rows of `l` tokens, whole, in order: a row takes examples while
    /// they fit, and an example longer than `l` is cut to its first `l` tokens on a row of its
    /// own. Packed examples attend to the ones before them on their row, as in TRL's packing.
    pub(crate) fn packed(pairs: &[(&[u32], &[u32])], l: usize) -> Self {
        let mut rows: Vec<Vec<(&[u32], &[u32])>> = Vec::new();
        let mut used = l; // start a row on the first example
        for &(p, c) in pairs {
            let len = (p.len() + c.len()).min(l);
            if used + len > l {
                rows.push(Vec::new());
                used = 0;
            }
            rows.last_mut().expect("a row").push((p, c));
            used += len;
        }
        Self::build(rows, l.max(2))
    }

    /// The rows in each of `ranges`.
    pub(crate) fn split(&self, ranges: &[std::ops::Range<usize>]) -> Vec<Rows> {
        let l = self.l;
        ranges
            .iter()
            .map(|r| Rows {
                tokens: self.tokens[r.start * l..r.end * l].to_vec(),
                mask: self.mask[r.start * (l - 1)..r.end * (l - 1)].to_vec(),
                n: r.len(),
                l,
            })
            .collect()
    }

    fn build(rows: Vec<Vec<(&[u32], &[u32])>>, l: usize) -> Self {
        let n = rows.len();
        let mut tokens = vec![0i64; n * l];
        let mut mask = vec![0f32; n * (l - 1)];
        for (i, row) in rows.iter().enumerate() {
            let mut at = 0;
            for (p, c) in row {
                for (j, &t) in p.iter().chain(c.iter()).enumerate() {
                    if at + j >= l {
                        break;
                    }
                    tokens[i * l + at + j] = t as i64;
                    if j >= p.len() && at + j >= 1 {
                        mask[i * (l - 1) + at + j - 1] = 1.0;
                    }
                }
                at = (at + p.len() + c.len()).min(l);
            }
        }
        Self { tokens, mask, n, l }
    }
}

/// Sequence log-probabilities of the sampled tokens and the policy's entropy there.
///
/// # Shapes
/// - `tokens`: `[n, l]`; returns log p of tokens 1..l given the ones before, `[n, l − 1]`, and
///   the entropy of each of those predictions, `[n, l − 1]`.
pub(crate) fn token_log_probs(model: &Gpt, tokens: Tensor<2, Int>) -> (Tensor<2>, Tensor<2>) {
    let [n, l] = tokens.dims();
    let inputs = tokens.clone().slice([0..n, 0..l - 1]);
    let targets = tokens.slice([0..n, 1..l]).reshape([n, l - 1, 1]);
    let lsm = log_softmax(model.forward(inputs), 2);
    let entropy = (lsm.clone().exp() * lsm.clone())
        .sum_dim(2)
        .neg()
        .reshape([n, l - 1]);
    (lsm.gather(2, targets).reshape([n, l - 1]), entropy)
}

pub(crate) fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

pub(crate) fn append_line(path: &Path, value: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("eval log", path, e))?;
    writeln!(f, "{value}").map_err(|e| Error::io("eval log", path, e))
}

/// (step, held-out value) from `eval.jsonl`, the last line of each step.
pub(crate) fn read_evals(path: &Path) -> Result<Vec<(usize, f64)>> {
    read_key(path, "held_out")
}

/// (step, value of `key`) from `eval.jsonl`, the last line of each step.
pub(crate) fn read_key(path: &Path, key: &str) -> Result<Vec<(usize, f64)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("eval log", path, e))?;
    let mut by_step = std::collections::BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if let (Some(s), Some(h)) = (v["step"].as_u64(), v[key].as_f64()) {
            by_step.insert(s as usize, h);
        }
    }
    Ok(by_step.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Padding, the mask on completion tokens only, and packing whole examples.
    #[test]
    fn rows_and_masks() {
        let r = Rows::one_per_row(&[(&[1, 2], &[3]), (&[4], &[5, 6, 7, 8])], 4);
        assert_eq!((r.n, r.l), (2, 4));
        assert_eq!(r.tokens, vec![1, 2, 3, 0, 4, 5, 6, 7]);
        assert_eq!(r.mask, vec![0., 1., 0., 1., 1., 1.]);
        let r = Rows::packed(
            &[(&[1, 2], &[3]), (&[4], &[5]), (&[6], &[7, 8, 9, 10, 11])],
            5,
        );
        assert_eq!(r.n, 2);
        assert_eq!(r.tokens, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(r.mask, vec![0., 1., 0., 1., 1., 1., 1., 1.]);
    }
}
