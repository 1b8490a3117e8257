//! The decoding benchmark behind `oxgen bench decode`: greedy generation of `new_tokens` tokens
//! for `batch` rows at once with the KV cache, against re-running the whole window each step
//! (one row), same model, same run, and beside the PyTorch twin (`twins.py decode`, a static KV
//! cache). Both oxgen paths produce their tokens (checked equal), so neither can skip work.

use std::time::Instant;

use burn::tensor::Device;
use oxgen_models::ar::{DecodeOptions, GptConfig, generate, generate_batch};
use serde::Serialize;

use crate::peer::{self, PeerRow};

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeRow {
    /// The model.
    pub config: GptConfig,
    /// Prompt tokens.
    pub prompt: usize,
    /// Generated tokens per row.
    pub new_tokens: usize,
    /// Rows decoded at once.
    pub batch: usize,
    /// Wall time with the KV cache, ms.
    pub cached_ms: f64,
    /// Wall time re-running the window each step, ms.
    pub uncached_ms: f64,
    /// uncached ÷ cached.
    pub speedup: f64,
    /// Generated tokens per second with the cache, all rows.
    pub cached_tokens_per_s: f64,
    /// Whether both paths produced the same tokens (greedy).
    pub same_tokens: bool,
    /// The PyTorch twin at the same batch, if run.
    pub peer: Option<PeerRow>,
    /// Why the twin did not run, if it did not.
    pub peer_error: Option<String>,
    /// ours ÷ twin tokens per second.
    pub ratio: Option<f64>,
}

/// Times both paths once each (after a short warm-up of each) on a freshly initialised model,
/// then the twin (with `python`, unless `None`). Past the context window all three follow
/// oxgen's default window policy ([`oxgen_models::ar::window_start`]), or with `exact_window`
/// oxgen's two re-encode the last `context` tokens at every token (the twin does not).
pub fn run(
    device: &Device,
    config: &GptConfig,
    prompt: usize,
    new_tokens: usize,
    batch: usize,
    exact_window: bool,
    python: Option<&str>,
) -> DecodeRow {
    assert!(
        prompt >= 1 && batch >= 1,
        "prompt and batch must be at least 1"
    );
    device.seed(0);
    let model = config.init(device);
    let prompt_tokens: Vec<u32> = (0..prompt).map(|i| (i % config.vocab) as u32).collect();
    let options = |n| DecodeOptions {
        max_new_tokens: n,
        temperature: 0.0,
        exact_window,
        ..DecodeOptions::default()
    };
    generate_batch(&model, &prompt_tokens, batch, &options(4), device);
    let start = Instant::now();
    let rows = generate_batch(&model, &prompt_tokens, batch, &options(new_tokens), device);
    let cached_ms = start.elapsed().as_secs_f64() * 1e3;
    generate(&model, &prompt_tokens, &options(4), false, device, |_| {});
    let start = Instant::now();
    let plain = generate(
        &model,
        &prompt_tokens,
        &options(new_tokens),
        false,
        device,
        |_| {},
    );
    let uncached_ms = start.elapsed().as_secs_f64() * 1e3;
    let cached_tokens_per_s = (batch * new_tokens) as f64 / (cached_ms / 1e3);
    let (peer, peer_error) = peer::run_if(
        python,
        &[
            "decode",
            "--model",
            "gpt-char",
            "--batch",
            &batch.to_string(),
            "--new-tokens",
            &new_tokens.to_string(),
            "--iters",
            "1",
        ],
    );
    let ratio = peer.as_ref().map(|p| cached_tokens_per_s / p.per_second());
    DecodeRow {
        config: config.clone(),
        prompt,
        new_tokens,
        batch,
        cached_ms,
        uncached_ms,
        speedup: uncached_ms * batch as f64 / cached_ms,
        cached_tokens_per_s,
        same_tokens: rows[0] == plain,
        peer,
        peer_error,
        ratio,
    }
}

/// The row as Markdown.
pub fn table(rows: &[DecodeRow]) -> String {
    let mut s = String::from(
        "| layers × heads × width | prompt | new tokens | batch | cached ms | uncached ms (1 row) | speed-up | cached tokens/s | same tokens | PyTorch tokens/s | ours ÷ PyTorch |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} × {} × {} | {} | {} | {} | {:.1} | {:.1} | {:.2}× | {:.1} | {} | {} | {} |\n",
            r.config.layers,
            r.config.heads,
            r.config.width,
            r.prompt,
            r.new_tokens,
            r.batch,
            r.cached_ms,
            r.uncached_ms,
            r.speedup,
            r.cached_tokens_per_s,
            r.same_tokens,
            r.peer
                .as_ref()
                .map_or("–".into(), |p| format!("{:.1}", p.per_second())),
            r.ratio.map_or("–".into(), |x| format!("{x:.2}×")),
        ));
        if let Some(e) = &r.peer_error {
            s.push_str(&format!("\nPyTorch twin not run: {e}\n"));
        }
    }
    s
}
