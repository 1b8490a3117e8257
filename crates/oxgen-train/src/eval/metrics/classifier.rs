//! Classifier-based metrics for labelled data: a small classifier trained on the dataset, the
//! Fréchet distance between real and generated data in its feature space (FID's recipe, Heusel
//! et al., 2017, with this classifier in place of Inception), and its accuracy on
//! class-conditional samples.

use std::path::Path;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::checkpoint::{load_weights, to_bytes};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::trainer::optim::{seeded_init, update};
use crate::trainer::rng::batch_indices;
use crate::trainer::{
    self, Decay, LoopSpec, Schedule, StepContext, StepOutput, TrainOptions, TrainStep,
};

/// Width of the feature layer the Fréchet distance is measured in.
pub const FEATURES: usize = 32;
const STEPS: usize = 1500;

/// An MLP classifier: input → 128 → [`FEATURES`] → classes, ReLU between.
#[derive(Module, Debug)]
pub struct Classifier {
    layers: Vec<Linear>,
}

impl Classifier {
    fn new(input: usize, classes: usize, device: &Device) -> Self {
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        Self {
            layers: vec![lin(input, 128), lin(128, FEATURES), lin(FEATURES, classes)],
        }
    }

    /// Penultimate-layer features, `[b, FEATURES]`.
    pub fn features(&self, x: Tensor<2>) -> Tensor<2> {
        relu(self.layers[1].forward(relu(self.layers[0].forward(x))))
    }

    /// Class logits, `[b, classes]`.
    pub fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        self.layers[2].forward(self.features(x))
    }

    /// The most likely class of each of the `n` rows of `x` (`[n·f]` row-major).
    pub fn predict(&self, x: &[f32], n: usize, device: &Device) -> Vec<u32> {
        if n == 0 {
            return Vec::new();
        }
        let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, x.len() / n]), device);
        self.logits(t)
            .argmax(1)
            .reshape([n])
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("i64")
            .into_iter()
            .map(|c| c as u32)
            .collect()
    }

    /// The share of rows of `x` (`[n·f]` row-major) classified as `labels`.
    pub fn accuracy(&self, x: &[f32], labels: &[u32], device: &Device) -> f64 {
        let n = labels.len();
        self.predict(x, n, device)
            .iter()
            .zip(labels)
            .filter(|(p, y)| p == y)
            .count() as f64
            / n.max(1) as f64
    }

    /// Features of rows `x` (`[n·f]` row-major) on the host, `[n][FEATURES]` flattened.
    pub fn host_features(&self, x: &[f32], f: usize, device: &Device) -> Vec<f64> {
        let n = x.len() / f;
        let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, f]), device);
        self.features(t)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32")
            .into_iter()
            .map(f64::from)
            .collect()
    }
}

/// The classifier's [`TrainStep`]: cross-entropy on seeded batches of 128 labelled rows.
struct ClassifierStep<'a> {
    train: &'a Dataset,
    labels: &'a [u32],
    seed: u64,
    loss_fn: burn::nn::loss::CrossEntropyLoss,
    device: Device,
    model: Classifier,
    optim: ModuleOptimizer,
}

impl TrainStep for ClassifierStep<'_> {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let idx = batch_indices(self.train.len(), 128, self.seed ^ 0xc1a5, ctx.step);
        let x = self.train.batch(&idx, &self.device);
        let y: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [idx.len()]), &self.device);
        let loss = self.loss_fn.forward(self.model.logits(x), y);
        let (model, out) = update(
            self.model.clone(),
            &mut self.optim,
            loss,
            ctx.lr,
            0.0,
            false,
        );
        self.model = model;
        Ok(out)
    }

    /// Cached as a plain weights file, not as a run: no checkpoint state.
    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        Ok(Vec::new())
    }

    fn restore(&mut self, _: &crate::checkpoint::Loaded) -> Result<()> {
        Ok(())
    }
}

