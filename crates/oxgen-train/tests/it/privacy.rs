//! DP-SGD's per-sample gradients against a loop over batches of one, on the CPU and on wgpu
//! (lavapipe in CI), for flat rows and sequences, with and without a bias, through both of the
//! norm paths (Gram matrices and materialised gradients), for embeddings and LayerNorm, for
//! convolutions and GroupNorm (with and without the fused SiLU), and for a whole UNet.

use oxgen_train::trainer::optim::seeded_init;
use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::optim::GradientsParams;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ops::conv::conv2d;
use oxgen_models::ops::embedding::embedding;
use oxgen_models::ops::group_norm::{group_norm, group_norm_silu_of};
use oxgen_models::ops::layer_norm::layer_norm;
use oxgen_models::ops::linear::linear;
use oxgen_models::ops::per_sample;

use crate::wgpu_parity::wgpu_device;

#[derive(Module, Debug)]
struct Net {
    a: Linear,
    b: Linear,
    c: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Net {
            a: LinearConfig::new(5, 7).init(device),
            b: LinearConfig::new(7, 3).init(device),
            c: LinearConfig::new(3, 2).with_bias(false).init(device),
        }
    }

    /// The sum over every row of a nonlinear loss: the sum of per-sample losses.
    fn loss_sum<const D: usize>(&self, x: Tensor<D>) -> Tensor<1> {
        let y = linear(silu(linear(silu(linear(x, &self.a)), &self.b)), &self.c);
        (y.clone().square() + y.sin()).sum()
    }
}

pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Every parameter's gradient in `grads`, flattened, by id.
pub(crate) fn flat_grads<M: Module>(
    net: &M,
    grads: &GradientsParams,
) -> HashMap<ParamId, Vec<f32>> {
    struct V<'a>(&'a GradientsParams, HashMap<ParamId, Vec<f32>>);
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(p.id) {
                self.1.insert(p.id, host(g));
            }
        }
    }
    let mut v = V(grads, HashMap::new());
    net.visit(&mut v);
    v.1
}

pub(crate) fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert_eq!(got.len(), want.len(), "{what}");
    assert!(
        err <= 1e-5 * scale,
        "{what}: max error {err} against scale {scale}"
    );
}

/// Per-sample gradients, norms and the clipped sum from one tapped backward pass equal those
/// of `b` separate backward passes. `loss(net, rows)` is the summed loss of the batch rows
/// `rows`.
pub(crate) fn check<M: Module>(
    net: &M,
    b: usize,
    loss: impl Fn(&M, std::ops::Range<usize>) -> Tensor<1>,
    taps_expected: usize,
    name: &str,
) {
    let (total, taps) = per_sample::record(|| loss(net, 0..b));
    assert_eq!(taps.len(), taps_expected, "{name}: one tap per layer");
    let grads = total.backward();
    let mut got: HashMap<ParamId, Vec<Vec<f32>>> = HashMap::new();
    let mut sq = vec![0f32; b];
    let mut device = None;
    for t in &taps {
        for (id, g) in t.per_sample(&grads) {
            device = Some(g.device());
            let len = g.dims()[1];
            let rows: Vec<Vec<f32>> = host(g).chunks(len).map(<[f32]>::to_vec).collect();
            for (i, r) in rows.iter().enumerate() {
                sq[i] += r.iter().map(|v| v * v).sum::<f32>();
            }
            got.insert(id, rows);
        }
    }
    // Norms: the taps' ghost norms equal the materialised ones.
    let ghost: Vec<f32> = taps
        .iter()
        .map(|t| host(t.sq_norms(&grads)))
        .fold(vec![0f32; b], |acc, v| {
            acc.iter().zip(v).map(|(a, b)| a + b).collect()
        });
    assert_close(&ghost, &sq, &format!("{name}: squared norms"));
    // The weighted sum equals Σ scaleᵢ·gᵢ.
    let scale: Vec<f32> = (0..b).map(|i| 0.25 + i as f32 * 0.5).collect();
    let st = Tensor::<1>::from_data(TensorData::new(scale.clone(), [b]), &device.unwrap());
    for t in &taps {
        for (id, g) in t.weighted_sum(&grads, &st) {
            let rows = &got[&id];
            let want: Vec<f32> = (0..rows[0].len())
                .map(|j| (0..b).map(|i| scale[i] * rows[i][j]).sum())
                .collect();
            assert_close(&host(g), &want, &format!("{name}: weighted sum"));
        }
    }
    // The loop over batches of one.
    for i in 0..b {
        let gp = GradientsParams::from_grads(loss(net, i..i + 1).backward(), net);
        for (id, want) in flat_grads(net, &gp) {
            assert_close(&got[&id][i], &want, &format!("{name}: sample {i}"));
        }
    }
}

