//! Classifier-free guidance works: a classifier trained on the 8×8 training split labels at
//! least 90% of class-conditional samples (default guidance scale) as the class asked for. On
//! the same run (trained once: it is the suite's most expensive), Diffusion-DPO and best-of-n
//! with the evaluation classifier raise its confidence in the class without the check
//! classifier disagreeing, Diffusion-DPO resumes exactly, and bad bases are typed errors.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData, activation::relu};
use oxgen_train::TrainConfig;
use oxgen_train::data::{Dataset, digits8};
use oxgen_train::diffusion::train;

use std::path::Path;

use oxgen_train::Error;
use oxgen_train::tune::best_of_images::best_of_n_classes;
use oxgen_train::tune::diffusion_dpo::{DiffusionDpoConfig, diffusion_dpo};

use crate::common::{assert_weights_close, losses, opts, params, run, tiny_2d};

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
fn guided_samples_are_classified_as_their_class_and_tuning_raises_it() {
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
    diffusion_dpo_and_best_of_n(dir.path(), &device);
    tree_ring_on_the_digits_run(dir.path(), &device);
}

/// Tree-Ring (radius 2) on the same run, 60 marked and 60 clean samples at the run's own
/// sampling settings, inverted with the evaluation classifier's labels and two fixed-point
/// refinements per step: the AUC without attack is at least 0.95 (measured 1.0 here; 0.979 on
/// 200 of each from the README's run, docs/detection.md), every attack has its row, no more
/// than 5% of clean samples fall below p = 0.01, and the quality of both sides is measured.
fn tree_ring_on_the_digits_run(base: &Path, device: &Device) {
    use oxgen_models::ar::watermark::WatermarkKey;
    use oxgen_train::watermark::images::{ATTACKS, InvertLabels, evaluate_images};
    use oxgen_train::watermark::treering::TreeRing;
    let run = oxgen_train::sample::load_run(base, device).unwrap();
    let ring = TreeRing {
        key: WatermarkKey::from_words(21, 22),
        radius: 2.0,
        inner: 0.0,
    };
    let out = base.join("tree-ring");
    let r = evaluate_images(
        &run,
        &ring,
        &run.config.sample,
        60,
        InvertLabels::Predicted,
        oxgen_train::watermark::images::REFINE,
        &out,
        device,
    )
    .unwrap();
    println!("tree-ring: {:?}", r.attacks);
    assert_eq!(r.attacks.len(), ATTACKS.len());
    assert!(r.attacks[0].auc >= 0.95, "{:?}", r.attacks[0]);
    assert!(
        r.attacks.iter().all(|a| a.fpr_at_p01 <= 0.05),
        "{:?}",
        r.attacks
    );
    assert!(r.clean.is_some() && r.marked.is_some());
    assert!(out.join("roc.png").exists());
}

/// Diffusion-DPO on 20 prompts per class for 60 steps (at guidance 1, as the defaults): the
/// evaluation classifier's mean confidence in the class rises by at least 0.01 (measured on
/// the README's run: 0.960 → 0.981), the check classifier's accuracy does not fall (97.0% →
/// 99.0%), and held-out preference accuracy reaches 60% (measured 78.9%). Best of 4 beats best
/// of 1 by both classifiers.
fn diffusion_dpo_and_best_of_n(base: &Path, device: &Device) {
    let c = DiffusionDpoConfig {
        prompts_per_class: 20,
        steps: 60,
        eval_every: 30,
        eval_per_class: 20,
        ..DiffusionDpoConfig::default()
    };
    let out = base.join("dpo");
    let r = diffusion_dpo(base, &c, &opts(&out, device.clone())).unwrap();
    let (first, last) = (r.evals[0], *r.evals.last().unwrap());
    println!("Diffusion-DPO: {first:?} -> {last:?}");
    assert!(
        last.1.confidence >= first.1.confidence + 0.01,
        "{first:?} -> {last:?}"
    );
    assert!(
        last.1.check_accuracy >= first.1.check_accuracy,
        "{first:?} -> {last:?}"
    );
    assert!(last.2 >= 0.6, "held-out preference accuracy {}", last.2);
    for f in [
        "curves.png",
        "samples.png",
        "base/samples.png",
        "eval.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // The tuned run loads as a diffusion run.
    let tuned = oxgen_train::sample::load_run(&out, device).unwrap();
    assert_eq!(tuned.manifest.family, "diffusion-dpo");

    // Resume: 4 steps straight equal 2, a checkpoint, a resume and 2 more.
    let tiny = DiffusionDpoConfig {
        prompts_per_class: 2,
        steps: 4,
        eval_every: 2,
        eval_per_class: 1,
        batch_size: 4,
        ..DiffusionDpoConfig::default()
    };
    let straight = diffusion_dpo(base, &tiny, &opts(&base.join("a"), device.clone())).unwrap();
    let mut one = opts(&base.join("b"), device.clone());
    one.stop_after = Some(2);
    diffusion_dpo(base, &tiny, &one).unwrap();
    let mut two = opts(&base.join("b"), device.clone());
    two.resume = true;
    let resumed = diffusion_dpo(base, &tiny, &two).unwrap();
    let (x, y) = (params(&straight.model), params(&resumed.model));
    assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
    // Two CPU replicas (2 + 2 pairs) equal one device: every loss and the weights, 1e-4.
    let mut two = opts(&base.join("c"), device.clone());
    two.parallel = oxgen_train::trainer::parallel::DataParallel::on(vec![device.clone(); 2]);
    let split = diffusion_dpo(base, &tiny, &two).unwrap();
    let (la, lb) = (losses(&base.join("a")), losses(&base.join("c")));
    assert_eq!(la.len(), lb.len());
    assert!(
        la.iter()
            .zip(&lb)
            .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs()),
        "{la:?} vs {lb:?}"
    );
    assert_weights_close("diffusion DPO", &params(&split.model), &x, 1e-4);
    assert!(split.parallel.is_some());

    // A one-candidate config, an unconditional base and an autoregressive one are refused
    // before anything is written.
    let moons = base.join("moons");
    run(&tiny_2d("moons", 2), &opts(&moons, device.clone()));
    let x = || opts(&base.join("x"), device.clone());
    let one_candidate = DiffusionDpoConfig {
        candidates: 1,
        ..tiny.clone()
    };
    let e = diffusion_dpo(base, &one_candidate, &x()).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let e = diffusion_dpo(&moons, &tiny, &x()).unwrap_err();
    assert!(e.to_string().contains("unconditional"), "{e}");
    assert!(!base.join("x").exists());

    let rows =
        best_of_n_classes(base, &[1, 4], 20, Some(1.0), 7, &base.join("bo"), device).unwrap();
    let (one, four) = (rows[0].1, rows[1].1);
    println!("best of 1: {one:?}; best of 4: {four:?}");
    assert!(four.confidence > one.confidence, "{one:?} vs {four:?}");
    assert!(
        four.check_accuracy >= one.check_accuracy,
        "{one:?} vs {four:?}"
    );
}
