//! Autoregressive decoding: incremental with a KV cache (or, for checks and benchmarks, by
//! re-running the whole window), with temperature, top-k, top-p, a repetition penalty, stop
//! sequences, a token limit and a seed. The logits of the last position come to the host and
//! the choice is made there, so a seed gives the same text on every device.

use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::gpt::{Gpt, KvCache};
use super::watermark::{Kgw, Tournament};

/// How to pick each next token. Every field has a default (see `Default`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecodeOptions {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: all).
    pub top_p: f32,
    /// CTRL's repetition penalty (Keskar et al., 2019): logits of tokens already in the text are
    /// divided by it when positive and multiplied when negative (1: off).
    pub repetition_penalty: f32,
    /// Stop after any of these token sequences (it is kept in the output).
    pub stop: Vec<Vec<u32>>,
    /// Seed of the sampler.
    pub seed: u64,
    /// Past the context window, condition every token on exactly the last `context` tokens,
    /// re-encoded: the whole window goes through the model again at every token. By default a
    /// rotary model keeps decoding through its ring cache (sliding-window attention: see
    /// [`KvCache`]), and a model with learned positions re-encodes the last half window each
    /// time the text outgrows the window, so each token sees between half a window and a whole
    /// one (see [`window_start`]); both cost a fraction of re-encoding.
    pub exact_window: bool,
    /// A KGW watermark on every token (see [`super::watermark`]): δ on the green list's logits
    /// before the choice, greedy or sampled. Never serialised: the key stays out of configs.
    #[serde(skip)]
    pub watermark: Option<Kgw>,
    /// Tournament sampling (SynthID-Text; see [`super::watermark::Tournament`]) on the sampling
    /// distribution after temperature, top-k and top-p. Greedy decoding has nothing to choose
    /// between and is left unmarked. Never serialised.
    #[serde(skip)]
    pub tournament: Option<Tournament>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            stop: Vec::new(),
            seed: 0,
            exact_window: false,
            watermark: None,
            tournament: None,
        }
    }
}

/// Picks a token from one row of logits.
pub fn pick(logits: &mut [f32], history: &[u32], o: &DecodeOptions, rng: &mut StdRng) -> u32 {
    if let Some(w) = &o.watermark {
        w.bias(logits, history);
    }
    if o.repetition_penalty != 1.0 {
        for &t in history {
            let l = &mut logits[t as usize];
            *l = if *l > 0.0 {
                *l / o.repetition_penalty
            } else {
                *l * o.repetition_penalty
            };
        }
    }
    if o.temperature <= 0.0 {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if o.top_k > 0 {
        order.truncate(o.top_k);
    }
    let max = logits[order[0]];
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| (((logits[i] - max) / o.temperature) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if o.top_p < 1.0 {
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                cumulative += p;
                cumulative >= o.top_p as f64
            })
            .map_or(probs.len(), |i| i + 1);
        order.truncate(keep);
        probs.truncate(keep);
    }
    if let Some(t) = &o.tournament {
        t.reweight(&order, &mut probs, history);
    }
    let mut u = rng.random::<f64>() * probs.iter().sum::<f64>();
    for (i, p) in order.iter().zip(&probs) {
        if u < *p {
            return *i as u32;
        }
        u -= p;
    }
    order[order.len() - 1] as u32
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn last_logits(logits: Tensor<3>) -> Vec<f32> {
    let [_, t, vocab] = logits.dims();
    logits
        .slice([0..1, t - 1..t, 0..vocab])
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 logits")
}

/// The last position's logits of every row: `n` rows of `vocab`.
fn last_logits_rows(logits: Tensor<3>) -> Vec<Vec<f32>> {
    let [n, t, vocab] = logits.dims();
    let flat = logits
        .slice([0..n, t - 1..t, 0..vocab])
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 logits");
    flat.chunks(vocab).map(<[f32]>::to_vec).collect()
}

fn ids(tokens: &[u32], device: &burn::tensor::Device) -> Tensor<2, Int> {
    let data: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, tokens.len()]), device)
}

