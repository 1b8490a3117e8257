//! Scoring given text under a NAF combination: the log-probability that the combined model p
//! gives each token of a batch of sequences, for exposure, extraction and validation NLL.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use super::{NafRule, combine};
use crate::ar::Gpt;

/// log p(x_i | x_<i) for i = 1..t under the `rule` combination of the shard `models`' next-token
/// distributions (at temperature 1), row by row.
///
/// # Shapes
/// - `tokens`: `[b, t]`, 2 ≤ t ≤ every model's context; returns `b` rows of `t − 1` values.
///
/// Errors on fewer than two models, fewer than two tokens, a sequence longer than a model's
/// context, vocabularies that differ, and a position where the models share no token.
pub fn naf_token_log_probs(
    models: &[&Gpt],
    rule: NafRule,
    tokens: Tensor<2, Int>,
) -> Result<Vec<Vec<f64>>, String> {
    let [b, t] = tokens.dims();
    if models.len() < 2 {
        return Err(format!(
            "NAF scoring combines at least 2 shard models, got {}",
            models.len()
        ));
    }
    if t < 2 {
        return Err("NAF scoring needs at least two tokens".into());
    }
    if let Some(m) = models.iter().find(|m| m.context() < t - 1) {
        return Err(format!(
            "sequences of {t} tokens do not fit a context of {}",
            m.context()
        ));
    }
    let targets: Vec<i64> = tokens
        .clone()
        .slice([0..b, 1..t])
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| format!("{e:?}"))?;
    let inputs = tokens.slice([0..b, 0..t - 1]);
    let mut vocab = None;
    let per_model: Vec<Vec<f32>> = models
        .iter()
        .map(|m| {
            let out = log_softmax(m.forward(inputs.clone()), 2);
            let [_, _, v] = out.dims();
            if *vocab.get_or_insert(v) != v {
                return Err("the shard models' vocabularies differ".to_string());
            }
            out.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| format!("{e:?}"))
        })
        .collect::<Result<_, _>>()?;
    let v = vocab.unwrap_or(0);
    let mut dists = vec![vec![0.0f64; v]; models.len()];
    let mut out = Vec::with_capacity(b);
    for row in 0..b {
        let mut lp = Vec::with_capacity(t - 1);
        for pos in 0..t - 1 {
            let at = (row * (t - 1) + pos) * v;
            for (d, q) in dists.iter_mut().zip(&per_model) {
                for (x, &l) in d.iter_mut().zip(&q[at..at + v]) {
                    *x = (l as f64).exp();
                }
            }
            let refs: Vec<&[f64]> = dists.iter().map(Vec::as_slice).collect();
            let c = combine(rule, &refs)?;
            lp.push(c.probs[targets[row * (t - 1) + pos] as usize].ln());
        }
        out.push(lp);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ar::naf::generate_naf;
    use burn::tensor::{Device, TensorData};

    fn tiny(seed: u64) -> Gpt {
        crate::ar::naf::tiny_gpt(7, seed, 1.0)
    }

    /// The combined log-probability of a NAF output, scored in one batch, equals what its
    /// generation recorded: log p = log qᵢ + log-ratioᵢ summed over the tokens, for each rule.
    /// Two copies of one model score a sequence as that model does.
    #[test]
    fn scoring_agrees_with_generation() {
        let (a, b) = (tiny(1), tiny(2));
        let device = Device::flex();
        for rule in [NafRule::CpK, NafRule::CpDelta] {
            let (out, ledger) = generate_naf(&[&a, &b], rule, &[3], 6, 1.0, 4, &device).unwrap();
            let seq: Vec<i64> = std::iter::once(3)
                .chain(out.iter().copied())
                .map(i64::from)
                .collect();
            let x = Tensor::<2, Int>::from_data(TensorData::new(seq.clone(), [1, 7]), &device);
            let lp: f64 = naf_token_log_probs(&[&a, &b], rule, x.clone()).unwrap()[0]
                .iter()
                .sum();
            let qa = a.log_prob(x).into_scalar::<f32>() as f64;
            assert!(
                (lp - (qa + ledger.log_ratio[0])).abs() < 1e-4,
                "{lp} vs {qa} + {ledger:?}"
            );
        }
        let x = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 2, 3, 4, 5, 6, 0, 3, 3, 2], [2, 5]),
            &device,
        );
        let same = naf_token_log_probs(&[&a, &a], NafRule::CpK, x.clone()).unwrap();
        let direct: Vec<f32> = a
            .token_log_probs(x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for (s, d) in same.concat().iter().zip(&direct) {
            assert!((s - *d as f64).abs() < 1e-5, "{s} vs {d}");
        }
        let long = Tensor::<2, Int>::zeros([1, 10], &device);
        assert!(naf_token_log_probs(&[&a, &b], NafRule::CpK, long).is_err());
        let one = Tensor::<2, Int>::zeros([1, 3], &device);
        assert!(naf_token_log_probs(&[&a], NafRule::CpK, one).is_err());
    }
}
