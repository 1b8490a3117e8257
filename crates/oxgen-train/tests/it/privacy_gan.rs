//! DP-SGD for the GAN (the discriminator's real-row gradients clipped, the generated rows'
//! gradient added as public) and the conv VAE (transposed convolutions): per-sample gradients
//! against batches of one on the CPU and on wgpu, the public gradient's place in the update,
//! and DP training of both with an exact resume.

use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::optim::GradientsParams;
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::DataShape;
use oxgen_models::gan::{Gan, GanConfig, GanNet, Penalty};
use oxgen_models::ops::conv::conv_transpose2d;
use oxgen_models::vae::{Vae, VaeConfig, VaeNet};
use oxgen_train::trainer::optim::seeded_init;

use crate::privacy::{Jitter, check, flat_grads};
use crate::wgpu_parity::wgpu_device;

/// Transposed convolutions: the VAE's (kernel 4, stride 2, padding 1, with a bias), one with
/// output padding (kernel 3, stride 2, padding 1) and a rectangular one without a bias.
#[derive(Module, Debug)]
struct UpNet {
    a: ConvTranspose2d,
    b: ConvTranspose2d,
    c: ConvTranspose2d,
}

fn up_net(device: &Device) -> UpNet {
    UpNet {
        a: ConvTranspose2dConfig::new([2, 3], [4, 4])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .init(device),
        b: ConvTranspose2dConfig::new([3, 2], [3, 3])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_padding_out([1, 1])
            .init(device),
        c: ConvTranspose2dConfig::new([2, 2], [2, 3])
            .with_bias(false)
            .init(device),
    }
    .map(&mut Jitter(0))
}

fn rows(n: usize, f: usize, seed: usize) -> Vec<f32> {
    (0..n * f)
        .map(|i| (((i + seed) * 37 % 23) as f32 - 11.0) / 12.0)
        .collect()
}

fn per_sample_on(ad: &Device) {
    // Transposed convolutions on a 3×5 input.
    let net = up_net(ad);
    let x = Tensor::<4>::from_data(TensorData::new(rows(3, 30, 0), [3, 2, 3, 5]), ad);
    let loss = |n: &UpNet, r: std::ops::Range<usize>| {
        let up = |x: Tensor<4>, c: &ConvTranspose2d| conv_transpose2d(x, c);
        let y = up(x.clone().slice([r, 0..2, 0..3, 0..5]), &n.a);
        let y = up(burn::tensor::activation::silu(y), &n.b);
        let y = up(y, &n.c);
        (y.clone().square() + y.sin()).sum()
    };
    check(&net, 3, loss, 3, "transposed convolutions");

    // The conv VAE: encoder convolutions and head, decoder head and transposed convolutions.
    let shape = DataShape::Image {
        channels: 1,
        height: 4,
        width: 8,
    };
    let vae: Vae = VaeConfig::new()
        .with_net(VaeNet::Conv)
        .with_hidden(4)
        .with_latent(3)
        .init(shape, ad)
        .map(&mut Jitter(0));
    let x = Tensor::<2>::from_data(TensorData::new(rows(3, 32, 5), [3, 32]), ad);
    let loss = |m: &Vae, r: std::ops::Range<usize>| {
        let x = x.clone().slice([r, 0..32]);
        let (mean, logvar) = m.encode(x.clone());
        let nll = m.log_likelihood(x, m.decode(mean.clone())).neg();
        nll.sum() + (mean.square() + logvar.exp()).sum()
    };
    check(&vae, 3, loss, 6, "conv VAE");

    // The discriminators, MLP and DCGAN, on the non-saturating loss of real rows.
    for (net, taps) in [(GanNet::Mlp, 4), (GanNet::Dcgan, 3)] {
        let gan: Gan = GanConfig::new()
            .with_net(net)
            .with_hidden(4)
            .with_latent(2)
            .with_penalty(Penalty::None)
            .init(shape, ad)
            .map(&mut Jitter(0));
        let loss = |m: &Gan, r: std::ops::Range<usize>| {
            softplus(m.discriminate(x.clone().slice([r, 0..32])).neg(), 1.0).sum()
        };
        check(&gan, 3, loss, taps, &format!("{net:?} discriminator"));
    }
}

#[test]
fn gan_and_conv_vae_per_sample_gradients_equal_batches_of_one_on_the_cpu() {
    per_sample_on(&Device::flex().autodiff());
}

#[test]
fn gan_and_conv_vae_per_sample_gradients_equal_batches_of_one_on_wgpu() {
    per_sample_on(&wgpu_device().autodiff());
}