/// Trains the classifier on `train`'s labelled rows (AdamW, 1,500 steps of 128), or loads it
/// from `cache` when that file exists and fits; saves it there after training.
pub fn classifier(train: &Dataset, cache: &Path, seed: u64, device: &Device) -> Result<Classifier> {
    let labels = train
        .labels
        .as_ref()
        .ok_or_else(|| Error::Config(format!("`{}` has no labels", train.name)))?;
    let classes = train.num_classes.unwrap_or(1);
    let f = train.shape.numel();
    if let Ok(bytes) = std::fs::read(cache) {
        return load_weights(Classifier::new(f, classes, device), &bytes, cache);
    }
    let ad = device.clone().autodiff();
    let model = seeded_init(device, seed, || Classifier::new(f, classes, &ad));
    let mut step = ClassifierStep {
        train,
        labels,
        seed,
        loss_fn: CrossEntropyLossConfig::new().init(&ad),
        device: ad,
        model,
        optim: AdamWConfig::new().with_weight_decay(1e-4).init(),
    };
    // The shared loop, in memory: constant rate, no clipping, no checkpoints.
    let schedule = Schedule {
        decay: Decay::Constant,
        warmup_steps: 0,
        min_lr_ratio: 1.0,
    };
    let config = serde_json::json!({ "steps": STEPS, "lr": 1e-3, "batch_size": 128 });
    let spec = LoopSpec {
        family: "classifier",
        config: &config,
        must_match: &[],
        shape: train.shape,
        seed,
        steps: STEPS,
        lr: 1e-3,
        schedule: &schedule,
        rows_per_step: 128,
        checkpoint_every: 0,
        eval_every: 0,
        max_bad_steps: 20,
        ema_decay: None,
        title: "classifier".into(),
        smaller: None,
    };
    let opts = TrainOptions {
        device: device.clone(),
        ..TrainOptions::default()
    };
    trainer::run(&mut step, &spec, None, &opts)?;
    let model = step.model;
    let model = model.valid();
    std::fs::write(cache, to_bytes(&model)?)
        .map_err(|e| Error::io("classifier cache", cache, e))?;
    Ok(model)
}

/// Mean and covariance (unbiased) of `n × d` row-major features.
pub fn moments(x: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / d;
    let mut mu = vec![0.0; d];
    for row in x.chunks(d) {
        for (m, v) in mu.iter_mut().zip(row) {
            *m += v / n as f64;
        }
    }
    let mut cov = vec![0.0; d * d];
    for row in x.chunks(d) {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += (row[i] - mu[i]) * (row[j] - mu[j]) / (n as f64 - 1.0).max(1.0);
            }
        }
    }
    (mu, cov)
}

/// Eigen-decomposition of a symmetric `d × d` matrix by cyclic Jacobi rotations: (eigenvalues,
/// eigenvectors as the columns of a row-major matrix).
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v: Vec<f64> = (0..d * d).map(|i| (i / d == i % d) as u8 as f64).collect();
    for _ in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * d + j].powi(2))
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = m[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q * d + q] - m[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (mkp, mkq) = (m[k * d + p], m[k * d + q]);
                    m[k * d + p] = c * mkp - s * mkq;
                    m[k * d + q] = s * mkp + c * mkq;
                }
                for k in 0..d {
                    let (mpk, mqk) = (m[p * d + k], m[q * d + k]);
                    m[p * d + k] = c * mpk - s * mqk;
                    m[q * d + k] = s * mpk + c * mqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| m[i * d + i]).collect(), v)
}

/// The Fréchet distance between Gaussians (μ₁, Σ₁) and (μ₂, Σ₂):
/// ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½).
pub fn frechet(mu1: &[f64], s1: &[f64], mu2: &[f64], s2: &[f64]) -> f64 {
    let d = mu1.len();
    let (w, v) = symmetric_eigen(s1, d);
    // Σ₁^½ = V diag(√w) Vᵀ.
    let mut root = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            root[i * d + j] = (0..d)
                .map(|k| v[i * d + k] * w[k].max(0.0).sqrt() * v[j * d + k])
                .sum();
        }
    }
    let mul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut c = vec![0.0; d * d];
        for i in 0..d {
            for k in 0..d {
                let aik = a[i * d + k];
                for j in 0..d {
                    c[i * d + j] += aik * b[k * d + j];
                }
            }
        }
        c
    };
    let inner = mul(&mul(&root, s2), &root);
    let sym: Vec<f64> = (0..d * d)
        .map(|i| 0.5 * (inner[i] + inner[(i % d) * d + i / d]))
        .collect();
    let tr_root: f64 = symmetric_eigen(&sym, d)
        .0
        .iter()
        .map(|e| e.max(0.0).sqrt())
        .sum();
    let dmu: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b).powi(2)).sum();
    let tr = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    (dmu + tr(s1) + tr(s2) - 2.0 * tr_root).max(0.0)
}

