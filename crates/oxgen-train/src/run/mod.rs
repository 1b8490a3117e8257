//! A run folder and what a run writes into it: `config.json`, `metrics.jsonl`, `loss.png`,
//! `samples.png`, `samples.npy`, and `checkpoints/` ([`checkpoint`], versioned by [`migrate`]).

pub mod checkpoint;
pub mod migrate;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oxgen_models::DataShape;
use serde::Serialize;

use crate::error::{Error, Result};

/// The output folder of one run.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates (or, with `resume`, reopens) the run folder. A fresh run refuses a folder that
    /// already holds checkpoints, so nothing is overwritten by accident.
    pub fn create(path: &Path, resume: bool) -> Result<Self> {
        let has_ckpt = path.join("checkpoints").join("latest").exists();
        if resume && !has_ckpt {
            return Err(Error::Checkpoint {
                path: path.into(),
                reason: "--resume given, but the folder has no checkpoint".into(),
            });
        }
        if !resume && has_ckpt {
            return Err(Error::Config(format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                path.display()
            )));
        }
        fs::create_dir_all(path).map_err(|e| Error::io("run folder", path, e))?;
        Ok(Self { path: path.into() })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `config.json` (before step 0, and again on resume), atomically.
    pub fn write_config<C: Serialize>(&self, config: &C) -> Result<()> {
        let p = self.path.join("config.json");
        let tmp = self
            .path
            .join(format!(".config.json-{}", std::process::id()));
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(config).expect("config serializes"),
        )
        .map_err(|e| Error::io("config.json", &tmp, e))?;
        fs::rename(&tmp, &p).map_err(|e| Error::io("config.json", &p, e))
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, then renamed over
/// it, so a reader never sees a half-written file and a failed write leaves the old one.
/// `what` names the file in the error.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], what: &'static str) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(what, path, e)
    })
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// Step index.
    pub step: usize,
    /// Training loss (NaN lines mark skipped steps).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether the step was skipped for a non-finite loss.
    pub skipped: bool,
}

/// `metrics.jsonl` and the loss history for `loss.png` (in memory only for a run without a
/// folder).
#[derive(Debug)]
pub struct Outputs {
    file: Option<(File, PathBuf)>,
    steps: Vec<usize>,
    losses: Vec<f64>,
}

impl Outputs {
    /// Opens `metrics.jsonl` of `run`, keeping only the lines of steps before `start` (so a
    /// resumed run continues the same curve). Without a run folder nothing is written.
    pub fn open(run: Option<&RunDir>, start: usize) -> Result<Self> {
        let Some(run) = run else {
            return Ok(Self {
                file: None,
                steps: Vec::new(),
                losses: Vec::new(),
            });
        };
        let path = run.path().join("metrics.jsonl");
        let (mut steps, mut losses, mut kept) = (Vec::new(), Vec::new(), String::new());
        if start > 0
            && let Ok(f) = File::open(&path)
        {
            for line in BufReader::new(f).lines().map_while(std::result::Result::ok) {
                if let Ok(m) = serde_json::from_str::<StepMetrics>(&line)
                    && m.step < start
                {
                    steps.push(m.step);
                    losses.push(m.loss);
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        }
        fs::write(&path, kept).map_err(|e| Error::io("metrics.jsonl", &path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("metrics.jsonl", &path, e))?;
        Ok(Self {
            file: Some((file, path)),
            steps,
            losses,
        })
    }

    /// Appends one line of any shape that carries the fields of [`StepMetrics`] (and more).
    pub fn log_line<T: Serialize>(&mut self, step: usize, loss: f64, line: &T) -> Result<()> {
        if let Some((file, path)) = &mut self.file {
            let line = serde_json::to_string(line).expect("metrics serialize");
            writeln!(file, "{line}").map_err(|e| Error::io("metrics.jsonl", &*path, e))?;
        }
        self.steps.push(step);
        self.losses.push(loss);
        Ok(())
    }

    /// Writes `loss.png` next to `metrics.jsonl` (nothing without a run folder).
    pub fn plot_loss(&self, title: &str) -> Result<()> {
        match &self.file {
            Some((_, path)) => crate::plot::loss_curve(
                &path.with_file_name("loss.png"),
                &self.steps,
                &self.losses,
                title,
            ),
            None => Ok(()),
        }
    }
}

/// A progress bar from `start` to `total` showing step, loss, it/s and ETA (hidden if `show` is
/// false or stderr is not a terminal).
pub fn progress(show: bool, start: usize, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if !show {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} step {pos}/{len} {msg} {per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    bar.set_position(start as u64);
    bar
}

/// Writes `samples.npy` (`[n, features]`, or `[n, c, h, w]` for images) and `samples.png`: a
/// scatter over `reference` for 2D points, a grid (ordered by label when given) for images.
pub fn write_samples(
    out: &Path,
    samples: &[f32],
    labels: Option<&[u32]>,
    shape: DataShape,
    reference: Option<&[f32]>,
) -> Result<()> {
    fs::create_dir_all(out).map_err(|e| Error::io("sample folder", out, e))?;
    let f = shape.numel();
    let n = samples.len() / f;
    match shape {
        DataShape::Image {
            channels,
            height,
            width,
        } => {
            crate::npy::write_f32(
                &out.join("samples.npy"),
                samples,
                &[n, channels, height, width],
            )?;
            // With labels: up to ten samples of each class, one class after another.
            let order: Vec<usize> = match labels {
                Some(l) => {
                    let mut idx: Vec<usize> = (0..n).collect();
                    idx.sort_by_key(|&i| l[i]);
                    let mut seen = std::collections::HashMap::new();
                    idx.into_iter()
                        .filter(|&i| *seen.entry(l[i]).and_modify(|c| *c += 1).or_insert(1) <= 10)
                        .take(100)
                        .collect()
                }
                None => (0..n.min(100)).collect(),
            };
            let mut grid = Vec::with_capacity(order.len() * f);
            for &i in &order {
                grid.extend_from_slice(&samples[i * f..(i + 1) * f]);
            }
            let zoom = (64 / height.max(width)).clamp(1, 8);
            crate::plot::image_grid(
                &out.join("samples.png"),
                &grid,
                channels,
                height,
                width,
                zoom,
            )
        }
        DataShape::Vector { dim } => {
            crate::npy::write_f32(&out.join("samples.npy"), samples, &[n, dim])?;
            if dim == 2 {
                crate::plot::scatter(
                    &out.join("samples.png"),
                    samples,
                    reference.unwrap_or(&[]),
                    "samples (blue) over held-out data (grey)",
                )
            } else {
                Ok(())
            }
        }
    }
}
