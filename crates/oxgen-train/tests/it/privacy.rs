//! DP-SGD's per-sample gradients against a loop over batches of one, on the CPU and on wgpu
//! (lavapipe in CI), for flat rows and sequences, with and without a bias, through both of the
//! norm paths (Gram matrices and materialised gradients).

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
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

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Every parameter's gradient in `grads`, flattened, by id.
fn flat_grads(net: &Net, grads: &GradientsParams) -> HashMap<ParamId, Vec<f32>> {
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

fn assert_close(got: &[f32], want: &[f32], what: &str) {
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
/// of `b` separate backward passes.
fn check<const D: usize>(device: &Device, x: Tensor<D>, name: &str) {
    device.seed(7);
    let net = Net::new(device);
    let b = x.dims()[0];
    let (loss, taps) = per_sample::record(|| net.loss_sum(x.clone()));
    assert_eq!(taps.len(), 3, "{name}: one tap per layer");
    let grads = loss.backward();
    let mut got: HashMap<ParamId, Vec<Vec<f32>>> = HashMap::new();
    let mut sq = vec![0f32; b];
    for t in &taps {
        for (id, g) in t.per_sample(&grads) {
            let rows: Vec<Vec<f32>> = host(g)
                .chunks(g_len(&net, id))
                .map(<[f32]>::to_vec)
                .collect();
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
    let st = Tensor::<1>::from_data(TensorData::new(scale.clone(), [b]), &x.device().inner());
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
        let mut ranges: [std::ops::Range<usize>; D] = std::array::from_fn(|d| 0..x.dims()[d]);
        ranges[0] = i..i + 1;
        let xi = x.clone().slice(ranges);
        let gp = GradientsParams::from_grads(net.loss_sum(xi).backward(), &net);
        for (id, want) in flat_grads(&net, &gp) {
            assert_close(&got[&id][i], &want, &format!("{name}: sample {i}"));
        }
    }
}

fn g_len(net: &Net, id: ParamId) -> usize {
    struct V(ParamId, usize);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if p.id == self.0 {
                self.1 = p.val().dims().iter().product();
            }
        }
    }
    let mut v = V(id, 0);
    net.visit(&mut v);
    v.1
}

fn per_sample_gradients_on(device: Device) {
    let ad = device.autodiff();
    let rows: Vec<f32> = (0..5 * 5)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
        .collect();
    check(
        &ad,
        Tensor::<2>::from_data(TensorData::new(rows, [5, 5]), &ad),
        "flat rows",
    );
    let seq: Vec<f32> = (0..4 * 3 * 5)
        .map(|i| ((i * 29 % 13) as f32 - 6.0) / 5.0)
        .collect();
    check(
        &ad,
        Tensor::<3>::from_data(TensorData::new(seq, [4, 3, 5]), &ad),
        "sequences",
    );
}

#[test]
fn per_sample_gradients_equal_batches_of_one_on_the_cpu() {
    per_sample_gradients_on(Device::flex());
}

#[test]
fn per_sample_gradients_equal_batches_of_one_on_wgpu() {
    per_sample_gradients_on(wgpu_device());
}
