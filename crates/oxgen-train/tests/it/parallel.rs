//! Data-parallel training (issue 22): replicas on several devices equal one device on the same
//! global batch, checkpoints resume on any number of devices, and a lost device stops the run
//! with a typed error and an intact checkpoint.
//!
//! Several devices without a GPU: burn's CPU backend has one device, so the CPU "devices" are
//! replicas on threads over it (the arithmetic and the gradient sum are the same as on real
//! devices); two wgpu clients on lavapipe are two devices with their own memory, and gradients
//! move between them by copies.

use burn::module::Module;
use burn::tensor::Device;
use oxgen_models::ar::GptConfig;
use oxgen_models::diffusion::DenoiserConfig;
use oxgen_models::diffusion::unet::UNetConfig;
use oxgen_train::ar::{ArTrainConfig, train_ar};
use oxgen_train::trainer::TrainOptions;
use oxgen_train::trainer::parallel::DataParallel;
use oxgen_train::{Error, TrainConfig};

use crate::common::{assert_weights_close, logged, losses, opts, params};

/// A one-layer GPT on the arithmetic language, without dropout. `batch` is the global batch.
fn tiny_gpt(steps: usize, batch: usize) -> ArTrainConfig {
    let model = GptConfig::new(0)
        .with_layers(1)
        .with_heads(2)
        .with_width(32);
    let mut c = ArTrainConfig::new(model, "arithmetic");
    c.model.dropout = 0.0;
    (c.steps, c.batch_size, c.grad_accum) = (steps, batch, 1);
    c.schedule.warmup_steps = 2;
    (c.eval_every, c.eval_batches) = (3, 1);
    c
}

/// A small UNet on the 8×8 digits.
fn tiny_unet(steps: usize, batch: usize) -> TrainConfig {
    let data = oxgen_train::data::digits8();
    let mut c = TrainConfig::defaults("digits8", data.shape, data.num_classes);
    c.model.denoiser = DenoiserConfig::UNet(
        UNetConfig::new()
            .with_channels(8)
            .with_groups(2)
            .with_heads(2),
    );
    (c.steps, c.batch_size, c.checkpoint_every) = (steps, batch, 0);
    c.schedule.warmup_steps = 2;
    c
}

/// Options on `devices` (the first holds the weights).
fn on(dir: &std::path::Path, devices: &[Device]) -> TrainOptions {
    let mut o = opts(dir, devices[0].clone());
    o.parallel = DataParallel::on(devices.to_vec());
    o
}

/// `a` and `b` agree to `tol` relative: each loss, and the weights' largest difference against
/// the largest weight.
fn assert_close<M: Module>(what: &str, la: &[f64], lb: &[f64], a: &M, b: &M, tol: f64) {
    assert_eq!(la.len(), lb.len(), "{what}: step counts");
    for (s, (x, y)) in la.iter().zip(lb).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs(),
            "{what}: step {s} loss {x} vs {y}"
        );
    }
    assert_weights_close(what, &params(a), &params(b), tol);
}

