//! `oxgen compare`: every family, with its default config, on the same data and the same split,
//! measured the same way through the shared [`Generative`] API.
//!
//! Each family trains into `OUT/<family>` (a finished run there is reused), then samples as many
//! points as the held-out set has and is scored on: the likelihood (exact, bound or none) in
//! nats and bits per dimension; SWD and MMD with their floors; precision, recall, density and
//! coverage (k = 5); memorization against the training rows; training time and samples per
//! second. `report.md`, `report.json`, one sample grid per family and a precision/recall plot
//! are written into `OUT`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::diffusion::vlb::DiffusionModel;
use oxgen_models::generative::{Generative, Likelihood, Nll};
use serde::{Deserialize, Serialize};

use crate::data::{self, DataShape, Dataset, LoadOptions};
use crate::error::{Error, Result};
use crate::family::{FamilyConfig, load_family, pixel_levels, train_family};
use crate::metrics::classifier::{Classifier, FEATURES, classifier, frechet_distance};
use crate::metrics::{Memorization, Prdc, Quality, memorization, prdc};
use crate::trainer::TrainOptions;

/// All families, in report order.
pub const ALL: [&str; 5] = ["diffusion", "ar", "flow", "vae", "gan"];

/// One family's row of the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Family.
    pub family: String,
    /// Why it was not run, if it was not (the AR family models discrete tokens only).
    pub skipped: Option<String>,
    /// Held-out likelihood.
    pub nll: Option<Nll>,
    /// SWD and MMD with floors.
    pub quality: Option<Quality>,
    /// Precision, recall, density, coverage.
    pub prdc: Option<Prdc>,
    /// Memorization against the training rows.
    pub memorization: Option<Memorization>,
    /// Training wall time, seconds (of the run that trained it, when reused).
    pub train_seconds: Option<f64>,
    /// Samples per second.
    pub samples_per_second: Option<f64>,
    /// Fréchet distance to held-out set A in the dataset classifier's feature space (labelled
    /// data only).
    pub fd: Option<f64>,
    /// The classifier's accuracy on class-conditional samples (conditional models only).
    pub class_accuracy: Option<f64>,
}

/// `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Dataset.
    pub data: String,
    /// Held-out rows scored (and samples drawn) per family.
    pub n: usize,
    /// True entropy of the data, nats (2D data with a known density).
    pub entropy: Option<f64>,
    /// One row per family.
    pub rows: Vec<Row>,
    /// The classifier's Fréchet distance between held-out sets B and A: the floor of `fd`.
    pub fd_floor: Option<f64>,
    /// The classifier's accuracy on held-out set A.
    pub classifier_accuracy: Option<f64>,
}

/// The dataset classifier and the features of held-out set A.
struct Judge {
    classifier: Classifier,
    features_a: Vec<f64>,
}

/// Options of [`compare`].
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Dataset.
    pub data: String,
    /// Output folder.
    pub out: PathBuf,
    /// Families to run (default: [`ALL`]).
    pub families: Vec<String>,
    /// Device.
    pub device: Device,
    /// Show progress bars.
    pub progress: bool,
    /// Seed (of the split, the training runs and the samples).
    pub seed: u64,
}

impl Default for CompareOptions {
    /// All families on `digits8` into `runs/compare`, on the CPU, seed 0.
    fn default() -> Self {
        Self {
            data: "digits8".into(),
            out: "runs/compare".into(),
            families: ALL.iter().map(|s| s.to_string()).collect(),
            device: Device::flex(),
            progress: false,
            seed: 0,
        }
    }
}

const SECONDS: &str = "train_seconds.json";

fn finished(dir: &Path, steps: usize) -> bool {
    crate::checkpoint::load(dir).is_ok_and(|ck| ck.manifest.step >= steps)
}

fn timed<T>(dir: &Path, f: impl FnOnce() -> Result<T>) -> Result<f64> {
    let t0 = Instant::now();
    f()?;
    let s = t0.elapsed().as_secs_f64();
    std::fs::write(dir.join(SECONDS), s.to_string()).map_err(|e| Error::io("timing", dir, e))?;
    Ok(s)
}

