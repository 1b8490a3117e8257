//! DP-SGD for the GPT: per-sample gradients through its tied head and embedding (one weight,
//! two taps, summed per sample before the norm) against batches of one, on the CPU and on wgpu;
//! and DP training of the autoregressive family end to end, with an exact resume.

use oxgen_train::trainer::optim::seeded_init;
use std::collections::HashMap;

use burn::module::{Module, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::{Gpt, GptConfig};
use oxgen_models::ops::per_sample;
use oxgen_train::ar::{ArTrainConfig, train_ar};
use oxgen_train::privacy::dpsgd::{DpConfig, per_sample_sq_norms};

use crate::privacy::{Jitter, assert_close, flat_grads, host};
use crate::wgpu_parity::wgpu_device;

/// A one-layer GPT, tied head or not, learned or rotary positions, with every parameter moved
/// off its initial value (LayerNorm's γ = 1, β = 0 would hide terms).
fn gpt(ad: &Device, tied: bool, rotary: bool) -> Gpt {
    // Seeded under the process-wide lock: burn's generator is shared with the other tests.
    seeded_init(ad, 5, || {
        GptConfig::new(7)
            .with_context(6)
            .with_layers(1)
            .with_heads(2)
            .with_width(8)
            .with_tie_weights(tied)
            .with_rotary(rotary)
            .init(ad)
    })
    .map(&mut Jitter(0))
}

/// Each sample's gradient of the summed token NLL from one tapped backward pass (shared
/// parameters' parts summed), its norm by [`per_sample_sq_norms`], against a loop over
/// batches of one; every parameter is covered.
fn check_gpt(ad: &Device, tied: bool, rotary: bool) {
    let net = gpt(ad, tied, rotary);
    let ids: Vec<i64> = vec![
        1, 4, 4, 6, 0, 2, 5, //
        3, 3, 0, 6, 1, 1, 2, //
        6, 5, 4, 3, 2, 1, 0,
    ];
    let b = 3;
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, 7]), ad);
    let loss = |n: &Gpt, r: std::ops::Range<usize>| {
        n.token_log_probs(tokens.clone().slice([r, 0..7]))
            .sum()
            .neg()
    };
    let name = format!("GPT (tied {tied}, rotary {rotary})");
    let (total, taps) = per_sample::record(|| loss(&net, 0..b));
    // Per layer: ln1, qkv, proj, ln2, fc, out; then the embeddings, ln_f and the head.
    let expected = 6 + 1 + usize::from(!rotary) + 1 + 1;
    assert_eq!(taps.len(), expected, "{name}: taps");
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
    let covered: usize = len.values().sum();
    assert_eq!(covered, net.num_params(), "{name}: every parameter tapped");
    let mut sq = vec![0f32; b];
    for (id, g) in &got {
        for (i, row) in g.chunks(len[id]).enumerate() {
            sq[i] += row.iter().map(|v| v * v).sum::<f32>();
        }
    }
    let ghost = host(per_sample_sq_norms(&taps, &grads));
    assert_close(&ghost, &sq, &format!("{name}: squared norms"));
    // Each sample's whole gradient against its own backward pass, normwise: ‖Δ‖ / ‖∇‖ (a
    // parameter with small gradients, such as a LayerNorm's, can differ by 1e-5 of its own
    // largest entry: the batched and single attention round differently).
    let mut loop_sq = vec![0f32; b];
    for i in 0..b {
        let gp = GradientsParams::from_grads(loss(&net, i..i + 1).backward(), &net);
        let mut diff = 0f64;
        for (id, want) in flat_grads(&net, &gp) {
            let row = &got[&id][i * len[&id]..(i + 1) * len[&id]];
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
    assert_close(&ghost, &loop_sq, &format!("{name}: norms of the loop"));
}

#[test]
fn gpt_per_sample_gradients_equal_batches_of_one_on_the_cpu() {
    let ad = Device::flex().autodiff();
    check_gpt(&ad, true, false);
    check_gpt(&ad, false, true);
}

#[test]
fn gpt_per_sample_gradients_equal_batches_of_one_on_wgpu() {
    let ad = wgpu_device().autodiff();
    check_gpt(&ad, true, false);
}

fn dp_ar(data: &str, steps: usize) -> ArTrainConfig {
    let model = GptConfig::new(0)
        .with_context(16)
        .with_layers(1)
        .with_heads(2)
        .with_width(16);
    let mut c = ArTrainConfig::new(model, data);
    c.steps = steps;
    c.batch_size = 16;
    c.schedule.warmup_steps = 2;
    c.eval_every = 100;
    c.eval_batches = 1;
    c.dp = Some(DpConfig {
        epsilon: Some(4.0),
        ..DpConfig::default()
    });
    c
}

/// The GPT trains under DP-SGD with its tied head: ε rises every step to the plan's, and a
/// run stopped and resumed equals a straight one bit for bit (the ledger in the checkpoint).
/// A corpus's records are its disjoint blocks; gradient accumulation is refused.
#[test]
fn dp_gpt_trains_and_resumes_exactly() {
    let c = dp_ar("arithmetic", 6);
    let (straight, _, resumed) =
        crate::privacy::dp_six_steps_and_resumed(|o| train_ar(&c, o), |r| r.dp.as_ref());
    assert_eq!(
        crate::common::params(&straight.model),
        crate::common::params(&resumed.model)
    );

    // A text file: 2,000 characters, 1,800 for training, so 105 blocks of 17 tokens.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("abc.txt");
    let text: String = (0..2000)
        .map(|i| (b'a' + (i * 7 % 5) as u8) as char)
        .collect();
    std::fs::write(&file, text).unwrap();
    let mut t = dp_ar(file.to_str().unwrap(), 3);
    t.dp = Some(DpConfig {
        sigma: Some(1.0),
        ..DpConfig::default()
    });
    let out = dir.path().join("run");
    let r = train_ar(&t, &crate::common::opts(&out, Device::flex())).unwrap();
    let plan = r.dp.expect("a DP plan");
    assert!((plan.q - 16.0 / 105.0).abs() < 1e-12, "q = {}", plan.q);
    t.grad_accum = 2;
    assert!(matches!(
        train_ar(
            &t,
            &crate::common::opts(&dir.path().join("r2"), Device::flex())
        ),
        Err(oxgen_train::Error::Config(_))
    ));
}