/// 2 replicas (an uneven 4 + 3 split of 7 rows) for 5 steps equal one device on the same
/// global batch: losses at every step and final weights within 1e-4 relative. And the run
/// logged its all-reduce time and per-device throughput.
#[test]
fn two_cpu_replicas_train_the_gpt_as_one_device_does() {
    let cpu = Device::flex();
    let c = tiny_gpt(5, 7);
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = train_ar(&c, &opts(one.path(), cpu.clone())).unwrap();
    let b = train_ar(&c, &on(two.path(), &[cpu.clone(), cpu])).unwrap();
    assert_close(
        "gpt",
        &losses(two.path()),
        &losses(one.path()),
        &b.model,
        &a.model,
        1e-4,
    );
    let p = b.parallel.expect("a parallel run reports its throughput");
    assert_eq!((p.devices, p.steps), (2, 5));
    assert!(p.samples_per_s.iter().all(|s| *s > 0.0) && p.allreduce_ms >= 0.0);
    assert!(p.tokens_per_s.is_some() && p.efficiency > 0.0, "{p:?}");
    let line = std::fs::read_to_string(two.path().join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(first["devices"], 2);
    assert!(first["allreduce_ms"].as_f64().is_some(), "{first}");
    assert_eq!(first["samples_per_s"].as_array().map(|a| a.len()), Some(2));
    assert_eq!(first["tokens_per_s"].as_array().map(|a| a.len()), Some(2));
    assert!(
        first["efficiency"].as_f64().is_some_and(|e| e > 0.0),
        "{first}"
    );
}

/// The same for the diffusion UNet: 3 replicas over a batch of 8 (3 + 3 + 2 rows), Philox
/// noise drawn for each shard's own rows.
#[test]
fn three_cpu_replicas_train_the_unet_as_one_device_does() {
    let cpu = Device::flex();
    let c = tiny_unet(5, 8);
    let (one, three) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = oxgen_train::diffusion::train(&c, &opts(one.path(), cpu.clone())).unwrap();
    let devices = [cpu.clone(), cpu.clone(), cpu];
    let b = oxgen_train::diffusion::train(&c, &on(three.path(), &devices)).unwrap();
    assert_close(
        "unet",
        &losses(three.path()),
        &losses(one.path()),
        &b.model,
        &a.model,
        1e-4,
    );
    assert_eq!(b.parallel.map(|p| p.devices), Some(3));
}

/// A 2-device checkpoint (step 3) resumes on one device and on two, and both end where a
/// 2-device run that never stopped ends (losses of the resumed steps and final weights).
#[test]
fn a_two_device_checkpoint_resumes_on_one_and_on_two() {
    let cpu = Device::flex();
    let c = tiny_gpt(5, 8);
    let pair = [cpu.clone(), cpu.clone()];
    let straight = tempfile::tempdir().unwrap();
    let s = train_ar(&c, &on(straight.path(), &pair)).unwrap();
    let tail = |dir: &std::path::Path| losses(dir)[3..].to_vec();
    for resume_on in [vec![cpu.clone()], pair.to_vec()] {
        let dir = tempfile::tempdir().unwrap();
        let mut first = on(dir.path(), &pair);
        first.stop_after = Some(3);
        assert_eq!(train_ar(&c, &first).unwrap().steps, 3);
        let mut second = on(dir.path(), &resume_on);
        second.resume = true;
        let r = train_ar(&c, &second).unwrap();
        assert_eq!(r.steps, 5);
        assert_close(
            &format!("resumed on {}", resume_on.len()),
            &tail(dir.path()),
            &tail(straight.path()),
            &r.model,
            &s.model,
            1e-4,
        );
    }
}

/// A device lost at step 4 is a typed error naming it; the step-3 checkpoint is intact and the
/// run resumes from it. A global batch smaller than the devices is refused before anything is
/// written.
#[test]
fn a_lost_device_leaves_the_last_checkpoint_and_bad_splits_are_refused() {
    let cpu = Device::flex();
    let c = tiny_gpt(6, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut o = on(dir.path(), &[cpu.clone(), cpu.clone()]);
    o.parallel.names = vec!["cpu:0".into(), "cpu:1".into()];
    o.parallel.lose_at = Some((4, 1));
    let err = train_ar(&c, &o).unwrap_err();
    assert!(
        matches!(&err, Error::DeviceLost { device, step: 4, .. } if device == "cpu:1"),
        "{err}"
    );
    let ck = oxgen_train::checkpoint::load(dir.path()).expect("the last checkpoint loads");
    assert_eq!(ck.manifest.step, 3);
    let mut again = on(dir.path(), &[cpu.clone(), cpu.clone()]);
    again.resume = true;
    assert_eq!(train_ar(&c, &again).unwrap().steps, 6);

    let small = tiny_gpt(2, 2);
    let run = dir.path().join("three");
    let err = train_ar(&small, &on(&run, &[cpu.clone(), cpu.clone(), cpu])).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("cannot be split over 3 devices")),
        "{err}"
    );
    assert!(!run.exists(), "nothing is written for a refused split");
}

/// Two wgpu clients on one adapter (lavapipe in CI) are two devices, each with its own memory:
/// the weights are copied out and the gradients back each step, and 5 steps equal one device.
#[test]
fn two_wgpu_devices_train_the_gpt_as_one_does() {
    let first = crate::wgpu_parity::wgpu_device();
    // A second client on the same adapter (lavapipe here): its own memory and queue.
    let second = oxgen_wgpu::device::second_client(oxgen_wgpu::DeviceChoice::Wgpu).unwrap();
    assert_ne!(first, second, "two distinct wgpu clients");
    let c = tiny_gpt(5, 8);
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = train_ar(&c, &opts(one.path(), first.clone())).unwrap();
    let b = train_ar(&c, &on(two.path(), &[first, second])).unwrap();
    assert_close(
        "gpt on wgpu",
        &losses(two.path()),
        &losses(one.path()),
        &b.model,
        &a.model,
        1e-4,
    );
}