/// A public gradient passed to `dp_update` is added to the private, clipped and noised one as
/// it is: with SGD at rate 1 and the same draws, the two updates differ by exactly it.
/// `clipped_public` at a clip no row reaches is the plain mean gradient, and at a small one
/// its norm is at most the clip.
#[test]
fn dp_update_adds_the_public_gradient_as_it_is() {
    use oxgen_train::privacy::dpsgd::{DpConfig, dp_update};
    let ad = Device::flex().autodiff();
    let gan: Gan = seeded_init(&ad, 5, || {
        GanConfig::new()
            .with_hidden(6)
            .with_latent(2)
            .with_penalty(Penalty::None)
            .init(DataShape::Vector { dim: 3 }, &ad)
    });
    let plan = DpConfig {
        sigma: Some(1.0),
        ..DpConfig::default()
    }
    .plan(100, 10, 10)
    .unwrap();
    let x = Tensor::<2>::from_data(TensorData::new(rows(4, 3, 1), [4, 3]), &ad);
    let real = |m: &Gan| softplus(m.discriminate(x.clone()).neg(), 1.0).sum();
    let fake = Tensor::<2>::from_data(TensorData::new(rows(5, 3, 7), [5, 3]), &ad);
    let public = GradientsParams::from_grads(
        softplus(gan.discriminate(fake.clone()), 1.0)
            .mean()
            .backward(),
        &gan.discriminator,
    );
    let want = flat_grads(&gan, &public);
    // Clipped per row at a clip no row reaches, over the 5 rows: the plain mean gradient.
    let (clipped, _) = oxgen_train::privacy::dpsgd::clipped_public(
        &gan,
        |m: &Gan| softplus(m.discriminate(fake.clone()), 1.0).sum(),
        1e6,
        5.0,
    );
    for (id, g) in flat_grads(&gan, &clipped) {
        crate::privacy::assert_close(&g, &want[&id], "clipped_public at a large clip");
    }
    // At a small clip every row's share is at most C/5 in norm.
    let (small, _) = oxgen_train::privacy::dpsgd::clipped_public(
        &gan,
        |m: &Gan| softplus(m.discriminate(fake.clone()), 1.0).sum(),
        1e-3,
        5.0,
    );
    let norm: f32 = flat_grads(&gan, &small)
        .values()
        .flatten()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt();
    assert!(norm <= 1e-3 * 1.0001 && norm > 1e-4, "{norm}");
    let step = |public| {
        let mut sgd = burn::optim::SgdConfig::new().init();
        let (m, _, _) = dp_update(
            gan.clone(),
            &mut sgd,
            &plan,
            4,
            real,
            public,
            1.0,
            3,
            0,
            false,
        )
        .unwrap();
        crate::common::params(&m)
    };
    let (with, without) = (step(Some(public)), step(None));
    let diff: Vec<f32> = without.iter().zip(&with).map(|(a, b)| a - b).collect();
    // The public gradient in the model's parameter order.
    let mut order = Vec::new();
    struct Ids<'a>(&'a mut Vec<burn::module::ParamId>);
    impl burn::module::ModuleVisitor for Ids<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            self.0.push(p.id);
        }
    }
    gan.visit(&mut Ids(&mut order));
    let mut expected = Vec::new();
    let mut k = 0;
    for id in order {
        let n = gan_param_len(&gan, id);
        match want.get(&id) {
            Some(g) => expected.extend_from_slice(g),
            None => expected.extend(std::iter::repeat_n(0.0, n)),
        }
        k += n;
    }
    assert_eq!(k, diff.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = diff
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        scale > 1e-3 && err <= 1e-5 * scale.max(1.0),
        "{err} of {scale}"
    );
}

fn gan_param_len(gan: &Gan, id: burn::module::ParamId) -> usize {
    struct Len(burn::module::ParamId, usize);
    impl burn::module::ModuleVisitor for Len {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            if p.id == self.0 {
                self.1 = p.val().dims().iter().product();
            }
        }
    }
    let mut l = Len(id, 0);
    gan.visit(&mut l);
    l.1
}

fn model_params(t: &oxgen_train::family::Trained) -> Vec<f32> {
    match t {
        oxgen_train::family::Trained::Gan(m) => crate::common::params(m),
        oxgen_train::family::Trained::Vae(m) => crate::common::params(m),
        oxgen_train::family::Trained::Flow(m) => crate::common::params(m),
    }
}