fn recorded(dir: &Path) -> Option<f64> {
    std::fs::read_to_string(dir.join(SECONDS))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn train_opts(o: &CompareOptions, dir: &Path) -> TrainOptions {
    TrainOptions {
        out: Some(dir.into()),
        resume: dir.join("checkpoints").exists(),
        device: o.device.clone(),
        progress: o.progress,
        stop_after: None,
        skip_eval: false,
        sync_every: None,
        parallel: Default::default(),
    }
}

/// Trains (or reuses) each family on `opts.data` and writes the comparison. See the module docs.
pub fn compare(opts: &CompareOptions) -> Result<Report> {
    let data = data::load(&opts.data, opts.seed, &LoadOptions::default())?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io("output folder", &opts.out, e))?;
    let families: Vec<String> = if opts.families.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        opts.families.clone()
    };
    for f in &families {
        if !ALL.contains(&f.as_str()) {
            return Err(Error::Config(format!(
                "unknown family `{f}`; expected {}",
                ALL.join(", ")
            )));
        }
    }
    let family_cfg = |name: &str| -> Result<FamilyConfig> {
        let mut c = FamilyConfig::defaults(name, &data)?;
        c.data = opts.data.clone();
        c.seed = opts.seed;
        Ok(c)
    };
    // The shared split: the families' default validation share, seeded.
    let probe = family_cfg("flow")?;
    let (train, val) = match data.toy {
        Some(_) => (data.clone(), None),
        None => {
            let (t, v) = data.split(probe.val_fraction, probe.seed);
            (t, Some(v))
        }
    };
    let f = data.shape.numel();
    let (held_a, held_b, labels_a) = held_out(&data, val.as_ref(), probe.eval_samples, opts.seed);
    let n = held_a.len() / f;
    // Labelled data: a classifier, cached in OUT, for the Fréchet distance and the accuracy of
    // class-conditional samples.
    let (judge, fd_floor, classifier_accuracy) = match (&labels_a, data.toy) {
        (Some(la), None) => {
            println!("classifier for the Fréchet distance (cached in classifier.bpk)");
            let c = classifier(
                &train,
                &opts.out.join("classifier.bpk"),
                opts.seed,
                &opts.device,
            )?;
            let features_a = c.host_features(&held_a, f, &opts.device);
            let fb = c.host_features(&held_b, f, &opts.device);
            let floor = frechet_distance(&features_a, &fb, FEATURES);
            let acc = c.accuracy(&held_a, la, &opts.device);
            (
                Some(Judge {
                    classifier: c,
                    features_a,
                }),
                Some(floor),
                Some(acc),
            )
        }
        _ => (None, None, None),
    };
    let mut rows = Vec::new();
    for (i, name) in families.iter().enumerate() {
        let dir = opts.out.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("run folder", &dir, e))?;
        println!("[{}/{}] {name} on {}", i + 1, families.len(), opts.data);
        let scored = |g: &dyn Generative, seconds: f64| {
            score(
                g,
                &data,
                &train,
                &held_a,
                &held_b,
                labels_a.as_deref(),
                judge.as_ref(),
                seconds,
                &dir,
                opts,
            )
        };
        let row = match name.as_str() {
            "diffusion" => {
                let mut c = crate::TrainConfig::defaults(&opts.data, data.shape, data.num_classes);
                c.seed = opts.seed;
                if !finished(&dir, c.steps) {
                    timed(&dir, || crate::diffusion::train(&c, &train_opts(opts, &dir)).map(|_| ()))?;
                }
                let run = crate::sample::load_run(&dir, &opts.device)?;
                let g = DiffusionModel {
                    model: &run.ema,
                    config: &run.config.model,
                    sample: run.config.sample.clone(),
                    levels: matches!(data.shape, DataShape::Image { .. })
                        .then(|| pixel_levels(&data)),
                    strata: 100,
                };
                scored(&g, recorded(&dir).unwrap_or(0.0))?
            }
            "ar" if data.name != "digits8" => Row {
                family: name.clone(),
                skipped: Some("the AR family models discrete tokens; here only digits8 is tokenized (as 17-level pixels)".into()),
                nll: None,
                quality: None,
                prdc: None,
                memorization: None,
                train_seconds: None,
                samples_per_second: None,
                fd: None,
                class_accuracy: None,
            },
            "ar" => {
                let mut c = crate::ar::ArTrainConfig::defaults("digits8");
                c.seed = opts.seed;
                c.val_fraction = probe.val_fraction;
                if !finished(&dir, c.steps) {
                    timed(&dir, || crate::ar::train_ar(&c, &train_opts(opts, &dir)).map(|_| ()))?;
                }
                let run = crate::ar::load_ar(&dir, &opts.device)?;
                scored(&crate::ar::PixelGpt(&run.model), recorded(&dir).unwrap_or(0.0))?
            }
            family => {
                let c = family_cfg(family)?;
                if !finished(&dir, c.steps) {
                    timed(&dir, || train_family(&c, &train_opts(opts, &dir)).map(|_| ()))?;
                }
                let (_, model) = load_family(&dir, &opts.device)?;
                scored(model.generative(), recorded(&dir).unwrap_or(0.0))?
            }
        };
        rows.push(row);
    }
    let report = Report {
        data: opts.data.clone(),
        n,
        entropy: data.toy.and_then(|t| t.entropy()),
        rows,
        fd_floor,
        classifier_accuracy,
    };
    write_report(&report, &opts.out)?;
    Ok(report)
}