/// The VAE, an importance-weighted VAE (`train_k` 3: each row's three draws sliced from the
/// batch's) and the flow (image data, so all dequantize, and the VAEs draw ε): 2 CPU replicas
/// over a batch of 9 (5 + 4) for 5 steps equal one device within 1e-4.
#[test]
fn two_cpu_replicas_train_the_vae_and_the_flow_as_one_device_does() {
    use oxgen_train::family::{FamilyConfig, FamilyModel, Trained, train_family};
    let cpu = Device::flex();
    let data = oxgen_train::data::digits8();
    for family in ["vae", "iwae", "flow"] {
        let mut c =
            FamilyConfig::defaults(if family == "iwae" { "vae" } else { family }, &data).unwrap();
        (c.steps, c.batch_size, c.checkpoint_every) = (5, 9, 0);
        if let FamilyModel::Vae(v) = &mut c.model
            && family == "iwae"
        {
            v.train_k = 3;
        }
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = train_family(&c, &opts(one.path(), cpu.clone())).unwrap();
        let b = train_family(&c, &on(two.path(), &[cpu.clone(), cpu.clone()])).unwrap();
        let (la, lb) = (losses(one.path()), losses(two.path()));
        match (&a.model, &b.model) {
            (Trained::Vae(x), Trained::Vae(y)) => assert_close(family, &lb, &la, y, x, 1e-4),
            (Trained::Flow(x), Trained::Flow(y)) => assert_close(family, &lb, &la, y, x, 1e-4),
            _ => panic!("{family}: unexpected models"),
        }
        assert_eq!(b.parallel.map(|p| p.devices), Some(2), "{family}");
    }
}

/// The GAN: every discriminator update and the generator's split over the replicas, the
/// latent draws and the penalty's random draws sliced from the whole batch's. The digits DCGAN
/// with R1 (its default) over 3 replicas (7 = 3 + 2 + 2), and a 2D MLP GAN with the WGAN-GP
/// penalty at interpolates and two discriminator updates per step over 2 (9 = 5 + 4), 5 steps
/// each: every generator loss, every discriminator loss and the final weights of both networks
/// within 1e-4 of one device. (Not the Wasserstein loss itself: its critic's output bias has an
/// identically zero gradient, so Adam's first step moves it by ±lr on the sign of rounding
/// noise, which differs between any two summation orders: measured, a 2e-4 gap at step 0.)
#[test]
fn cpu_replicas_train_the_gan_as_one_device_does() {
    use oxgen_models::gan::Penalty;
    use oxgen_train::family::{FamilyConfig, FamilyModel, Trained, train_family_on};
    let cpu = Device::flex();
    let digits = oxgen_train::data::digits8();
    let moons = oxgen_train::data::load("moons", 0, &Default::default()).unwrap();
    for (data, batch, replicas) in [(&digits, 7, 3), (&moons, 9, 2)] {
        let mut c = FamilyConfig::defaults("gan", data).unwrap();
        (c.steps, c.batch_size, c.checkpoint_every) = (5, batch, 0);
        if let FamilyModel::Gan(g) = &mut c.model
            && data.name == "moons"
        {
            g.penalty = Penalty::GradientPenalty { lambda: 1.0 };
            g.d_steps = 2;
        }
        let what = format!("gan on {}", data.name);
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = train_family_on(&c, data, &opts(one.path(), cpu.clone())).unwrap();
        let devices = vec![cpu.clone(); replicas];
        let b = train_family_on(&c, data, &on(two.path(), &devices)).unwrap();
        let (Trained::Gan(x), Trained::Gan(y)) = (&a.model, &b.model) else {
            panic!("{what}: unexpected models");
        };
        assert_close(&what, &losses(two.path()), &losses(one.path()), y, x, 1e-4);
        let (da, db) = (logged(one.path(), "d_loss"), logged(two.path(), "d_loss"));
        assert_eq!(da.len(), 5, "{what}: discriminator losses logged");
        for (s, (p, q)) in db.iter().zip(&da).enumerate() {
            assert!(
                (p - q).abs() <= 1e-4 * q.abs(),
                "{what}: step {s} D loss {p} vs {q}"
            );
        }
        let p = b.parallel.expect("a parallel summary");
        assert_eq!((p.devices, p.steps), (replicas, 5), "{what}");
    }
}

