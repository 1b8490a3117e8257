//! The arithmetic of the CPU attention kernel on plain slices, one (batch, head) group at a
//! time: scores, softmax and the weighted sum in one pass over a group's `lq × lk` score tile
//! (64 KiB at 128 × 128, in L2), and the backward from the saved logsumexp. The loops run along
//! contiguous rows (axpy form), so they vectorise; groups run in parallel (see `attention.rs`).
//!
//! Causal masks are bottom-right aligned, as burn's `attention_fallback`: key j is visible to
//! query i when j + lq ≤ i + lk. A query that sees no key gets a zero output and a zero gradient.

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

/// `kt[c][j] = k[j][c]`: keys as columns, so score rows are axpys.
fn transpose(k: &[f32], rows: usize, d: usize, kt: &mut [f32]) {
    for j in 0..rows {
        for c in 0..d {
            kt[c * rows + j] = k[j * d + c];
        }
    }
}

/// `row[j] = scale · Σ_c q[c] · kt[c][j]` for j in 0..n.
fn score_row(q: &[f32], kt: &[f32], lk: usize, n: usize, scale: f32, row: &mut [f32]) {
    row[..n].fill(0.0);
    for (c, &qc) in q.iter().enumerate() {
        let col = &kt[c * lk..c * lk + n];
        for (r, &kv) in row[..n].iter_mut().zip(col) {
            *r += qc * kv;
        }
    }
    for r in &mut row[..n] {
        *r *= scale;
    }
}

/// `dst += a · src`.
fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += a * s;
    }
}

/// Forward of one group. `q`: `[lq, d]`, `k`, `v`: `[lk, d]`; writes `out` `[lq, d]` and
/// `lse` `[lq]` (natural-log logsumexp of the scaled scores; −∞ for a query with no key).
/// `scratch` holds at least `lk · (d + 1)` floats.
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
    scratch.resize(lk * d + lk, 0.0);
    let (kt, row) = scratch.split_at_mut(lk * d);
    transpose(k, lk, d, kt);
    for i in 0..lq {
        let n = dims.visible(i);
        let o = &mut out[i * d..(i + 1) * d];
        o.fill(0.0);
        if n == 0 {
            lse[i] = f32::NEG_INFINITY;
            continue;
        }
        score_row(&q[i * d..(i + 1) * d], kt, lk, n, dims.scale, row);
        let max = row[..n].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for r in &mut row[..n] {
            *r = (*r - max).exp();
            sum += *r;
        }
        for (j, &p) in row[..n].iter().enumerate() {
            axpy(o, p, &v[j * d..(j + 1) * d]);
        }
        let inv = 1.0 / sum;
        for x in o.iter_mut() {
            *x *= inv;
        }
        lse[i] = max + sum.ln();
    }
}

/// Backward of one group: from the forward's inputs, output, logsumexp and the output's
/// gradient `d_out` `[lq, d]`, writes `dq` `[lq, d]`, `dk` and `dv` `[lk, d]`. `scratch` holds
/// at least `2 · lk · d + 2 · lk` floats.
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
    scratch.resize(2 * lk * d + 2 * lk, 0.0);
    let (kt, rest) = scratch.split_at_mut(lk * d);
    let (vt, rest) = rest.split_at_mut(lk * d);
    let (p, dp) = rest.split_at_mut(lk);
    transpose(k, lk, d, kt);
    transpose(v, lk, d, vt);
    dq.fill(0.0);
    dk.fill(0.0);
    dv.fill(0.0);
    for i in 0..lq {
        let n = dims.visible(i);
        if n == 0 {
            continue;
        }
        let qi = &q[i * d..(i + 1) * d];
        let go = &d_out[i * d..(i + 1) * d];
        // P_i = exp(s_i − lse_i), recomputed; dP_i = dO_i · Vᵀ.
        score_row(qi, kt, lk, n, scale, p);
        for x in &mut p[..n] {
            *x = (*x - lse[i]).exp();
        }
        dp[..n].fill(0.0);
        for (c, &g) in go.iter().enumerate() {
            axpy(&mut dp[..n], g, &vt[c * lk..c * lk + n]);
        }
        // D_i = dO_i · O_i = Σ_j P_ij dP_ij.
        let delta: f32 = go
            .iter()
            .zip(&out[i * d..(i + 1) * d])
            .map(|(a, b)| a * b)
            .sum();
        let dqi = &mut dq[i * d..(i + 1) * d];
        for j in 0..n {
            let pij = p[j];
            // dV_j += P_ij dO_i; dS_ij = P_ij (dP_ij − D_i) · scale.
            axpy(&mut dv[j * d..(j + 1) * d], pij, go);
            let ds = pij * (dp[j] - delta) * scale;
            axpy(dqi, ds, &k[j * d..(j + 1) * d]);
            axpy(&mut dk[j * d..(j + 1) * d], ds, qi);
        }
    }
}