/// Tokens through an embedding, a LayerNorm and an affine layer.
#[derive(Module, Debug)]
struct TokNet {
    emb: Embedding,
    ln: LayerNorm,
    out: Linear,
}

fn per_sample_gradients_on(device: Device) {
    let ad = device.autodiff();
    // Seeded under the process-wide lock: burn's generator is shared with the other tests.
    let net = seeded_init(&ad, 7, || Net::new(&ad));
    let rows: Vec<f32> = (0..5 * 5)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(rows, [5, 5]), &ad);
    check(
        &net,
        5,
        |n, r| n.loss_sum(x.clone().slice([r, 0..5])),
        3,
        "flat rows",
    );
    let seq: Vec<f32> = (0..4 * 3 * 5)
        .map(|i| ((i * 29 % 13) as f32 - 6.0) / 5.0)
        .collect();
    let x = Tensor::<3>::from_data(TensorData::new(seq, [4, 3, 5]), &ad);
    check(
        &net,
        4,
        |n, r| n.loss_sum(x.clone().slice([r, 0..3, 0..5])),
        3,
        "sequences",
    );
    // Tokens (a repeated id within a sample included) through embedding, LayerNorm, affine.
    let tok = TokNet {
        emb: EmbeddingConfig::new(11, 6).init(&ad),
        ln: LayerNormConfig::new(6).init(&ad),
        out: LinearConfig::new(6, 4).init(&ad),
    };
    // LayerNorm starts at γ = 1, β = 0; move them so that their gradients are generic.
    let tok = tok.map(&mut Jitter(0));
    let ids: Vec<i64> = vec![1, 4, 4, 9, 0, 2, 7, 7, 10, 3, 5, 1, 6, 8, 2];
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [3, 5]), &ad);
    check(
        &tok,
        3,
        |n, r| {
            let h = embedding(ids.clone().slice([r, 0..5]), &n.emb);
            let y = linear(silu(layer_norm(h, &n.ln, 1e-5)), &n.out);
            (y.clone().square() + y.sin()).sum()
        },
        3,
        "tokens",
    );
}

/// Convolutions (asymmetric padding, stride 2, a rectangular kernel, no bias) and GroupNorm
/// (with the UNet's fused SiLU and without).
#[derive(Module, Debug)]
struct ConvNet {
    c1: Conv2d,
    n1: GroupNorm,
    c2: Conv2d,
    n2: GroupNorm,
}

fn conv_net(device: &Device) -> ConvNet {
    use burn::nn::PaddingConfig2d;
    ConvNet {
        c1: Conv2dConfig::new([2, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 0, 2, 1))
            .init(device),
        n1: GroupNormConfig::new(2, 4).init(device),
        c2: Conv2dConfig::new([4, 4], [2, 3])
            .with_stride([2, 2])
            .with_bias(false)
            .init(device),
        n2: GroupNormConfig::new(2, 4).init(device),
    }
    .map(&mut Jitter(0))
}

fn conv_images(device: &Device) -> Tensor<4> {
    let px: Vec<f32> = (0..3 * 2 * 5 * 7)
        .map(|i| ((i * 31 % 17) as f32 - 8.0) / 6.0)
        .collect();
    Tensor::<4>::from_data(TensorData::new(px, [3, 2, 5, 7]), device)
}

/// The number of parameters the taps cover (with no parameter twice).
fn covered(taps: &[per_sample::Tap], grads: &burn::tensor::Gradients) -> usize {
    taps.iter()
        .flat_map(|t| t.per_sample(grads))
        .map(|(_, g)| g.dims()[1])
        .sum()
}