/// Held-out sets A (compared with samples) and B (the floor, and the likelihood), and A's labels.
fn held_out(
    data: &Dataset,
    val: Option<&Dataset>,
    n: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Option<Vec<u32>>) {
    match (data.toy, val) {
        (Some(toy), _) => {
            use rand::SeedableRng;
            let draw = |k: u64| {
                toy.sample(
                    n,
                    &mut rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(k)),
                )
            };
            (draw(1001), draw(1002), None)
        }
        (None, Some(v)) => {
            let h = v.len() / 2;
            let a = v.subset(&(0..h).collect::<Vec<_>>());
            let b = v.subset(&(h..2 * h).collect::<Vec<_>>());
            (a.x, b.x, a.labels)
        }
        (None, None) => unreachable!("file data is split"),
    }
}

fn score(
    g: &dyn Generative,
    data: &Dataset,
    train: &Dataset,
    a: &[f32],
    b: &[f32],
    labels: Option<&[u32]>,
    judge: Option<&Judge>,
    train_seconds: f64,
    dir: &Path,
    opts: &CompareOptions,
) -> Result<Row> {
    let f = data.shape.numel();
    let n = a.len() / f;
    let caps = g.capabilities();
    let labels = labels.filter(|_| caps.conditional);
    let t0 = Instant::now();
    let samples: Vec<f32> = g
        .sample(n, labels, opts.seed ^ 0xc0de, &opts.device)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Config(format!("reading samples back: {e:?}")))?;
    let samples_per_second = n as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    if let Some(index) = samples.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            context: format!("{} samples", caps.family),
            index,
        });
    }
    crate::run::write_samples(dir, &samples, labels, data.shape, Some(a))?;
    let _ = std::fs::copy(
        dir.join("samples.png"),
        opts.out.join(format!("{}.png", caps.family)),
    );
    let mut total = 0.0;
    let mut has = true;
    for (i, c) in b.chunks(250 * f).enumerate() {
        let x = Tensor::<2>::from_data(TensorData::new(c.to_vec(), [c.len() / f, f]), &opts.device);
        match g.nll(x, opts.seed ^ i as u64) {
            Some(v) => {
                let v: Vec<f32> = v
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32");
                total += v.iter().map(|&x| x as f64).sum::<f64>();
            }
            None => has = false,
        }
    }
    let nll = Nll {
        nats: has.then(|| total / (b.len() / f) as f64),
        dims: f,
        likelihood: caps.likelihood,
    };
    let train_rows = &train.x[..train.x.len().min(5000 * f)];
    let fd = judge.map(|j| {
        let fs = j.classifier.host_features(&samples, f, &opts.device);
        frechet_distance(&j.features_a, &fs, FEATURES)
    });
    let class_accuracy = match (judge, labels) {
        (Some(j), Some(l)) => Some(j.classifier.accuracy(&samples, l, &opts.device)),
        _ => None,
    };
    Ok(Row {
        fd,
        class_accuracy,
        family: caps.family.into(),
        skipped: None,
        nll: Some(nll),
        quality: Some(Quality::measure(&samples, a, b, f, opts.seed)),
        prdc: Some(prdc(a, &samples, f, 5)),
        memorization: Some(memorization(&samples, train_rows, b, f)),
        train_seconds: Some(train_seconds),
        samples_per_second: Some(samples_per_second),
    })
}

