//! The arithmetic of the CPU attention kernel on plain slices, one (batch, head) group at a
//! time: the group's `lq × lk` score tile (64 KiB at 128 × 128, in L2) is made by one GEMM,
//! turned into probabilities in place and multiplied into the values by a second; the backward
//! recomputes it from the saved logsumexp and needs four more. Groups run in parallel (see
//! `attention.rs`).
//!
//! Causal masks are bottom-right aligned, as burn's `attention_fallback`: key j is visible to
//! query i when j + lq ≤ i + lk. A query that sees no key gets a zero output and a zero gradient.

use super::gemm::{Mat, matmul};

/// Sizes of one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dims {
    /// Query rows per group.
    pub lq: usize,
    /// Key rows per group.
    pub lk: usize,
    /// Head dim.
    pub d: usize,
    /// Score scale.
    pub scale: f32,
    /// Causal mask.
    pub causal: bool,
}

impl Dims {
    /// Keys visible to query `i`: `0..visible(i)`.
    pub fn visible(&self, i: usize) -> usize {
        if self.causal {
            (i + self.lk + 1).saturating_sub(self.lq).min(self.lk)
        } else {
            self.lk
        }
    }
}

/// Turns row `i` of scaled scores into probabilities in place (zeros past the visible keys)
/// and returns its logsumexp (−∞, with a zero row, when no key is visible).
fn softmax_row(dims: &Dims, i: usize, row: &mut [f32]) -> f32 {
    let n = dims.visible(i);
    row[n..].fill(0.0);
    if n == 0 {
        return f32::NEG_INFINITY;
    }
    let max = row[..n]
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x * dims.scale));
    let mut sum = 0.0f32;
    for r in &mut row[..n] {
        *r = (*r * dims.scale - max).exp();
        sum += *r;
    }
    let inv = 1.0 / sum;
    for r in &mut row[..n] {
        *r *= inv;
    }
    max + sum.ln()
}

/// Forward of one group. `q`: `[lq, d]`, `k`, `v`: `[lk, d]`; writes `out` `[lq, d]` and
/// `lse` `[lq]` (natural-log logsumexp of the scaled scores; −∞ for a query with no key).
/// `scratch` grows to `lq · lk` floats.
pub fn forward_group(
    dims: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    lse: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let Dims { lq, lk, d, .. } = *dims;
    scratch.resize(lq * lk, 0.0);
    let p = &mut scratch[..lq * lk];
    matmul(p, Mat::new(q, lq, d), Mat::new(k, lk, d).t(), false);
    for (i, row) in p.chunks_mut(lk).enumerate() {
        lse[i] = softmax_row(dims, i, row);
    }
    matmul(out, Mat::new(p, lq, lk), Mat::new(v, lk, d), false);
}

/// Backward of one group: from the forward's inputs, output, logsumexp and the output's
/// gradient `d_out` `[lq, d]`, writes `dq` `[lq, d]`, `dk` and `dv` `[lk, d]`. `scratch` grows
/// to `2 · lq · lk` floats.
#[allow(clippy::too_many_arguments)]
pub fn backward_group(
    dims: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    d_out: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let Dims {
        lq, lk, d, scale, ..
    } = *dims;
    scratch.resize(2 * lq * lk, 0.0);
    let (p, ds) = scratch.split_at_mut(lq * lk);
    // P = exp(scale · QKᵀ − lse), recomputed; zero where masked.
    matmul(p, Mat::new(q, lq, d), Mat::new(k, lk, d).t(), false);
    for (i, row) in p.chunks_mut(lk).enumerate() {
        let n = dims.visible(i);
        for x in &mut row[..n] {
            *x = (*x * scale - lse[i]).exp();
        }
        row[n..].fill(0.0);
    }
    // dV = Pᵀ dO; dP = dO Vᵀ.
    matmul(dv, Mat::new(p, lq, lk).t(), Mat::new(d_out, lq, d), false);
    matmul(ds, Mat::new(d_out, lq, d), Mat::new(v, lk, d).t(), false);
    // dS = P ⊙ (dP − D) · scale, D_i = dO_i · O_i.
    for i in 0..lq {
        let row = i * d..(i + 1) * d;
        let delta: f32 = d_out[row.clone()]
            .iter()
            .zip(&out[row])
            .map(|(a, b)| a * b)
            .sum();
        let (pr, dr) = (&p[i * lk..(i + 1) * lk], &mut ds[i * lk..(i + 1) * lk]);
        for (g, &pij) in dr.iter_mut().zip(pr) {
            *g = pij * (*g - delta) * scale;
        }
    }
    // dQ = dS K; dK = dSᵀ Q.
    matmul(dq, Mat::new(ds, lq, lk), Mat::new(k, lk, d), false);
    matmul(dk, Mat::new(ds, lq, lk).t(), Mat::new(q, lq, d), false);
}
