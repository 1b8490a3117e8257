//! The reward of class-conditional image runs: the evaluation suite's classifier (the one
//! `oxgen compare` measures FD and class accuracy with), its confidence p(c | x) in the class c
//! a sample was conditioned on. A second classifier of the same recipe but another seed checks
//! it: a tuner that only fools the first one shows up as a gap between the two accuracies.

use std::path::Path;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::metrics::classifier::{Classifier, FEATURES, classifier, frechet_distance};
use crate::{Error, Result};

/// The classifiers of a labelled image run and the features of its held-out images.
pub struct Judge {
    /// The evaluation classifier (seed: the run's), the reward.
    pub reward: Classifier,
    /// The check (seed: the run's + 1).
    pub check: Classifier,
    /// Features of the held-out split under `reward`, `[n · FEATURES]`.
    held: Vec<f64>,
    /// Classes.
    pub classes: usize,
    /// Values per image.
    pub features: usize,
}

/// What a set of class-conditional samples scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageScores {
    /// Share classified as their class by the evaluation classifier.
    pub accuracy: f64,
    /// The same by the check classifier.
    pub check_accuracy: f64,
    /// Mean confidence p(c | x) of the evaluation classifier.
    pub confidence: f64,
    /// Fréchet distance to the held-out split in the evaluation classifier's features.
    pub fd: f64,
}

impl Judge {
    /// Trains (or loads from `cache`, a folder) the two classifiers on the training split of
    /// `config`'s data, as `oxgen compare` does. Refuses unlabelled and unconditional runs.
    pub fn new(config: &TrainConfig, cache: &Path, device: &Device) -> Result<Judge> {
        let classes = config.model.num_classes.ok_or_else(|| {
            Error::Config("a classifier reward needs a class-conditional run".into())
        })?;
        let data = config.load_data()?;
        if data.toy.is_some() || data.labels.is_none() {
            return Err(Error::Config(format!(
                "a classifier reward needs labelled images; `{}` has none",
                config.data
            )));
        }
        let (train, val) = data.split(config.val_fraction, config.seed);
        std::fs::create_dir_all(cache).map_err(|e| Error::io("classifier cache", cache, e))?;
        let reward = classifier(&train, &cache.join("classifier.bpk"), config.seed, device)?;
        let check = classifier(
            &train,
            &cache.join("classifier-check.bpk"),
            config.seed + 1,
            device,
        )?;
        let features = data.shape.numel();
        let held = reward.host_features(&val.x, features, device);
        Ok(Judge {
            reward,
            check,
            held,
            classes,
            features,
        })
    }

    /// p(c | x) by the evaluation classifier for each row of `x` (`[n · features]`) and its
    /// class c in `labels`.
    pub fn confidence(&self, x: &[f32], labels: &[u32], device: &Device) -> Vec<f64> {
        let n = labels.len();
        if n == 0 {
            return Vec::new();
        }
        let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, self.features]), device);
        let idx: Vec<i64> = labels.iter().map(|&c| c as i64).collect();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [n, 1]), device);
        softmax(self.reward.logits(t), 1)
            .gather(1, idx)
            .reshape([n])
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32")
            .into_iter()
            .map(f64::from)
            .collect()
    }

    /// Accuracy by both classifiers, mean confidence, and FD of samples `x` conditioned on
    /// `labels`.
    pub fn measure(&self, x: &[f32], labels: &[u32], device: &Device) -> ImageScores {
        let conf = self.confidence(x, labels, device);
        let fx = self.reward.host_features(x, self.features, device);
        ImageScores {
            accuracy: self.reward.accuracy(x, labels, device),
            check_accuracy: self.check.accuracy(x, labels, device),
            confidence: conf.iter().sum::<f64>() / conf.len().max(1) as f64,
            fd: frechet_distance(&self.held, &fx, FEATURES),
        }
    }
}
