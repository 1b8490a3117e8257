//! The GPT of `oxgen_models::ar` on wgpu: its attention takes the flash-attention kernels
//! (head dim 32), its logits and likelihoods match the CPU with the same weights, and KV-cached
//! greedy decoding (one query against many keys in the kernel) picks the same tokens as
//! re-running the window.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::{DecodeOptions, GptConfig, generate};
use oxgen_models::ops::attention;

use crate::gpu;

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn gpt_on_wgpu_matches_the_cpu_and_decodes_with_the_cache() {
    let gpu = gpu();
    let cpu = Device::flex();
    cpu.seed(11);
    let config = GptConfig::new(29)
        .with_context(40)
        .with_layers(2)
        .with_heads(2)
        .with_width(64)
        .with_tie_weights(false);
    let on_cpu = config.init(&cpu);
    let on_gpu = on_cpu.clone().to_device(&gpu);
    let seq: Vec<i64> = (0..37).map(|i| (i * 5 % 29) as i64).collect();
    let tokens = |d: &Device| Tensor::<2, Int>::from_data(TensorData::new(seq.clone(), [1, 37]), d);
    let (got, counts) = oxgen_models::ops::stats::scope(|| host(on_gpu.forward(tokens(&gpu))));
    assert_eq!(
        counts.op(attention::OP).fused,
        2,
        "one flash call per block"
    );
    let want = host(on_cpu.forward(tokens(&cpu)));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-3 * (1.0 + w.abs()), "logit {g} vs {w}");
    }
    let (lg, lc) = (
        host(on_gpu.log_prob(tokens(&gpu)))[0],
        host(on_cpu.log_prob(tokens(&cpu)))[0],
    );
    assert!((lg - lc).abs() < 1e-3 * lc.abs(), "log_prob {lg} vs {lc}");
    let options = DecodeOptions {
        max_new_tokens: 24,
        temperature: 0.0,
        ..DecodeOptions::default()
    };
    let cached = generate(&on_gpu, &[3, 1, 4], &options, true, &gpu, |_| {});
    let plain = generate(&on_gpu, &[3, 1, 4], &options, false, &gpu, |_| {});
    assert_eq!(cached, plain);
    assert_eq!(cached.len(), 24);
}
