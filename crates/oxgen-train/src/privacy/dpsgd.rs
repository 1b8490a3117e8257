//! DP-SGD (Abadi et al. 2016) inside the shared training loop: Poisson sampling, per-sample
//! gradients clipped to norm C (by the taps of [`oxgen_models::ops::per_sample`]), Gaussian
//! noise of standard deviation σ·C added once per step to the clipped sum, divided by the
//! expected batch size, then the family's own optimizer.
//!
//! ```text
//! B_t ~ Poisson(q) over the N examples
//! g̃ = (Σ_{i∈B_t} gᵢ · min(1, C/‖gᵢ‖) + N(0, σ²C²I)) / (qN)
//! ```

use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Gradients, Tensor};
use oxgen_models::ops::denoise::seeded_noise;
use oxgen_models::ops::per_sample::{self, Tap};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{AccountantKind, Ledger, Phase, sigma::sigma_for_epsilon, validate_delta};
use crate::trainer::StepOutput;
use crate::trainer::rng::{Stream, step_rng, step_seed};
use crate::{Error, Result};

/// How batches are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// Each example joins each batch with probability q: what the accountants assume.
    #[default]
    Poisson,
    /// Fixed-size shuffled batches. The accountants' ε assumes Poisson sampling and does not
    /// strictly hold for these; reports label it.
    FixedSize,
}

/// Differentially private training. Give a target `epsilon` (σ is then found, as Opacus's
/// `make_private_with_epsilon`) or a `sigma` (with an `epsilon` too, that is a budget the run
/// refuses to exceed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpConfig {
    /// Target ε at the end of training.
    pub epsilon: Option<f64>,
    /// δ; must be below 1/N.
    pub delta: f64,
    /// Per-sample clipping norm C.
    pub clip: f64,
    /// Noise multiplier σ, instead of a target ε.
    pub sigma: Option<f64>,
    /// The accountant.
    pub accountant: AccountantKind,
    /// Batch sampling.
    pub sampling: Sampling,
}

impl Default for DpConfig {
    fn default() -> Self {
        DpConfig {
            epsilon: None,
            delta: 1e-5,
            clip: 1.0,
            sigma: None,
            accountant: AccountantKind::Rdp,
            sampling: Sampling::Poisson,
        }
    }
}

/// What a DP run settled on before its first step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpPlan {
    /// The config.
    pub config: DpConfig,
    /// Sampling rate q = batch size / N.
    pub q: f64,
    /// The noise multiplier used.
    pub sigma: f64,
    /// Examples N.
    pub n: usize,
    /// The ε the accountant gives for the planned steps.
    pub planned_epsilon: f64,
}

impl DpConfig {
    /// Checks the config against `n` examples, batches of `batch` and `steps` steps, and
    /// settles σ.
    pub fn plan(&self, n: usize, batch: usize, steps: usize) -> Result<DpPlan> {
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            return Err(Error::Privacy {
                parameter: "clip",
                reason: format!("the clipping norm must be positive, got {}", self.clip),
            });
        }
        validate_delta(self.delta, Some(n))?;
        let q = batch as f64 / n as f64;
        Phase {
            sigma: 1.0,
            q,
            steps: 0,
        }
        .validate()?;
        let sigma = match (self.sigma, self.epsilon) {
            (Some(s), _) => s,
            (None, Some(e)) => {
                sigma_for_epsilon(self.accountant, e, self.delta, q, steps as u64, 0.01)?
            }
            (None, None) => {
                return Err(Error::Privacy {
                    parameter: "epsilon",
                    reason: "DP training needs a target ε (--dp-epsilon) or σ (--dp-sigma)".into(),
                });
            }
        };
        let h = [Phase {
            sigma,
            q,
            steps: steps as u64,
        }];
        h[0].validate()?;
        let planned_epsilon = super::epsilon(self.accountant, &h, self.delta)?;
        if let Some(budget) = self.epsilon
            && planned_epsilon > budget
        {
            return Err(Error::Privacy {
                parameter: "epsilon",
                reason: format!(
                    "σ = {sigma} spends ε = {planned_epsilon:.4} in {steps} steps of q = {q:.5}, over the budget of {budget}; raise σ, or train fewer steps"
                ),
            });
        }
        Ok(DpPlan {
            config: self.clone(),
            q,
            sigma,
            n,
            planned_epsilon,
        })
    }
}

