//! DP-SGD for normalizing flows: per-sample gradients through ActNorm and the LU 1×1
//! convolution (whose log-determinants use their parameters directly, so their taps carry
//! their own formula) and the couplings' conditioners (MLP and CNN), against batches of one;
//! and DP training of the flow family with an exact resume.

use oxgen_train::trainer::optim::seeded_init;
use std::collections::HashMap;

use burn::module::{Module, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::DataShape;
use oxgen_models::flow::coupling::CouplingKind;
use oxgen_models::flow::{Flow, FlowConfig};
use oxgen_models::generative::ExactDensity;
use oxgen_models::ops::per_sample;
use oxgen_train::privacy::dpsgd::per_sample_sq_norms;

use crate::privacy::{assert_close, flat_grads, host};
use crate::wgpu_parity::wgpu_device;

/// Each sample's gradient of −log p(x) from one tapped backward pass against its own
/// backward pass (normwise, 1e-5), its norm by [`per_sample_sq_norms`], every parameter
/// covered.
fn check_flow(ad: &Device, config: FlowConfig, shape: DataShape, name: &str) {
    // Seeded under the process-wide lock: burn's generator is shared with the other tests.
    let flow: Flow = seeded_init(ad, 9, || config.init(shape, ad)).map(&mut Nudge(0));
    let (b, f) = (3, shape.numel());
    let rows: Vec<f32> = (0..b * f)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 12.0)
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(rows, [b, f]), ad);
    let loss =
        |m: &Flow, r: std::ops::Range<usize>| m.log_prob(x.clone().slice([r, 0..f])).sum().neg();
    let (total, taps) = per_sample::record(|| loss(&flow, 0..b));
    let grads = total.backward();
    let mut got: HashMap<ParamId, Vec<f32>> = HashMap::new();
    let mut len: HashMap<ParamId, usize> = HashMap::new();
    for t in &taps {
        for (id, g) in t.per_sample(&grads) {
            len.insert(id, g.dims()[1]);
            let g = host(g);
            match got.get_mut(&id) {
                Some(acc) => acc.iter_mut().zip(g).for_each(|(a, v)| *a += v),
                None => {
                    got.insert(id, g);
                }
            }
        }
    }
    assert_eq!(
        len.values().sum::<usize>(),
        flow.num_params(),
        "{name}: every parameter tapped"
    );
    let ghost = host(per_sample_sq_norms(&taps, &grads));
    let mut loop_sq = vec![0f32; b];
    for i in 0..b {
        let gp = GradientsParams::from_grads(loss(&flow, i..i + 1).backward(), &flow);
        let mut diff = 0f64;
        for (id, want) in flat_grads(&flow, &gp) {
            let row = &got[&id][i * len[&id]..(i + 1) * len[&id]];
            // Each parameter on its own scale too (a large coupling gradient must not hide an
            // ActNorm's).
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let worst = row
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, w)| m.max((a - w).abs()));
            assert!(
                worst <= 1e-4 * scale,
                "{name}: sample {i}: a parameter of {} entries off by {worst:e} of {scale:e}",
                want.len()
            );
            diff += row
                .iter()
                .zip(&want)
                .map(|(a, w)| f64::from(a - w).powi(2))
                .sum::<f64>();
            loop_sq[i] += want.iter().map(|v| v * v).sum::<f32>();
        }
        let rel = (diff / f64::from(loop_sq[i])).sqrt();
        assert!(rel <= 1e-5, "{name}: sample {i}: relative error {rel:e}");
    }
    assert_close(&ghost, &loop_sq, &format!("{name}: squared norms"));
}

/// Moves every parameter off its start by a small, index-dependent offset (at most 0.2: the
/// couplings' scales are exponentials, and larger offsets give gradients in the thousands,
/// next to which an ActNorm's are lost).
struct Nudge(usize);

impl burn::module::ModuleMapper for Nudge {
    fn map_float<const D: usize>(
        &mut self,
        p: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        self.0 += 1;
        let k = self.0 as f64;
        p.map(|t| {
            (t.clone() + t.ones_like().mul_scalar(0.2 * (0.7 * k).sin()))
                .detach()
                .require_grad()
        })
    }
}

fn flows_on(ad: &Device) {
    let small = FlowConfig::new().with_steps(2).with_hidden(8);
    check_flow(
        ad,
        small.clone(),
        DataShape::Vector { dim: 4 },
        "vector flow, affine",
    );
    check_flow(
        ad,
        small.clone().with_coupling(CouplingKind::Spline {
            bins: 4,
            bound: 3.0,
        }),
        DataShape::Vector { dim: 3 },
        "vector flow, spline",
    );
    check_flow(
        ad,
        small.with_scales(1).with_levels(17),
        DataShape::Image {
            channels: 1,
            height: 4,
            width: 4,
        },
        "image flow",
    );
}

#[test]
fn flow_per_sample_gradients_equal_batches_of_one_on_the_cpu() {
    flows_on(&Device::flex().autodiff());
}

#[test]
fn flow_per_sample_gradients_equal_batches_of_one_on_wgpu() {
    flows_on(&wgpu_device().autodiff());
}

fn flow_params(t: &oxgen_train::family::Trained) -> Vec<f32> {
    match t {
        oxgen_train::family::Trained::Flow(m) => crate::common::params(m),
        _ => panic!("a flow"),
    }
}

/// The flow family trains under DP-SGD (its ActNorms start as the identity, not from the
/// private rows): ε rises every step to the plan's, and a run stopped and resumed equals a
/// straight one bit for bit.
#[test]
fn dp_flow_trains_and_resumes_exactly() {
    use oxgen_train::family::train_family;
    let data = oxgen_train::data::digits8();
    let mut c = oxgen_train::family::FamilyConfig::defaults("flow", &data).unwrap();
    c.data = "digits8".into();
    c.steps = 6;
    c.checkpoint_every = 0;
    c.eval_samples = 100;
    c.dp = crate::privacy::dp_vae(6, 4.0).dp;
    let (straight, _, resumed) =
        crate::privacy::dp_six_steps_and_resumed(|o| train_family(&c, o), |r| r.dp.as_ref());
    assert!(straight.last_loss.is_finite());
    assert_eq!(flow_params(&straight.model), flow_params(&resumed.model));
}