/// DP-SGD on two CPU replicas equals one device: each replica clips its shard's per-sample
/// gradients, the clipped sums are added on the first device and the noise is drawn there once.
/// The digits VAE, the digits GAN (its generated half clipped on the first device), the small UNet and the arithmetic GPT, 4 steps each:
/// every loss and ε, and the final weights, within 1e-4.
#[test]
fn two_cpu_replicas_train_under_dp_sgd_as_one_device_does() {
    use oxgen_models::gan::Penalty;
    use oxgen_train::family::{FamilyConfig, FamilyModel, Trained, train_family};
    use oxgen_train::privacy::dpsgd::DpConfig;
    let cpu = Device::flex();
    let pair = [cpu.clone(), cpu.clone()];
    let dp = Some(DpConfig {
        epsilon: Some(4.0),
        clip: 0.1,
        ..DpConfig::default()
    });
    let dirs = || (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let same_epsilons = |what: &str, a: &std::path::Path, b: &std::path::Path| {
        let (x, y) = (logged(a, "epsilon"), logged(b, "epsilon"));
        assert_eq!((x.len(), x), (4, y), "{what}: ε per step");
        let rows = logged(b, "dp_rows");
        assert!(
            rows.iter().all(|&r| r >= 2.0),
            "{what}: Poisson batches {rows:?}"
        );
        assert!(logged(b, "allreduce_ms").iter().all(|&t| t >= 0.0));
    };
    let data = oxgen_train::data::digits8();
    for family in ["vae", "gan"] {
        let mut c = FamilyConfig::defaults(family, &data).unwrap();
        (c.steps, c.batch_size, c.checkpoint_every) = (4, 32, 0);
        match &mut c.model {
            FamilyModel::Gan(g) => g.penalty = Penalty::None,
            FamilyModel::Vae(_) | FamilyModel::Flow(_) => {}
        }
        c.dp = dp.clone();
        let (one, two) = dirs();
        let a = train_family(&c, &opts(one.path(), cpu.clone())).unwrap();
        let b = train_family(&c, &on(two.path(), &pair)).unwrap();
        let (la, lb) = (losses(one.path()), losses(two.path()));
        match (&a.model, &b.model) {
            (Trained::Vae(x), Trained::Vae(y)) => assert_close(family, &lb, &la, y, x, 1e-4),
            (Trained::Gan(x), Trained::Gan(y)) => assert_close(family, &lb, &la, y, x, 1e-4),
            _ => panic!("{family}: unexpected models"),
        }
        same_epsilons(family, one.path(), two.path());
    }
    let mut u = tiny_unet(4, 16);
    u.dp = dp.clone();
    let (one, two) = dirs();
    let a = oxgen_train::diffusion::train(&u, &opts(one.path(), cpu.clone())).unwrap();
    let b = oxgen_train::diffusion::train(&u, &on(two.path(), &pair)).unwrap();
    let (la, lb) = (losses(one.path()), losses(two.path()));
    assert_close("dp unet", &lb, &la, &b.model, &a.model, 1e-4);
    same_epsilons("dp unet", one.path(), two.path());
    let mut g = tiny_gpt(4, 16);
    g.dp = dp;
    let (one, two) = dirs();
    let a = train_ar(&g, &opts(one.path(), cpu.clone())).unwrap();
    let b = train_ar(&g, &on(two.path(), &pair)).unwrap();
    let (la, lb) = (losses(one.path()), losses(two.path()));
    assert_close("dp gpt", &lb, &la, &b.model, &a.model, 1e-4);
    same_epsilons("dp gpt", one.path(), two.path());
}

/// Post-training on two CPU replicas equals one device: SFT (shards weighted by their
/// completion tokens), DPO (the reference on the whole batch, its values handed to each shard),
/// a reward model and GRPO (sampling on the first device, two updates per batch so the old
/// log-probabilities carry over), 4 steps each from a 5-step arithmetic base, every loss and
/// the final weights within 1e-4 (diffusion DPO: `guidance::…`, on its digits base).
#[test]
fn two_cpu_replicas_tune_as_one_device_does() {
    use oxgen_train::tune::dpo::{DpoConfig, dpo};
    use oxgen_train::tune::grpo::{GrpoConfig, grpo};
    use oxgen_train::tune::rm::{RmConfig, rm};
    use oxgen_train::tune::sft::{SftConfig, sft};
    let cpu = Device::flex();
    let pair = [cpu.clone(), cpu.clone()];
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let mut b = ArTrainConfig::defaults("arithmetic");
    b.steps = 5;
    train_ar(&b, &opts(&base, cpu.clone())).unwrap();
    // Preference pairs of sums (answers reversed, as the language writes them).
    let lines: String = (0..60)
        .map(|i| {
            let (x, y) = (10 + i, 37 + 2 * i);
            let right: String = format!("{:03}", x + y).chars().rev().collect();
            let wrong: String = format!("{:03}", x + y + 1).chars().rev().collect();
            format!(
                "{{\"prompt\": \"{x}+{y}=\", \"chosen\": \"{right}\", \"rejected\": \"{wrong}\"}}\n"
            )
        })
        .collect();
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(&pairs, lines).unwrap();
    let pairs = pairs.to_str().unwrap().to_string();
    let run = |name: &str, devices: &[Device]| -> (std::path::PathBuf, Vec<f32>) {
        let out = dir.path().join(format!("{name}-{}", devices.len()));
        let o = on(&out, devices);
        match name {
            "sft" => {
                let c = SftConfig {
                    steps: 4,
                    batch_size: 9,
                    eval_every: 4,
                    ..Default::default()
                };
                sft(&base, &c, &o).map(|r| params(&r.model))
            }
            "grpo" => {
                // A 5-step base gets no sum right: reward completions that end in an odd
                // digit instead, which some of a group's samples do and others do not.
                let c = GrpoConfig {
                    reward: "regex:.*[13579]".into(),
                    steps: 4,
                    prompts: 4,
                    group: 4,
                    updates_per_batch: 2,
                    eval_every: 4,
                    ..Default::default()
                };
                grpo(&base, &c, &o).map(|r| params(&r.model))
            }
            "dpo" => {
                let c = DpoConfig {
                    pairs: pairs.clone(),
                    pairs_from_verifier: 0,
                    nll_weight: 0.5,
                    steps: 4,
                    batch_size: 9,
                    eval_every: 4,
                    ..Default::default()
                };
                dpo(&base, &c, &o).map(|r| params(&r.model))
            }
            _ => {
                let c = RmConfig {
                    pairs: pairs.clone(),
                    pairs_from_verifier: 0,
                    steps: 4,
                    batch_size: 9,
                    eval_every: 4,
                    ..Default::default()
                };
                rm(&base, &c, &o).map(|r| params(&r.model))
            }
        }
        .map(|w| (out, w))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for name in ["sft", "dpo", "rm", "grpo"] {
        let ((one, w1), (two, w2)) = (run(name, &pair[..1]), run(name, &pair));
        if name != "rm" {
            // The runs moved the policy (GRPO's advantages are not all zero, say).
            let start = params(&oxgen_train::ar::load_ar(&base, &cpu).unwrap().model);
            assert!(
                w1.iter().zip(&start).any(|(a, b)| a != b),
                "{name}: no update"
            );
        }
        let (l1, l2) = (losses(&one), losses(&two));
        assert_weights_close(name, &w2, &w1, 1e-4);
        assert_eq!(l1.len(), 4, "{name}");
        for (s, (x, y)) in l2.iter().zip(&l1).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * y.abs(),
                "{name}: step {s} loss {x} vs {y}"
            );
        }
    }
}

