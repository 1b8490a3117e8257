//! The arithmetic of the CPU attention kernel on plain slices, one (batch, head) group at a
//! time: the group's `lq × lk` score tile (64 KiB at 128 × 128, in L2) is made by one GEMM,
//! turned into probabilities in place and multiplied into the values by a second; the backward
//! recomputes it from the saved logsumexp and needs four more. Groups run in parallel (see
//! `attention.rs`).
//!
//! Causal masks are bottom-right aligned, as burn's `attention_fallback`: key j is visible to
//! query i when j + lq ≤ i + lk. A query that sees no key gets a zero output and a zero gradient.

use super::gemm::{Mat, matmul, matmul_strided};
use super::simd::{exp_neg, max, sum_by, vectorized};

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
#[inline(always)]
fn softmax_row(dims: &Dims, i: usize, row: &mut [f32]) -> f32 {
    let n = dims.visible(i);
    row[n..].fill(0.0);
    if n == 0 {
        return f32::NEG_INFINITY;
    }
    // scale > 0, so the largest scaled score is scale · the largest score.
    let max = max(&row[..n]) * dims.scale;
    for r in &mut row[..n] {
        *r = exp_neg(*r * dims.scale - max);
    }
    let sum = sum_by(n, |j| row[j]);
    let inv = 1.0 / sum;
    for r in &mut row[..n] {
        *r *= inv;
    }
    max + sum.ln()
}

/// Where a group's gradients go: three packed `[l, d]` slices, or column blocks of one
/// `[l, 3w]` row-major slice (the qkv projection's gradient) at the given offsets.
#[derive(Debug)]
pub enum Dest<'a> {
    /// dq `[lq, d]`, dk and dv `[lk, d]`, packed.
    Split {
        /// dq.
        dq: &'a mut [f32],
        /// dk.
        dk: &'a mut [f32],
        /// dv.
        dv: &'a mut [f32],
    },
    /// One slice with rows `ld` apart; dq, dk, dv start at the three offsets.
    Packed {
        /// The slice.
        data: &'a mut [f32],
        /// Row stride.
        ld: usize,
        /// Offsets of dq, dk and dv.
        offsets: [usize; 3],
    },
}

impl Dest<'_> {
    /// (slice, row stride) of gradient `i` (0: dq, 1: dk, 2: dv), `d` columns wide.
    fn slot(&mut self, i: usize, d: usize) -> (&mut [f32], usize) {
        match self {
            Dest::Split { dq, dk, dv } => match i {
                0 => (&mut **dq, d),
                1 => (&mut **dk, d),
                _ => (&mut **dv, d),
            },
            Dest::Packed { data, ld, offsets } => (&mut data[offsets[i]..], *ld),
        }
    }
}

/// Row `i` of a view.
fn row<'a>(m: &Mat<'a>, i: usize) -> &'a [f32] {
    &m.data[i * m.ld..i * m.ld + m.cols]
}

/// Forward of one group. `q`: `lq × d`, `k`, `v`: `lk × d` (views); writes `out` (`lq × d`,
/// rows `out_ld` apart) and `lse` `[lq]` (natural-log logsumexp of the scaled scores; −∞ for a
/// query with no key). `scratch` grows to `lq · lk` floats.
#[allow(clippy::too_many_arguments)]
pub fn forward_group(
    dims: &Dims,
    q: Mat<'_>,
    k: Mat<'_>,
    v: Mat<'_>,
    out: &mut [f32],
    out_ld: usize,
    lse: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let Dims { lq, lk, .. } = *dims;
    scratch.resize(lq * lk, 0.0);
    let p = &mut scratch[..lq * lk];
    matmul(p, q, k.t(), false);
    vectorized(|| {
        for (i, row) in p.chunks_mut(lk).enumerate() {
            lse[i] = softmax_row(dims, i, row);
        }
    });
    matmul_strided(out, out_ld, Mat::new(p, lq, lk), v, false);
}

/// Backward of one group: from the forward's inputs, output, logsumexp and the output's
/// gradient `d_out` (views, `lq × d`), writes dq, dk and dv into `dest`. `scratch` grows to
/// `2 · lq · lk` floats.
#[allow(clippy::too_many_arguments)]
pub fn backward_group(
    dims: &Dims,
    q: Mat<'_>,
    k: Mat<'_>,
    v: Mat<'_>,
    out: Mat<'_>,
    lse: &[f32],
    d_out: Mat<'_>,
    mut dest: Dest<'_>,
    scratch: &mut Vec<f32>,
) {
    let Dims {
        lq, lk, d, scale, ..
    } = *dims;
    scratch.resize(2 * lq * lk, 0.0);
    let (p, ds) = scratch.split_at_mut(lq * lk);
    // P = exp(scale · QKᵀ − lse), recomputed; zero where masked.
    matmul(p, q, k.t(), false);
    vectorized(|| {
        for (i, row) in p.chunks_mut(lk).enumerate() {
            let n = dims.visible(i);
            for x in &mut row[..n] {
                *x = exp_neg(*x * scale - lse[i]);
            }
            row[n..].fill(0.0);
        }
    });
    // dV = Pᵀ dO; dP = dO Vᵀ.
    let (dv, ld) = dest.slot(2, d);
    matmul_strided(dv, ld, Mat::new(p, lq, lk).t(), d_out, false);
    matmul(ds, d_out, v.t(), false);
    // dS = P ⊙ (dP − D) · scale, D_i = dO_i · O_i.
    vectorized(|| {
        for i in 0..lq {
            let (g, o) = (row(&d_out, i), row(&out, i));
            let delta = sum_by(d, |c| g[c] * o[c]);
            let (pr, dr) = (&p[i * lk..(i + 1) * lk], &mut ds[i * lk..(i + 1) * lk]);
            for (g, &pij) in dr.iter_mut().zip(pr) {
                *g = pij * (*g - delta) * scale;
            }
        }
    });
    // dQ = dS K; dK = dSᵀ Q.
    let (dq, ld) = dest.slot(0, d);
    matmul_strided(dq, ld, Mat::new(ds, lq, lk), k, false);
    let (dk, ld) = dest.slot(1, d);
    matmul_strided(dk, ld, Mat::new(ds, lq, lk).t(), q, false);
}