/// Convolutions and GroupNorm, then (with `unet`) a whole UNet, against batches of one.
fn conv_and_unet_on(ad: &Device, unet: bool) {
    let net = conv_net(ad);
    let x = conv_images(ad);
    let loss = |n: &ConvNet, r: std::ops::Range<usize>| {
        let h = group_norm_silu_of(conv2d(x.clone().slice([r, 0..2, 0..5, 0..7]), &n.c1), &n.n1);
        let y = group_norm(conv2d(h, &n.c2), &n.n2);
        (y.clone().square() + y.sin()).sum()
    };
    check(&net, 3, loss, 4, "convolutions and GroupNorm");
    if !unet {
        return;
    }
    // A whole (small) UNet, class-conditional: every parameter has a tap.
    let unet = oxgen_models::diffusion::unet::UNetConfig::new()
        .with_channels(4)
        .with_groups(2)
        .with_heads(2)
        .init(1, Some(3), ad)
        .map(&mut Jitter(0));
    let px: Vec<f32> = (0..3 * 4 * 6)
        .map(|i| ((i * 13 % 19) as f32 - 9.0) / 7.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(px, [3, 1, 4, 6]), ad);
    let t = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 250.0, 900.0], [3]), ad);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2, 3], [3]), ad);
    let loss = |n: &oxgen_models::diffusion::unet::UNet, r: std::ops::Range<usize>| {
        let y = n.forward(
            x.clone().slice([r.clone(), 0..1, 0..4, 0..6]),
            t.clone().slice([r.clone()]),
            Some(labels.clone().slice([r])),
        );
        (y.clone().square() + y.sin()).sum()
    };
    // Taps: 3 in the embedding, 33 in the six residual blocks, 6 in the two attention blocks,
    // 4 convolutions and the output GroupNorm outside them.
    check(&unet, 3, loss, 47, "UNet");
    let (total, taps) = per_sample::record(|| loss(&unet, 0..3));
    let grads = total.backward();
    assert_eq!(
        covered(&taps, &grads),
        unet.num_params(),
        "UNet: every parameter tapped"
    );
}

/// Adds a small, index-dependent offset to every parameter.
pub(crate) struct Jitter(pub(crate) usize);

impl burn::module::ModuleMapper for Jitter {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.0 += 1;
        let k = self.0 as f64;
        p.map(|t| {
            (t.clone() + t.ones_like().mul_scalar(0.1 * k).sin())
                .detach()
                .require_grad()
        })
    }
}

#[test]
fn per_sample_gradients_equal_batches_of_one_on_the_cpu() {
    per_sample_gradients_on(Device::flex());
    conv_and_unet_on(&Device::flex().autodiff(), true);
}

#[test]
fn per_sample_gradients_equal_batches_of_one_on_wgpu() {
    per_sample_gradients_on(wgpu_device());
    // The layers, not the whole UNet: its batches of one take minutes on lavapipe.
    conv_and_unet_on(&wgpu_device().autodiff(), false);
}

fn vae_params(t: &oxgen_train::family::Trained) -> Vec<f32> {
    match t {
        oxgen_train::family::Trained::Vae(m) => crate::common::params(m),
        _ => panic!("a VAE"),
    }
}

pub(crate) fn dp_vae(steps: usize, epsilon: f64) -> oxgen_train::family::FamilyConfig {
    use oxgen_train::privacy::dpsgd::DpConfig;
    let data = oxgen_train::data::digits8();
    let mut c = oxgen_train::family::FamilyConfig::defaults("vae", &data).unwrap();
    c.data = "digits8".into();
    c.steps = steps;
    c.checkpoint_every = 0;
    c.eval_samples = 200;
    c.iwae_k = 4;
    c.dp = Some(DpConfig {
        epsilon: Some(epsilon),
        clip: 0.1,
        ..DpConfig::default()
    });
    c
}