fn likelihood_cell(nll: &Option<Nll>) -> String {
    match nll {
        Some(Nll {
            nats: Some(v),
            likelihood: Likelihood::Exact,
            dims,
        }) => {
            format!(
                "{v:.3} (exact; {:.3} bits/dim)",
                v / (*dims as f64 * std::f64::consts::LN_2)
            )
        }
        Some(Nll {
            nats: Some(v),
            likelihood: Likelihood::Bound { bound },
            dims,
        }) => format!(
            "≤ {v:.3} (bound: {bound}; {:.3} bits/dim)",
            v / (*dims as f64 * std::f64::consts::LN_2)
        ),
        _ => "none".into(),
    }
}

fn write_report(r: &Report, out: &Path) -> Result<()> {
    let mut md = format!(
        "# {} — five families, one split\n\nHeld-out rows: {} per set. NLL in nats per data point on held-out set B; SWD/MMD of {} samples against held-out set A, with the floor (B against A); PRDC with k = 5; memorization against the training rows (near: d₁ < d₂/3).\n\n",
        r.data, r.n, r.n
    );
    if let (Some(fl), Some(acc)) = (r.fd_floor, r.classifier_accuracy) {
        md += &format!(
            "FD: Fréchet distance in the feature space of a {FEATURES}-feature MLP classifier trained on the training split (held-out accuracy {:.1}%); its floor, held-out B against A, is **{fl:.3}**. Class acc.: the classifier's accuracy on class-conditional samples.\n\n",
            100.0 * acc
        );
    }
    if let Some(h) = r.entropy {
        md += &format!(
            "True entropy of the data: **{h:.4} nats** — no model's NLL can be below it (up to sampling error).\n\n"
        );
    }
    md += "| family | NLL (nats) | SWD / floor | MMD / floor | precision | recall | density | coverage | near dup. (held-out) | NN ratio (held-out) | FD | class acc. | train s | samples/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for row in &r.rows {
        match (&row.skipped, &row.quality, &row.prdc, &row.memorization) {
            (Some(why), ..) => {
                md += &format!("| {} | n/a: {why} | | | | | | | | | | | | |\n", row.family)
            }
            (None, Some(q), Some(p), Some(m)) => {
                md += &format!(
                    "| {} | {} | {:.4} / {:.4} | {:.4} / {:.4} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1}% ({:.1}%){} | {:.2} ({:.2}) | {} | {} | {:.0} | {:.0} |\n",
                    row.family,
                    likelihood_cell(&row.nll),
                    q.swd,
                    q.swd_floor,
                    q.mmd,
                    q.mmd_floor,
                    p.precision,
                    p.recall,
                    p.density,
                    p.coverage,
                    100.0 * m.near,
                    100.0 * m.near_baseline,
                    if m.flagged() { " **flagged**" } else { "" },
                    m.median_ratio,
                    m.median_ratio_baseline,
                    row.fd.map_or("—".into(), |v| format!("{v:.3}")),
                    row.class_accuracy
                        .map_or("—".into(), |v| format!("{:.1}%", 100.0 * v)),
                    row.train_seconds.unwrap_or(0.0),
                    row.samples_per_second.unwrap_or(0.0)
                )
            }
            _ => {}
        }
    }
    md += "\nSample grids: ";
    md += &r
        .rows
        .iter()
        .filter(|row| row.skipped.is_none())
        .map(|row| format!("[{0}]({0}.png)", row.family))
        .collect::<Vec<_>>()
        .join(", ");
    md += ". Precision/recall: [pr.png](pr.png).\n";
    std::fs::write(out.join("report.md"), md).map_err(|e| Error::io("report.md", out, e))?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(r).expect("serializes"),
    )
    .map_err(|e| Error::io("report.json", out, e))?;
    let points: Vec<(String, f64, f64)> = r
        .rows
        .iter()
        .filter_map(|row| {
            row.prdc
                .as_ref()
                .map(|p| (row.family.clone(), p.recall, p.precision))
        })
        .collect();
    crate::plot::labelled_points(
        &out.join("pr.png"),
        &points,
        "recall",
        "precision",
        &format!("precision vs recall on {}", r.data),
    )
}