/// Per-replica dropout streams come from the run seed: a 2-device GPT with dropout, in f16 with
/// its loss scaler, gives the same losses and weights bit for bit when run again.
#[test]
fn a_two_device_run_with_dropout_repeats_exactly() {
    let cpu = Device::flex();
    let mut c = tiny_gpt(4, 8);
    c.model.dropout = 0.2;
    c.precision = oxgen_models::Precision::F16;
    let pair = [cpu.clone(), cpu];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let x = train_ar(&c, &on(a.path(), &pair)).unwrap();
    let y = train_ar(&c, &on(b.path(), &pair)).unwrap();
    assert_eq!(losses(a.path()), losses(b.path()));
    crate::common::assert_same_weights(&x.model, &y.model);
    assert!(x.loss_scale.is_some() && x.parallel.is_some());
}

/// The digits UNet on two wgpu clients (lavapipe in CI) against one, 3 steps: the fused
/// GroupNorm+SiLU and attention kernels run on both devices, and the runs agree within 1e-4.
#[test]
fn two_wgpu_devices_train_the_unet_as_one_does() {
    let first = crate::wgpu_parity::wgpu_device();
    let second = oxgen_wgpu::device::second_client(oxgen_wgpu::DeviceChoice::Wgpu).unwrap();
    let c = tiny_unet(3, 8);
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = oxgen_train::diffusion::train(&c, &opts(one.path(), first.clone())).unwrap();
    let b = oxgen_train::diffusion::train(&c, &on(two.path(), &[first, second])).unwrap();
    assert_close(
        "unet on wgpu",
        &losses(two.path()),
        &losses(one.path()),
        &b.model,
        &a.model,
        1e-4,
    );
}
