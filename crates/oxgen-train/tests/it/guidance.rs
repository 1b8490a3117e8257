//! Classifier-free guidance works: a classifier trained on the 8×8 training split labels at
//! least 90% of class-conditional samples (default guidance scale) as the class asked for.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData, activation::relu};
use oxgen_train::TrainConfig;
use oxgen_train::data::{Dataset, digits8};
use oxgen_train::diffusion::train;

use crate::common::opts;

#[derive(Module, Debug)]
struct Classifier {
    fc1: Linear,
    fc2: Linear,
}

impl Classifier {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }

    fn predict(&self, x: &[f32], n: usize, device: &Device) -> Vec<i64> {
        let x = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, 64]), device);
        self.forward(x)
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap()
    }
}

fn train_classifier(train_set: &Dataset, device: &Device) -> Classifier {
    let ad = device.clone().autodiff();
    let mut model = oxgen_train::trainer::optim::seeded_init(device, 7, || Classifier {
        fc1: LinearConfig::new(64, 256).init(&ad),
        fc2: LinearConfig::new(256, 10).init(&ad),
    });
    let mut optim = AdamWConfig::new().init();
    let n = train_set.len();
    let x = Tensor::<2>::from_data(TensorData::new(train_set.x.clone(), [n, 64]), &ad);
    let y: Vec<i64> = train_set
        .labels
        .as_ref()
        .unwrap()
        .iter()
        .map(|&v| v as i64)
        .collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), &ad);
    let ce = CrossEntropyLossConfig::new().init(&ad);
    for _ in 0..300 {
        let loss = ce.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    model.valid()
}

fn accuracy(pred: &[i64], want: &[u32]) -> f64 {
    pred.iter()
        .zip(want)
        .filter(|(p, w)| **p == **w as i64)
        .count() as f64
        / want.len() as f64
}

#[test]
fn guided_samples_are_classified_as_their_class() {
    let device = Device::flex();
    let data = digits8();
    let config = TrainConfig::defaults("digits8", data.shape, data.num_classes);
    let (train_set, val) = data.split(config.val_fraction, config.seed);

    let classifier = train_classifier(&train_set, &device);
    let val_acc = accuracy(
        &classifier.predict(&val.x, val.len(), &device),
        val.labels.as_ref().unwrap(),
    );
    println!(
        "classifier accuracy on the held-out digits: {:.1}%",
        100.0 * val_acc
    );
    assert!(
        val_acc > 0.93,
        "the classifier itself must be good: {val_acc}"
    );

    let dir = tempfile::tempdir().unwrap();
    let report = train(&config, &opts(dir.path(), device.clone())).unwrap();
    let per_class = 20;
    let labels: Vec<u32> = (0..10 * per_class)
        .map(|i| (i / per_class) as u32)
        .collect();
    let x = oxgen_models::diffusion::sample(
        &report.ema,
        &config.model,
        &config.sample,
        labels.len(),
        Some(&labels),
        &device,
    );
    let samples: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let acc = accuracy(
        &classifier.predict(&samples, labels.len(), &device),
        &labels,
    );
    println!(
        "guidance {}: {:.1}% of {} class-conditional samples classified as the class asked for",
        config.sample.guidance,
        100.0 * acc,
        labels.len()
    );
    assert!(
        acc >= 0.9,
        "only {:.1}% of guided samples have the class asked for",
        100.0 * acc
    );
}