impl DpPlan {
    /// An empty ledger for this plan.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            accountant: self.config.accountant,
            delta: self.config.delta,
            history: Vec::new(),
        }
    }

    /// Step `step`'s batch: Poisson with rate q (possibly empty), or `batch` shuffled rows.
    pub fn batch(&self, seed: u64, step: usize, batch: usize) -> Vec<usize> {
        match self.config.sampling {
            Sampling::Poisson => {
                let mut rng = step_rng(seed, step, Stream::Privacy);
                (0..self.n)
                    .filter(|_| rng.random::<f64>() < self.q)
                    .collect()
            }
            Sampling::FixedSize => crate::trainer::rng::batch_indices(self.n, batch, seed, step),
        }
    }
}

/// What one DP step measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DpStats {
    /// Rows in the batch.
    pub batch: usize,
    /// Mean per-sample gradient norm before clipping.
    pub mean_norm: f64,
    /// Share of rows clipped.
    pub clipped: f64,
}

/// The private gradients in the parameters' shapes, plus the public ones.
struct Shapes<'a> {
    flat: &'a mut Vec<(ParamId, Tensor<1>)>,
    public: Option<&'a GradientsParams>,
    out: GradientsParams,
}

impl ModuleVisitor for Shapes<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let private = self
            .flat
            .iter()
            .position(|(id, _)| *id == p.id)
            .map(|k| self.flat.swap_remove(k).1.reshape(p.val().dims()));
        let public = self.public.and_then(|g| g.get::<D>(p.id));
        let g = match (private, public) {
            (Some(a), Some(b)) => a + b,
            (Some(g), None) | (None, Some(g)) => g,
            (None, None) => return,
        };
        self.out.register::<D>(p.id, g);
    }
}

/// Compares the taps' summed per-sample gradients with the plain ones.
struct SumCheck<'a> {
    plain: &'a GradientsParams,
    sums: Vec<(ParamId, Tensor<1>)>,
    bad: Vec<Vec<usize>>,
}

impl ModuleVisitor for SumCheck<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let (Some(k), Some(g)) = (
            self.sums.iter().position(|(id, _)| *id == p.id),
            self.plain.get::<D>(p.id),
        ) else {
            return;
        };
        let (_, s) = self.sums.swap_remove(k);
        let n = s.dims()[0];
        let diff = (s.clone() - g.reshape([n]))
            .abs()
            .max()
            .into_scalar::<f32>();
        let scale = s.abs().max().into_scalar::<f32>().max(1e-12);
        if !(diff <= 1e-3 * scale) {
            self.bad.push(p.val().dims().to_vec());
        }
    }
}

struct Untapped<'a> {
    grads: &'a GradientsParams,
    tapped: &'a HashSet<ParamId>,
    missing: Vec<Vec<usize>>,
}

impl ModuleVisitor for Untapped<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if self.grads.get::<D>(p.id).is_some() && !self.tapped.contains(&p.id) {
            self.missing.push(p.val().dims().to_vec());
        }
    }
}

/// Adds `g` to `id`'s entry of `acc` (a new entry if it has none).
fn add_into<const D: usize>(acc: &mut Vec<(ParamId, Tensor<D>)>, id: ParamId, g: Tensor<D>) {
    match acc.iter_mut().find(|(i, _)| *i == id) {
        Some((_, a)) => *a = a.clone() + g,
        None => acc.push((id, g)),
    }
}

/// Each sample's squared gradient norm over every parameter the `taps` cover, `[B]`: by each
/// tap's own norms (ghost clipping), except for a parameter with several taps (a head tied to
/// its embedding), whose per-sample parts are materialised and summed first.
pub fn per_sample_sq_norms(taps: &[Tap], grads: &Gradients) -> Tensor<1> {
    let mut uses: HashMap<ParamId, usize> = HashMap::new();
    for id in taps.iter().flat_map(Tap::params) {
        *uses.entry(id).or_default() += 1;
    }
    let shared: HashSet<ParamId> = uses
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id)
        .collect();
    let row_sq = |g: Tensor<2>| {
        let b = g.dims()[0];
        g.square().sum_dim(1).reshape([b])
    };
    let mut sq: Option<Tensor<1>> = None;
    let mut add = |s: Tensor<1>| sq = Some(sq.take().map_or(s.clone(), |a| a + s));
    let mut merged: Vec<(ParamId, Tensor<2>)> = Vec::new();
    for t in taps {
        if !t.params().iter().any(|p| shared.contains(p)) {
            add(t.sq_norms(grads));
            continue;
        }
        for (id, g) in t.per_sample(grads) {
            if shared.contains(&id) {
                add_into(&mut merged, id, g);
            } else {
                add(row_sq(g));
            }
        }
    }
    for (_, g) in merged {
        add(row_sq(g));
    }
    sq.expect("at least one tap")
}

