//! The decoding benchmark behind `oxgen bench decode`: greedy generation of `new_tokens` tokens
//! with the KV cache against re-running the whole window each step, same model, same run. Both
//! produce their tokens (checked equal), so neither path's work can be skipped.

use std::time::Instant;

use burn::tensor::Device;
use oxgen_models::ar::{DecodeOptions, GptConfig, generate};
use serde::Serialize;

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeRow {
    /// The model.
    pub config: GptConfig,
    /// Prompt tokens.
    pub prompt: usize,
    /// Generated tokens.
    pub new_tokens: usize,
    /// Wall time with the KV cache, ms.
    pub cached_ms: f64,
    /// Wall time re-running the window each step, ms.
    pub uncached_ms: f64,
    /// uncached ÷ cached.
    pub speedup: f64,
    /// Generated tokens per second with the cache.
    pub cached_tokens_per_s: f64,
    /// Whether both paths produced the same tokens (greedy).
    pub same_tokens: bool,
}

/// Times both paths once each (after a short warm-up of each) on a freshly initialised model.
pub fn run(device: &Device, config: &GptConfig, prompt: usize, new_tokens: usize) -> DecodeRow {
    assert!(
        prompt >= 1 && prompt + new_tokens <= config.context,
        "prompt + new tokens must fit the context window"
    );
    device.seed(0);
    let model = config.init(device);
    let prompt_tokens: Vec<u32> = (0..prompt).map(|i| (i % config.vocab) as u32).collect();
    let options = |n| DecodeOptions {
        max_new_tokens: n,
        temperature: 0.0,
        ..DecodeOptions::default()
    };
    let time = |cached: bool| {
        generate(&model, &prompt_tokens, &options(4), cached, device, |_| {});
        let start = Instant::now();
        let tokens = generate(
            &model,
            &prompt_tokens,
            &options(new_tokens),
            cached,
            device,
            |_| {},
        );
        (start.elapsed().as_secs_f64() * 1e3, tokens)
    };
    let (cached_ms, a) = time(true);
    let (uncached_ms, b) = time(false);
    DecodeRow {
        config: config.clone(),
        prompt,
        new_tokens,
        cached_ms,
        uncached_ms,
        speedup: uncached_ms / cached_ms,
        cached_tokens_per_s: new_tokens as f64 / (cached_ms / 1e3),
        same_tokens: a == b,
    }
}

/// The row as Markdown.
pub fn table(rows: &[DecodeRow]) -> String {
    let mut s = String::from(
        "| layers × heads × width | prompt | new tokens | cached ms | uncached ms | speed-up | cached tokens/s | same tokens |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} × {} × {} | {} | {} | {:.1} | {:.1} | {:.2}× | {:.1} | {} |\n",
            r.config.layers,
            r.config.heads,
            r.config.width,
            r.prompt,
            r.new_tokens,
            r.cached_ms,
            r.uncached_ms,
            r.speedup,
            r.cached_tokens_per_s,
            r.same_tokens
        ));
    }
    s
}