/// Where the window that predicts the token after a text of `len` tokens starts. Sliding
/// (`slide`): the last `context` tokens. Otherwise the window stays put until the text outgrows
/// it, then jumps so that it keeps the last ⌊context / 2⌋ tokens (at least one): the starts are
/// the multiples of `context + 1 − keep`, a pure function of `len`, so decoding with and
/// without a cache condition on the same tokens.
pub fn window_start(len: usize, context: usize, slide: bool) -> usize {
    if len <= context {
        return 0;
    }
    if slide {
        return len - context;
    }
    let keep = (context / 2).max(1);
    let jump = context + 1 - keep;
    jump * ((len - context - 1) / jump + 1)
}

/// Which tokens of the text go through the cache next: the window policy of one decoding run.
struct Feeder {
    context: usize,
    /// Re-encode a window of exactly `context` tokens (see [`DecodeOptions::exact_window`]).
    slide: bool,
    /// Decode through the ring cache, never restarting it.
    ring: bool,
    /// Where the cache's tokens start in the text, and how many of the text it has seen.
    from: usize,
    fed: usize,
}

impl Feeder {
    fn new(model: &Gpt, options: &DecodeOptions) -> Self {
        Self {
            context: model.context(),
            slide: options.exact_window,
            ring: model.is_rotary() && !options.exact_window,
            from: 0,
            fed: 0,
        }
    }

    /// The range of a `len`-token text to feed now, after starting a new cache when the window
    /// has moved past what a learned-position cache can hold (a ring cache never restarts).
    fn next(&mut self, len: usize, cache: &mut KvCache) -> std::ops::Range<usize> {
        let start = if self.ring {
            0
        } else {
            window_start(len, self.context, self.slide)
        };
        if cache.fed() == 0 || start > self.from {
            *cache = KvCache::default();
            (self.from, self.fed) = (start, start);
        }
        let range = self.fed..len;
        self.fed = len;
        range
    }
}

/// Next-token logits of rows of text that grow in lockstep, through one KV cache with the
/// decoding window policy of [`generate_rows`] (a ring for rotary models; half-window jumps
/// for learned positions): what a coder needs, which feeds each row the token it has just
/// coded. Every call runs the same computation for the same texts, so an encoder and a
/// decoder that call it with the same rows see the same logits.
pub struct RowStepper {
    cache: KvCache,
    feeder: Feeder,
}

impl RowStepper {
    /// A stepper with the default window policy (`exact_window` off).
    pub fn new(model: &Gpt) -> Self {
        Self {
            cache: KvCache::default(),
            feeder: Feeder::new(model, &DecodeOptions::default()),
        }
    }

    /// The logits after the last token of each row (`n` rows of `vocab`). Every row has the
    /// same length (at least one token) and extends the rows of the previous call.
    ///
    /// # Panics
    /// When the rows are empty or of different lengths.
    pub fn next(
        &mut self,
        model: &Gpt,
        texts: &[Vec<u32>],
        device: &burn::tensor::Device,
    ) -> Vec<Vec<f32>> {
        let n = texts.len();
        let len = texts.first().map_or(0, Vec::len);
        assert!(
            n > 0 && len > 0 && texts.iter().all(|t| t.len() == len),
            "rows of one length, at least one token each"
        );
        let range = self.feeder.next(len, &mut self.cache);
        let data: Vec<i64> = texts
            .iter()
            .flat_map(|t| t[range.clone()].iter().map(|&x| x as i64))
            .collect();
        let new = Tensor::from_data(TensorData::new(data, [n, range.len()]), device);
        last_logits_rows(model.forward_cached(new, &mut self.cache))
    }
}