/// Each sample's clipping factor min(1, C/‖∇θᵢ‖) from its gradient `norms`, `[B]`.
fn clip_factors(norms: Tensor<1>, clip: f64) -> Tensor<1> {
    norms
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(clip)
        .clamp_max(1.0)
}

/// Σᵢ scaleᵢ·∇θᵢ over every tap, one flattened entry per parameter.
fn weighted_sums(taps: &[Tap], grads: &Gradients, scale: &Tensor<1>) -> Vec<(ParamId, Tensor<1>)> {
    let mut flat = Vec::new();
    for (id, g) in taps.iter().flat_map(|t| t.weighted_sum(grads, scale)) {
        add_into(&mut flat, id, g);
    }
    flat
}

/// Σᵢ min(1, C/‖∇ℓᵢ‖)·∇ℓᵢ / `divisor` for a loss that reads no private row (a GAN
/// discriminator's loss on generated rows), `loss_sum` the sum of its per-row losses, as
/// gradients for [`dp_update`]'s `public`, and the loss. Clipping it as the private part is
/// clipped keeps the two on one scale: an unclipped public gradient next to a clipped private
/// one tips a discriminator toward calling everything generated.
pub fn clipped_public<M: Module>(
    model: &M,
    loss_sum: impl FnOnce(&M) -> Tensor<1>,
    clip: f64,
    divisor: f64,
) -> (GradientsParams, f64) {
    let (loss, taps) = per_sample::record(|| loss_sum(model));
    let value = loss.clone().into_scalar::<f32>() as f64;
    let grads = loss.backward();
    let mut flat: Vec<(ParamId, Tensor<1>)> = Vec::new();
    if !taps.is_empty() {
        let norms = per_sample_sq_norms(&taps, &grads).sqrt();
        let scale = clip_factors(norms, clip).div_scalar(divisor);
        flat = weighted_sums(&taps, &grads, &scale);
    }
    let mut shapes = Shapes {
        flat: &mut flat,
        public: None,
        out: GradientsParams::new(),
    };
    model.visit(&mut shapes);
    (shapes.out, value)
}

/// One DP-SGD update of `model`. `loss_sum` computes the *sum* of per-sample losses of the
/// rows `rows` (an empty batch runs on one row with weight 0, so that the step is noise only).
/// Returns the model, the mean loss, and the step's statistics. A parameter that receives a
/// gradient but no per-sample tap is refused: nothing trains without privacy. With `verify`,
/// the taps' summed per-sample gradients are also held against the plain gradient, which
/// catches a tapped parameter used again outside its layer.
///
/// `public` is a gradient of a loss that reads no private row (a GAN discriminator's loss on
/// generated data): added as it is after the private part is clipped, noised and averaged.
#[allow(clippy::too_many_arguments)]
pub fn dp_update<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    plan: &DpPlan,
    rows: usize,
    loss_sum: impl FnOnce(&M) -> Tensor<1>,
    public: Option<GradientsParams>,
    lr: f64,
    seed: u64,
    step: usize,
    verify: bool,
) -> Result<(M, StepOutput, DpStats)> {
    let sum = clipped_sum(&model, loss_sum, plan.config.clip, rows == 0, verify)?;
    Ok(noised_update(
        model, optim, plan, sum, rows, public, lr, seed, step,
    ))
}

/// The private part of a DP-SGD step on some rows (all of them, or one data-parallel
/// replica's): Σᵢ min(1, C/‖∇ℓᵢ‖)·∇ℓᵢ flattened per parameter in the taps' order, the sum of
/// the rows' losses and their gradient norms (read back; none for an empty batch).
pub struct ClippedSum {
    flat: Vec<(ParamId, Tensor<1>)>,
    loss: f64,
    norms: Vec<f32>,
}

impl ClippedSum {
    /// The sum of `parts` (replicas in order) on `device`: the first part's parameter order
    /// is kept, so the noise lands where one device's would.
    pub fn merge(parts: Vec<ClippedSum>, device: &burn::tensor::Device) -> ClippedSum {
        let mut parts = parts.into_iter();
        let mut acc = parts.next().expect("at least one part");
        for p in parts {
            for (id, g) in p.flat {
                add_into(&mut acc.flat, id, g.to_device(device));
            }
            acc.loss += p.loss;
            acc.norms.extend(p.norms);
        }
        acc
    }
}

