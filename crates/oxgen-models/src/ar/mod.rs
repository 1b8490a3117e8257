//! The autoregressive family: a GPT-style decoder ([`gpt`]) and its decoding ([`decode`]).
//!
//! Generation is next-token prediction, and the likelihood is exact: [`Gpt::log_prob`] is the
//! sum of the per-token log-probabilities that the training loss (cross-entropy) averages.

pub mod arithmetic;
pub mod decode;
pub mod gpt;
pub mod lora;
pub mod naf;
pub mod tokenizer;
pub mod watermark;

pub use decode::{
    DecodeOptions, RowStepper, generate, generate_batch, generate_rows, window_start,
};
pub use gpt::{Gpt, GptConfig, KvCache};
pub use lora::LoraConfig;
pub use tokenizer::Tokenizer;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn tiny(tie: bool) -> (Gpt, Device) {
        tiny_with(tie, false)
    }

    fn tiny_with(tie: bool, rotary: bool) -> (Gpt, Device) {
        let device = Device::flex();
        let model = GptConfig::new(11)
            .with_context(16)
            .with_layers(2)
            .with_heads(2)
            .with_width(16)
            .with_tie_weights(tie)
            .with_rotary(rotary)
            .init(&device);
        (crate::testing::seeded(model, 5, 1.0), device)
    }

    /// RoPE: norms are kept, and q·k depends only on the distance between the positions.
    #[test]
    fn rotary_embeddings_are_relative() {
        let device = Device::flex();
        let v = |seed: u32| {
            Tensor::<4>::from_data(
                TensorData::new(crate::rng::normals(9, seed, 8), [1, 1, 1, 8]),
                &device,
            )
        };
        let (q, k) = (v(1), v(2));
        let dot = |m: usize, n: usize| {
            let a = gpt::rotary(q.clone(), m);
            let b = gpt::rotary(k.clone(), n);
            host((a * b).sum())[0]
        };
        assert!(
            (dot(3, 1) - dot(10, 8)).abs() < 1e-4,
            "{} vs {}",
            dot(3, 1),
            dot(10, 8)
        );
        assert!(
            (dot(3, 1) - dot(1, 3)).abs() > 1e-3,
            "not symmetric in general"
        );
        let norm = |x: Tensor<4>| host(x.clone() * x).iter().sum::<f32>();
        assert!((norm(gpt::rotary(q.clone(), 7)) - norm(q.clone())).abs() < 1e-4);
        // Position 0 is the identity.
        let same = host(gpt::rotary(q.clone(), 0));
        for (a, b) in same.iter().zip(host(q)) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    /// With rotary positions, the cache (whose keys are stored rotated) still reproduces the full
    /// forward, and greedy decoding agrees with and without it.
    #[test]
    fn rotary_models_cache_correctly() {
        let (model, device) = tiny_with(false, true);
        let seq: Vec<i64> = (0..13).map(|i| (i * 5 % 11) as i64).collect();
        let full = host(model.forward(tokens(&[&seq], &device)));
        let mut cache = KvCache::default();
        let mut got = Vec::new();
        for chunk in [&seq[0..4], &seq[4..13]] {
            got.extend(host(
                model.forward_cached(tokens(&[chunk], &device), &mut cache),
            ));
        }
        for (g, w) in got.iter().zip(&full) {
            assert!((g - w).abs() < 1e-4, "cached {g} vs full {w}");
        }
        let options = DecodeOptions {
            max_new_tokens: 20,
            temperature: 0.0,
            ..DecodeOptions::default()
        };
        let a = generate(&model, &[1, 2], &options, true, &device, |_| {});
        let b = generate(&model, &[1, 2], &options, false, &device, |_| {});
        assert_eq!(a, b);
    }

    /// A rotary model's cache is a ring: fed 40 tokens (context 16) in chunks, one of which
    /// wraps the ring, the logits at every position are those of sliding-window attention over
    /// the whole text (a band mask, no cache); and within the first 16 tokens, of the plain
    /// forward.
    #[test]
    fn rotary_ring_cache_matches_the_sliding_window() {
        let (model, device) = tiny_with(false, true);
        let seq: Vec<i64> = (0..40).map(|i| (i * 7 % 11) as i64).collect();
        let mut cache = KvCache::default();
        let mut got = Vec::new();
        for range in [0..10, 10..25, 25..26, 26..40] {
            got.extend(host(
                model.forward_cached(tokens(&[&seq[range]], &device), &mut cache),
            ));
        }
        assert_eq!((cache.len(), cache.fed()), (16, 40));
        let want = host(model.forward_sliding(tokens(&[&seq], &device)));
        assert_eq!(got.len(), want.len());
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-4,
                "position {}: ring {g} vs band {w}",
                e / 11
            );
        }
        let plain = host(model.forward(tokens(&[&seq[..16]], &device)));
        for (g, w) in got.iter().zip(&plain) {
            assert!(
                (g - w).abs() < 1e-4,
                "first window: ring {g} vs forward {w}"
            );
        }
        // Past the window the ring differs from re-encoding the last 16 tokens (kept keys saw
        // older tokens): the band reference is not the windowed one.
        let window = host(model.forward(tokens(&[&seq[24..40]], &device)));
        let last = &got[39 * 11..];
        assert!(
            last.iter()
                .zip(&window[15 * 11..])
                .any(|(a, b)| (a - b).abs() > 1e-3),
            "a ring over several layers should not equal the re-encoded window"
        );
    }

    /// Window starts: sliding keeps the last `context` tokens; jumping keeps ⌊context/2⌋ at each
    /// jump and never holds more than `context`.
    #[test]
    fn window_starts_slide_or_jump() {
        assert_eq!(window_start(16, 16, false), 0);
        assert_eq!(window_start(17, 16, true), 1);
        // Jumps of 16 + 1 − 8 = 9: at 17 tokens the window restarts on the last 8.
        assert_eq!(window_start(17, 16, false), 9);
        assert_eq!(window_start(25, 16, false), 9);
        assert_eq!(window_start(26, 16, false), 18);
        for len in 1..200 {
            for slide in [false, true] {
                let start = window_start(len, 16, slide);
                assert!(
                    len - start <= 16 && len - start >= 8.min(len),
                    "{len} {slide}"
                );
            }
        }
        assert_eq!(window_start(5, 1, false), 4);
    }

    fn tokens(rows: &[&[i64]], device: &Device) -> Tensor<2, Int> {
        let t = rows[0].len();
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), t]), device)
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    /// Feeding a sequence in chunks through the cache gives the logits of one full forward.
    #[test]
    fn cached_chunks_match_the_full_forward() {
        let (model, device) = tiny(true);
        let seq: Vec<i64> = (0..13).map(|i| (i * 7 % 11) as i64).collect();
        let full = host(model.forward(tokens(&[&seq], &device)));
        let mut cache = KvCache::default();
        let mut got = Vec::new();
        for chunk in [&seq[0..5], &seq[5..6], &seq[6..13]] {
            got.extend(host(
                model.forward_cached(tokens(&[chunk], &device), &mut cache),
            ));
        }
        assert_eq!(cache.len(), 13);
        assert_eq!(got.len(), full.len());
        for (g, w) in got.iter().zip(&full) {
            assert!((g - w).abs() < 1e-4, "cached {g} vs full {w}");
        }
    }

    /// Greedy decoding with and without the cache picks the same tokens, also past the context
    /// window (16 here), where both condition on the last 16 tokens.
    #[test]
    fn greedy_decoding_is_the_same_with_and_without_the_cache() {
        let cases = [
            (true, false, false),
            (false, false, false),
            (false, false, true),
        ];
        for (tie, rotary, exact_window) in cases.into_iter().chain([(false, true, true)]) {
            let (model, device) = tiny_with(tie, rotary);
            let options = DecodeOptions {
                max_new_tokens: 30,
                temperature: 0.0,
                exact_window,
                ..DecodeOptions::default()
            };
            let mut streamed = Vec::new();
            let cached = generate(&model, &[1, 2, 3], &options, true, &device, |t| {
                streamed.push(t)
            });
            let plain = generate(&model, &[1, 2, 3], &options, false, &device, |_| {});
            assert_eq!(cached.len(), 30);
            assert_eq!(cached, plain);
            assert_eq!(streamed, cached, "every token is streamed, in order");
        }
    }

    /// n draws in one batch are the n draws one at a time with seeds seed + i (sampling, with a
    /// stop sequence that ends some rows early), past the context window (16) too.
    #[test]
    fn batched_draws_equal_one_at_a_time_draws() {
        let (model, device) = tiny(false);
        let mut options = DecodeOptions {
            max_new_tokens: 24,
            temperature: 1.0,
            top_k: 5,
            seed: 11,
            ..DecodeOptions::default()
        };
        // The stop sequence is a token draw 0 picks by its sixth step (the weights are random),
        // so with it draw 0 ends early and the others may.
        let free = generate_batch(&model, &[1, 2, 3], 1, &options, &device);
        options.stop = vec![vec![free[0][5]]];
        let batch = generate_batch(&model, &[1, 2, 3], 5, &options, &device);
        assert_eq!(batch.len(), 5);
        for (i, row) in batch.iter().enumerate() {
            let one = DecodeOptions {
                seed: 11 + i as u64,
                ..options.clone()
            };
            let alone = generate(&model, &[1, 2, 3], &one, true, &device, |_| {});
            assert_eq!(row, &alone, "draw {i}");
        }
        assert!(
            batch.iter().any(|r| r.len() < 24),
            "the stop sequence ends some draw early"
        );
    }

    /// log_prob is minus the sum of burn's cross-entropy over the predicted tokens.
    #[test]
    fn log_prob_is_the_sum_of_token_cross_entropies() {
        let (model, device) = tiny(false);
        let rows: [&[i64]; 2] = [
            &[3, 1, 4, 1, 5, 9, 2, 6, 5, 3],
            &[2, 7, 1, 8, 2, 8, 1, 8, 2, 8],
        ];
        let got = host(model.log_prob(tokens(&rows, &device)));
        let ce = CrossEntropyLossConfig::new().init(&device);
        for (i, row) in rows.iter().enumerate() {
            let t = row.len();
            let logits = model
                .forward(tokens(&[&row[..t - 1]], &device))
                .reshape([t - 1, 11]);
            let targets =
                Tensor::<1, Int>::from_data(TensorData::new(row[1..].to_vec(), [t - 1]), &device);
            let mean = host(ce.forward(logits, targets))[0];
            let want = -mean * (t - 1) as f32;
            assert!(
                (got[i] - want).abs() < 1e-4 * (1.0 + want.abs()),
                "row {i}: log_prob {} vs −Σ CE {want}",
                got[i]
            );
            // An untrained model over 11 tokens: near −ln 11 per token. The weights are not seeded
            // (burn's device generator is shared by tests running in parallel), so the bound
            // is loose: small random logits stay well within 1.5 nats of uniform.
            let per_token = got[i] / (t - 1) as f32;
            assert!(
                (per_token + 11f32.ln()).abs() < 1.5,
                "row {i}: {per_token} nats per token vs −ln 11"
            );
        }
    }

    #[test]
    fn sampling_rules() {
        let logits = [0.0f32, 1.0, 2.0, 0.5];
        let mut rng = StdRng::seed_from_u64(7);
        let o = |f: fn(&mut DecodeOptions)| {
            let mut o = DecodeOptions::default();
            f(&mut o);
            o
        };
        let mut pick = |o: &DecodeOptions, history: &[u32]| {
            decode::pick(&mut logits.clone(), history, o, &mut rng)
        };
        assert_eq!(pick(&o(|o| o.temperature = 0.0), &[]), 2);
        assert_eq!(pick(&o(|o| o.top_k = 1), &[]), 2);
        assert_eq!(pick(&o(|o| o.top_p = 0.1), &[]), 2);
        // A penalty of 10 on token 2 (logit 2 → 0.2) makes token 1 the argmax.
        let greedy_penalised = o(|o| {
            o.temperature = 0.0;
            o.repetition_penalty = 10.0
        });
        assert_eq!(pick(&greedy_penalised, &[2]), 1);
        // top-k = 2 never leaves {1, 2}; frequencies follow softmax(1, 2) = (0.269, 0.731).
        let top2 = o(|o| o.top_k = 2);
        let n = 20_000;
        let mut ones = 0;
        for _ in 0..n {
            match pick(&top2, &[]) {
                1 => ones += 1,
                2 => {}
                other => panic!("top-k 2 picked {other}"),
            }
        }
        let p = ones as f64 / n as f64;
        assert!((p - 0.2689).abs() < 0.01, "P(token 1) = {p}");
    }

    #[test]
    fn the_same_seed_gives_the_same_text() {
        // Untied: a tied untrained model puts most mass on repeating its input token.
        let (model, device) = tiny(false);
        let options = DecodeOptions {
            max_new_tokens: 12,
            seed: 5,
            ..DecodeOptions::default()
        };
        let a = generate(&model, &[0], &options, true, &device, |_| {});
        let b = generate(&model, &[0], &options, true, &device, |_| {});
        let c = generate(
            &model,
            &[0],
            &DecodeOptions {
                seed: 6,
                ..options.clone()
            },
            true,
            &device,
            |_| {},
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        // A stop sequence ends generation right after it.
        let stop = DecodeOptions {
            stop: vec![a[3..5].to_vec()],
            ..options
        };
        let d = generate(&model, &[0], &stop, true, &device, |_| {});
        assert!(d.len() <= 5 && d.ends_with(&a[3..5]) && a.starts_with(&d));
    }
}