/// Generates after `prompt` (at least one token), calling `on_token` with each new token as it
/// is chosen (for streaming); returns the new tokens. With `cached`, each step feeds only the
/// new token through the model and reuses the keys and values of the others; without, each step
/// re-runs the whole window (the check and the baseline). When the text outgrows the context
/// window, both condition on the same tokens: see [`DecodeOptions::exact_window`].
pub fn generate(
    model: &Gpt,
    prompt: &[u32],
    options: &DecodeOptions,
    cached: bool,
    device: &burn::tensor::Device,
    mut on_token: impl FnMut(u32),
) -> Vec<u32> {
    assert!(
        !prompt.is_empty(),
        "generation needs a prompt of at least one token"
    );
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut text = prompt.to_vec();
    let mut cache = KvCache::default();
    let mut feeder = Feeder::new(model, options);
    for _ in 0..options.max_new_tokens {
        let logits = if !cached && feeder.ring {
            model.forward_sliding(ids(&text, device))
        } else if !cached {
            let start = window_start(text.len(), feeder.context, feeder.slide);
            model.forward(ids(&text[start..], device))
        } else {
            let new = feeder.next(text.len(), &mut cache);
            model.forward_cached(ids(&text[new], device), &mut cache)
        };
        let mut row = last_logits(logits);
        let next = pick(&mut row, &text, options, &mut rng);
        text.push(next);
        on_token(next);
        if options
            .stop
            .iter()
            .any(|s| !s.is_empty() && text.ends_with(s))
        {
            break;
        }
    }
    text.split_off(prompt.len())
}

/// `n` draws after `prompt` at once, as one batch through the model: draw i is what
/// [`generate`] gives with seed `options.seed + i` (each row keeps its own sampler), so `-n`
/// draws cost one forward pass per token instead of n. A row that hits a stop sequence stops
/// (the others go on); returns each row's new tokens.
pub fn generate_batch(
    model: &Gpt,
    prompt: &[u32],
    n: usize,
    options: &DecodeOptions,
    device: &burn::tensor::Device,
) -> Vec<Vec<u32>> {
    assert!(
        !prompt.is_empty(),
        "generation needs a prompt of at least one token"
    );
    let prompts = vec![prompt.to_vec(); n];
    let seeds: Vec<u64> = (0..n as u64)
        .map(|i| options.seed.wrapping_add(i))
        .collect();
    generate_rows(model, &prompts, &seeds, options, device)
}

/// One draw after each of `prompts` as one batch through the model, row i sampled with seed
/// `seeds[i]` (`options.seed` is not used): row i is what [`generate`] gives for `prompts[i]`
/// with that seed. A row that hits a stop sequence stops (the others go on); returns each row's
/// new tokens.
///
/// # Panics
/// When the prompts are empty, of different lengths, or not as many as the seeds.
pub fn generate_rows(
    model: &Gpt,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    options: &DecodeOptions,
    device: &burn::tensor::Device,
) -> Vec<Vec<u32>> {
    let n = prompts.len();
    if n == 0 && seeds.is_empty() {
        return Vec::new();
    }
    let plen = prompts.first().map_or(0, Vec::len);
    assert!(
        plen > 0 && prompts.iter().all(|p| p.len() == plen) && seeds.len() == n,
        "generation needs prompts of one length (at least one token), a seed each"
    );
    let mut rngs: Vec<StdRng> = seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
    let mut texts = prompts.to_vec();
    // Where each row stopped (its text is cut there); rows still going have None.
    let mut ends: Vec<Option<usize>> = vec![None; n];
    let mut stepper = RowStepper {
        cache: KvCache::default(),
        feeder: Feeder::new(model, options),
    };
    for _ in 0..options.max_new_tokens {
        if ends.iter().all(Option::is_some) {
            break;
        }
        let rows = stepper.next(model, &texts, device);
        for (r, mut row) in rows.into_iter().enumerate() {
            let next = pick(&mut row, &texts[r], options, &mut rngs[r]);
            texts[r].push(next);
            let stopped = options
                .stop
                .iter()
                .any(|s| !s.is_empty() && texts[r].ends_with(s));
            if ends[r].is_none() && stopped {
                ends[r] = Some(texts[r].len());
            }
        }
    }
    texts
        .into_iter()
        .zip(ends)
        .map(|(mut t, end)| {
            t.truncate(end.unwrap_or(t.len()));
            t.split_off(plen)
        })
        .collect()
}