/// The Fréchet distance between two sets of `d`-dimensional features.
pub fn frechet_distance(a: &[f64], b: &[f64], d: usize) -> f64 {
    let (m1, s1) = moments(a, d);
    let (m2, s2) = moments(b, d);
    frechet(&m1, &s1, &m2, &s2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed form for diagonal covariances: ‖Δμ‖² + Σ (σ₁ − σ₂)².
    #[test]
    fn frechet_matches_the_diagonal_closed_form() {
        let (mu1, mu2) = (vec![0.0, 1.0, -2.0], vec![1.0, 1.0, 0.0]);
        let (v1, v2) = ([1.0, 4.0, 0.25], [9.0, 1.0, 0.25]);
        let diag = |v: &[f64; 3]| {
            let mut m = vec![0.0; 9];
            for i in 0..3 {
                m[i * 3 + i] = v[i];
            }
            m
        };
        let want = 1.0 + 4.0 + (1.0f64 - 3.0).powi(2) + (2.0f64 - 1.0).powi(2) + 0.0;
        let got = frechet(&mu1, &diag(&v1), &mu2, &diag(&v2));
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert!(frechet(&mu1, &diag(&v1), &mu1, &diag(&v1)).abs() < 1e-9);
    }

    /// A rotated (non-diagonal) covariance: FD to itself is 0, and to the same covariance with
    /// a shifted mean is the squared shift.
    #[test]
    fn frechet_of_full_covariances() {
        let s = vec![2.0, 0.8, 0.3, 0.8, 1.0, -0.2, 0.3, -0.2, 0.5];
        let mu = vec![0.1, 0.2, 0.3];
        assert!(frechet(&mu, &s, &mu, &s).abs() < 1e-9);
        let shifted = vec![0.1, 0.2, 1.3];
        assert!((frechet(&mu, &s, &shifted, &s) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn jacobi_recovers_eigenvalues() {
        let (w, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let mut w = w;
        w.sort_by(f64::total_cmp);
        assert!(
            (w[0] - 1.0).abs() < 1e-12 && (w[1] - 3.0).abs() < 1e-12,
            "{w:?}"
        );
    }

    /// The digits classifier is accurate on held-out digits, and in its feature space two
    /// held-out halves are far closer than held-out digits and the same digits turned 180°, or
    /// uniform noise.
    #[test]
    fn digits_classifier_and_frechet_distance() {
        let device = Device::flex();
        let d = crate::data::digits8();
        let (train, val) = d.split(0.2, 0);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("classifier.bpk");
        let c = classifier(&train, &cache, 0, &device).unwrap();
        let acc = c.accuracy(&val.x, val.labels.as_ref().unwrap(), &device);
        assert!(acc > 0.93, "held-out accuracy {acc}");
        // Cached: loads back with the same predictions.
        let again = classifier(&train, &cache, 0, &device).unwrap();
        assert_eq!(
            again.accuracy(&val.x, val.labels.as_ref().unwrap(), &device),
            acc
        );
        let f = 64;
        let half = val.len() / 2;
        let fa = c.host_features(&val.x[..half * f], f, &device);
        let fb = c.host_features(&val.x[half * f..2 * half * f], f, &device);
        let noise: Vec<f32> = val.x[..half * f].iter().rev().copied().collect();
        let fnoise = c.host_features(&noise, f, &device);
        let floor = frechet_distance(&fa, &fb, FEATURES);
        let turned = frechet_distance(&fa, &fnoise, FEATURES);
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let uniform: Vec<f32> = (0..half * f).map(|_| rng.random_range(-1.0..1.0)).collect();
        let far = frechet_distance(&fa, &c.host_features(&uniform, f, &device), FEATURES);
        assert!(
            turned > 2.0 * floor,
            "FD held-out halves {floor} vs turned digits {turned}"
        );
        assert!(
            far > 5.0 * floor,
            "FD held-out halves {floor} vs uniform noise {far}"
        );
    }
}