/// The digits DCGAN (two discriminator updates per step: 12 private batches) and the conv VAE
/// train under DP-SGD: ε rises every step to the plan's, and a run stopped and resumed equals
/// a straight one bit for bit. A GAN with a gradient penalty or spectral normalization is
/// refused by name.
#[test]
fn dp_gan_and_conv_vae_train_and_resume_exactly() {
    use oxgen_train::family::{FamilyConfig, FamilyModel, train_family};
    let data = oxgen_train::data::digits8();
    let dp = crate::privacy::dp_vae(6, 4.0).dp;
    let mut gan = FamilyConfig::defaults("gan", &data).unwrap();
    let FamilyModel::Gan(g) = &mut gan.model else {
        panic!("a GAN")
    };
    g.penalty = Penalty::None;
    g.d_steps = 2;
    gan.data = "digits8".into();
    gan.steps = 6;
    gan.checkpoint_every = 0;
    gan.eval_samples = 100;
    gan.dp = dp.clone();
    let (straight, logged, resumed) =
        crate::privacy::dp_six_steps_and_resumed(|o| train_family(&gan, o), |r| r.dp.as_ref());
    // The plan counts every discriminator update: σ is the one for 12 steps.
    let (plan, eps) = (straight.dp.as_ref().unwrap(), logged);
    let twelve = dp
        .as_ref()
        .unwrap()
        .plan(plan.n, gan.batch_size, 12)
        .unwrap();
    assert_eq!(plan.sigma, twelve.sigma);
    assert!((eps[5] - plan.planned_epsilon).abs() < 1e-9);
    assert_eq!(model_params(&straight.model), model_params(&resumed.model));

    let mut vae = crate::privacy::dp_vae(6, 4.0);
    let FamilyModel::Vae(v) = &mut vae.model else {
        panic!("a VAE")
    };
    v.net = VaeNet::Conv;
    v.hidden = 8;
    let (straight, _, resumed) =
        crate::privacy::dp_six_steps_and_resumed(|o| train_family(&vae, o), |r| r.dp.as_ref());
    assert!(straight.last_loss.is_finite());
    assert_eq!(model_params(&straight.model), model_params(&resumed.model));

    for (penalty, sn, want) in [
        (Penalty::R1 { gamma: 0.1 }, false, "penalty"),
        (Penalty::None, true, "spectral_norm"),
    ] {
        let mut c = gan.clone();
        let FamilyModel::Gan(g) = &mut c.model else {
            panic!("a GAN")
        };
        g.penalty = penalty;
        g.spectral_norm = sn;
        let dir = tempfile::tempdir().unwrap();
        match train_family(&c, &crate::common::opts(dir.path(), Device::flex())) {
            Err(oxgen_train::Error::Privacy { parameter, .. }) => assert_eq!(parameter, want),
            other => panic!(
                "expected a privacy error on {want}, got {:?}",
                other.map(|r| r.steps)
            ),
        }
    }
}

/// The membership audit attacks flows (exact log-likelihood), GANs (the discriminator's
/// logit, LOGAN) and diffusion (the denoising loss), 32 members against 32 held-out digits: a
/// non-private flow after 300 steps memorises them (loss-threshold AUC above 0.9; measured
/// 1.0), a non-private DCGAN without a penalty after 3,000 steps too (discriminator AUC above
/// 0.75; measured 0.89), and a small UNet after 400 steps (above 0.75; measured 1.0); the flow
/// at ε = 1 falls toward chance (AUC within 0.2 of 0.5) with its ε lower bound below the
/// accountant's.
#[test]
fn membership_audit_attacks_flows_gans_and_diffusion() {
    use oxgen_train::family::{FamilyConfig, FamilyModel};
    use oxgen_train::privacy::audit::{AuditOptions, membership_audit};
    use oxgen_train::privacy::audit_target::AuditRecipe;
    let data = oxgen_train::data::digits8();
    let opts = AuditOptions {
        members: 32,
        references: 0,
        ..AuditOptions::default()
    };
    let train = oxgen_train::trainer::TrainOptions {
        device: Device::flex(),
        ..Default::default()
    };
    let recipe = |family: &str, steps: usize| {
        let mut c = FamilyConfig::defaults(family, &data).unwrap();
        c.data = "digits8".into();
        c.steps = steps;
        c
    };
    let flow = membership_audit(&AuditRecipe::Family(recipe("flow", 300)), &opts, &train).unwrap();
    assert_eq!(flow.attacks[0].name, "loss threshold");
    assert!(flow.attacks[0].auc > 0.9, "{:?}", flow.attacks);

    let mut gan = recipe("gan", 3000);
    let FamilyModel::Gan(g) = &mut gan.model else {
        panic!("a GAN")
    };
    g.penalty = Penalty::None;
    let r = membership_audit(&AuditRecipe::Family(gan), &opts, &train).unwrap();
    assert_eq!(r.attacks[0].name, "discriminator threshold");
    assert!(r.attacks[0].auc > 0.75, "{:?}", r.attacks);

    // A small UNet (8 channels), unconditional.
    let mut diffusion = oxgen_train::TrainConfig::defaults("digits8", data.shape, None);
    diffusion.model.denoiser = oxgen_models::diffusion::DenoiserConfig::UNet(
        oxgen_models::diffusion::unet::UNetConfig::new()
            .with_channels(8)
            .with_groups(2)
            .with_heads(2),
    );
    diffusion.steps = 400;
    let r = membership_audit(&AuditRecipe::Diffusion(diffusion), &opts, &train).unwrap();
    assert_eq!(r.attacks[0].name, "loss threshold");
    assert!(r.attacks[0].auc > 0.75, "{:?}", r.attacks);

    let mut private = recipe("flow", 300);
    private.batch_size = 16;
    private.dp = crate::privacy::dp_vae(300, 1.0).dp;
    let r = membership_audit(&AuditRecipe::Family(private), &opts, &train).unwrap();
    let eps = r.accountant_epsilon.expect("a DP target");
    assert!((r.attacks[0].auc - 0.5).abs() < 0.2, "{:?}", r.attacks);
    for a in &r.attacks {
        assert!(a.epsilon_lower < eps, "{a:?} against ε = {eps}");
    }
}