/// A DP-SGD run of the digits VAE spends its budget and no more (ε after the last step within
/// the search's 0.01 below the target, logged every step and rising), keeps its ledger in the
/// checkpoint, and resumes bit-exactly. Bad privacy settings are refused by name before
/// anything trains.
#[test]
fn dp_vae_spends_its_budget_and_resumes_exactly() {
    use oxgen_train::family::train_family;
    let config = dp_vae(24, 2.0);
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = train_family(
        &config,
        &crate::common::opts(straight_dir.path(), Device::flex()),
    )
    .unwrap();
    let plan = straight.dp.as_ref().expect("a DP plan");
    assert!(
        plan.planned_epsilon <= 2.0 && plan.planned_epsilon > 1.99,
        "{plan:?}"
    );
    let eps = logged_epsilons(straight_dir.path());
    assert_eq!(eps.len(), 24);
    assert!(eps.windows(2).all(|w| w[1] > w[0]), "{eps:?}");
    assert!((eps[23] - plan.planned_epsilon).abs() < 1e-9);

    let split_dir = tempfile::tempdir().unwrap();
    let mut first = crate::common::opts(split_dir.path(), Device::flex());
    first.stop_after = Some(10);
    train_family(&config, &first).unwrap();
    let ledger: oxgen_train::privacy::Ledger = serde_json::from_slice(
        &std::fs::read(
            split_dir
                .path()
                .join("checkpoints/step-00000010/privacy.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ledger.steps(), 10);
    let mut second = crate::common::opts(split_dir.path(), Device::flex());
    second.resume = true;
    let resumed = train_family(&config, &second).unwrap();
    assert_eq!(vae_params(&straight.model), vae_params(&resumed.model));

    // Refused by name: δ ≥ 1/N, a budget below what RDP can certify, a GAN with its default
    // R1 penalty.
    let named = |c: oxgen_train::family::FamilyConfig, want: &str| {
        let dir = tempfile::tempdir().unwrap();
        match train_family(&c, &crate::common::opts(dir.path(), Device::flex())) {
            Err(oxgen_train::Error::Privacy { parameter, .. }) => assert_eq!(parameter, want),
            other => panic!(
                "expected a privacy error on {want}, got {:?}",
                other.map(|r| r.steps)
            ),
        }
    };
    let mut c = dp_vae(5, 2.0);
    c.dp.as_mut().unwrap().delta = 0.01;
    named(c, "delta");
    named(dp_vae(5, 0.1), "epsilon");
    let mut c = dp_vae(5, 2.0);
    c.dp.as_mut().unwrap().clip = 0.0;
    named(c, "clip");
    let data = oxgen_train::data::digits8();
    let mut gan = oxgen_train::family::FamilyConfig::defaults("gan", &data).unwrap();
    gan.dp = dp_vae(5, 2.0).dp;
    named(gan, "penalty");
}

/// The membership audit (`members` 128 digits, 1,500 steps, LiRA with 2 reference models):
/// the non-private VAE memorises (loss-attack AUC above 0.75; measured 1.0), the DP one at
/// ε = 1 does not (AUC within 0.1 of 0.5; measured 0.514), and the DP run's empirical ε lower
/// bounds all stay below its accountant's ε.
#[test]
fn membership_audit_separates_private_from_non_private() {
    use oxgen_train::privacy::audit::{AuditOptions, membership_audit};
    use oxgen_train::privacy::audit_target::AuditRecipe;
    let opts = AuditOptions {
        members: 128,
        references: 2,
        canaries: 8,
        ..AuditOptions::default()
    };
    let train = oxgen_train::trainer::TrainOptions {
        device: Device::flex(),
        ..Default::default()
    };
    let mut plain = dp_vae(1500, 1.0);
    plain.dp = None;
    let r = membership_audit(&AuditRecipe::Family(plain), &opts, &train).unwrap();
    println!("non-private: {:?}", r.attacks);
    assert!(r.attacks[0].auc > 0.75, "{:?}", r.attacks[0]);
    let r = membership_audit(&AuditRecipe::Family(dp_vae(1500, 1.0)), &opts, &train).unwrap();
    println!("DP ε = 1: {:?}", r.attacks);
    assert!((r.attacks[0].auc - 0.5).abs() < 0.1, "{:?}", r.attacks[0]);
    let e = r.accountant_epsilon.unwrap();
    for a in &r.attacks {
        assert!(a.epsilon_lower <= e, "{a:?} against the accountant's {e}");
    }
    assert_eq!(r.attacks.len(), 4);
}

/// `dp_update` refuses, by name, a layer without per-sample gradients and a tapped weight that
/// is used again outside its layer (what a head tied to a tapped embedding would do); a plain
/// model steps.
#[test]
fn dp_update_refuses_untapped_and_reused_parameters() {
    use oxgen_train::privacy::dpsgd::{DpConfig, dp_update};
    let ad = Device::flex().autodiff();
    let net = seeded_init(&ad, 3, || Net::new(&ad));
    let plan = DpConfig {
        sigma: Some(1.0),
        ..DpConfig::default()
    }
    .plan(100, 10, 10)
    .unwrap();
    let rows: Vec<f32> = (0..4 * 5).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = Tensor::<2>::from_data(TensorData::new(rows, [4, 5]), &ad);
    let mut optim = burn::optim::AdamWConfig::new().init();
    let step = |net: Net, optim: &mut _, f: &dyn Fn(&Net) -> Tensor<1>| {
        dp_update(net, optim, &plan, 4, f, None, 1e-3, 1, 0, true).map(|(m, _, s)| (m, s))
    };
    let named = |r: Result<(Net, oxgen_train::privacy::dpsgd::DpStats), oxgen_train::Error>| match r
    {
        Err(oxgen_train::Error::Privacy { parameter, .. }) => assert_eq!(parameter, "model"),
        other => panic!(
            "expected a privacy error on the model, got {:?}",
            other.map(|r| r.1)
        ),
    };
    // The last layer by burn's own forward: no tap.
    named(step(net.clone(), &mut optim, &|n: &Net| {
        let h = silu(linear(silu(linear(x.clone(), &n.a)), &n.b));
        n.c.forward(h).sum()
    }));
    // A tapped weight used once more outside its layer.
    named(step(net.clone(), &mut optim, &|n: &Net| {
        n.loss_sum(x.clone()) + n.a.weight.val().sum()
    }));
    let (_, stats) = step(net, &mut optim, &|n: &Net| n.loss_sum(x.clone())).unwrap();
    assert_eq!(stats.batch, 4);
    assert!(stats.mean_norm > 0.0);
}

/// A DP run of 6 steps at target ε = 4, straight and again stopped after 3 and resumed (each
/// in its own folder): checks that the plan spends 4 to within the search's 0.01 and that ε
/// was logged after every step, rising; returns the straight run, its ε log and the resumed
/// run.
pub(crate) fn dp_six_steps_and_resumed<R>(
    train: impl Fn(&oxgen_train::TrainOptions) -> oxgen_train::Result<R>,
    plan: impl Fn(&R) -> Option<&oxgen_train::privacy::dpsgd::DpPlan>,
) -> (R, Vec<f64>, R) {
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = train(&crate::common::opts(straight_dir.path(), Device::flex())).unwrap();
    let p = plan(&straight).expect("a DP plan");
    assert!(
        p.planned_epsilon <= 4.0 && p.planned_epsilon > 3.99,
        "{p:?}"
    );
    let eps = logged_epsilons(straight_dir.path());
    assert_eq!(eps.len(), 6);
    assert!(eps.windows(2).all(|w| w[1] > w[0]), "{eps:?}");
    let split_dir = tempfile::tempdir().unwrap();
    let mut first = crate::common::opts(split_dir.path(), Device::flex());
    first.stop_after = Some(3);
    train(&first).unwrap();
    let mut second = crate::common::opts(split_dir.path(), Device::flex());
    second.resume = true;
    let resumed = train(&second).unwrap();
    (straight, eps, resumed)
}

/// ε after every step of a run, from its `metrics.jsonl`.
pub(crate) fn logged_epsilons(dir: &std::path::Path) -> Vec<f64> {
    crate::common::logged(dir, "epsilon")
}

/// DP-SGD trains the diffusion family end to end: a small class-conditional UNet on the digits
/// (convolutions, GroupNorm, attention projections and embeddings, all tapped; `dp_update`
/// refuses a model with an untapped parameter) logs a rising ε every step up to the plan's, and
/// resumes bit-exactly from its ledger; the 2D MLP denoiser trains under DP too.
#[test]
fn dp_diffusion_trains_both_denoisers_and_resumes_exactly() {
    use oxgen_models::diffusion::DenoiserConfig;
    use oxgen_models::diffusion::unet::UNetConfig;
    use oxgen_train::diffusion::train;
    use oxgen_train::privacy::dpsgd::DpConfig;
    let dp = Some(DpConfig {
        epsilon: Some(4.0),
        ..DpConfig::default()
    });
    let data = oxgen_train::data::digits8();
    let mut c = oxgen_train::TrainConfig::defaults("digits8", data.shape, data.num_classes);
    c.model.denoiser = DenoiserConfig::UNet(
        UNetConfig::new()
            .with_channels(8)
            .with_groups(2)
            .with_heads(2),
    );
    c.steps = 6;
    c.batch_size = 16;
    c.checkpoint_every = 0;
    c.schedule.warmup_steps = 2;
    c.dp = dp.clone();
    let (straight, eps, resumed) = dp_six_steps_and_resumed(|o| train(&c, o), |r| r.dp.as_ref());
    let plan = straight.dp.as_ref().expect("a DP plan");
    assert!((eps[5] - plan.planned_epsilon).abs() < 1e-9);
    assert_eq!(
        crate::common::params(&straight.model),
        crate::common::params(&resumed.model)
    );
    assert_eq!(
        crate::common::params(&straight.ema),
        crate::common::params(&resumed.ema)
    );

    let mut m = crate::common::tiny_2d("moons", 8);
    m.dp = dp;
    let dir = tempfile::tempdir().unwrap();
    let r = crate::common::run(&m, &crate::common::opts(dir.path(), Device::flex()));
    assert!(r.dp.is_some() && r.last_loss.is_finite());
    assert_eq!(logged_epsilons(dir.path()).len(), 8);
}