/// [`ClippedSum`] of `loss_sum` (the sum of per-row losses) at `model`; `empty`: the rows are a
/// stand-in for an empty batch, weighted 0. Refuses a model with untapped parameters, and with
/// `verify` one whose taps disagree with the plain gradient (see [`dp_update`]).
pub fn clipped_sum<M: Module>(
    model: &M,
    loss_sum: impl FnOnce(&M) -> Tensor<1>,
    clip: f64,
    empty: bool,
    verify: bool,
) -> Result<ClippedSum> {
    let (loss, taps) = per_sample::record(|| loss_sum(model));
    let value = loss.clone().into_scalar::<f32>() as f64;
    let grads = loss.backward();
    let tapped: HashSet<ParamId> = taps.iter().flat_map(Tap::params).collect();
    let mut flat: Vec<(ParamId, Tensor<1>)> = Vec::new();
    let mut norms_host = Vec::new();
    if !taps.is_empty() {
        let norms = per_sample_sq_norms(&taps, &grads).sqrt();
        let mut scale = clip_factors(norms.clone(), clip);
        if empty {
            scale = scale.mul_scalar(0.0);
        } else {
            norms_host = norms
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default();
        }
        flat = weighted_sums(&taps, &grads, &scale);
    }
    // With `verify`: the taps' unclipped sum, to hold against the plain gradient below.
    let unclipped: Vec<(ParamId, Tensor<1>)> = match (verify, flat.first()) {
        (true, Some((_, g))) if !empty => {
            let rows = norms_host.len();
            weighted_sums(&taps, &grads, &Tensor::<1>::ones([rows], &g.device()))
        }
        _ => Vec::new(),
    };
    let plain = GradientsParams::from_grads(grads, model);
    if !unclipped.is_empty() {
        let mut v = SumCheck {
            plain: &plain,
            sums: unclipped,
            bad: Vec::new(),
        };
        model.visit(&mut v);
        if !v.bad.is_empty() {
            return Err(Error::Privacy {
                parameter: "model",
                reason: format!(
                    "{} tapped parameter(s) (shapes {:?}) also get gradient from an untapped use (a head tied to the embedding?): their per-sample norms would be wrong",
                    v.bad.len(),
                    v.bad
                ),
            });
        }
    }
    let mut check = Untapped {
        grads: &plain,
        tapped: &tapped,
        missing: Vec::new(),
    };
    model.visit(&mut check);
    if !check.missing.is_empty() {
        return Err(Error::Privacy {
            parameter: "model",
            reason: format!(
                "{} parameter(s) (shapes {:?}) belong to layers with no per-sample gradient support; DP-SGD supports Linear, Conv2d, Embedding, LayerNorm and GroupNorm layers",
                check.missing.len(),
                check.missing
            ),
        });
    }
    Ok(ClippedSum {
        flat,
        loss: value,
        norms: norms_host,
    })
}

/// The rest of a DP-SGD step from the clipped sum of its `rows` rows: noise σ·C once, the
/// average over the expected batch size qN, the `public` gradient, the optimizer's update.
#[allow(clippy::too_many_arguments)]
pub fn noised_update<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    plan: &DpPlan,
    sum: ClippedSum,
    rows: usize,
    public: Option<GradientsParams>,
    lr: f64,
    seed: u64,
    step: usize,
) -> (M, StepOutput, DpStats) {
    let c = plan.config.clip;
    let ClippedSum {
        mut flat,
        loss,
        norms,
    } = sum;
    let mut stats = DpStats {
        batch: rows,
        mean_norm: 0.0,
        clipped: 0.0,
    };
    if rows > 0 && !norms.is_empty() {
        stats.mean_norm = norms.iter().map(|&v| f64::from(v)).sum::<f64>() / rows as f64;
        stats.clipped = norms.iter().filter(|&&v| f64::from(v) > c).count() as f64 / rows as f64;
    }
    // Noise σ·C once per step, then the average over the expected batch size qN.
    let noise_seed = step_seed(seed, step, Stream::Privacy);
    let expected = plan.q * plan.n as f64;
    for (k, (_, g)) in flat.iter_mut().enumerate() {
        let n = g.dims()[0];
        let z = seeded_noise(noise_seed, k as u32, n, &g.device());
        *g = (g.clone() + z.mul_scalar(plan.sigma * c)).div_scalar(expected);
    }
    let mut shapes = Shapes {
        flat: &mut flat,
        public: public.as_ref(),
        out: GradientsParams::new(),
    };
    model.visit(&mut shapes);
    let out = shapes.out;
    let model = optim.step(lr, model, out);
    let value = loss / rows.max(1) as f64;
    (model, StepOutput::loss(value, stats.mean_norm), stats)
}
