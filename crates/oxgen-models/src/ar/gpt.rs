//! A GPT-style decoder (Radford et al., 2019; nanoGPT's layout): token and learned position
//! embeddings, pre-LayerNorm blocks of causal self-attention and a GELU MLP, a final LayerNorm,
//! and a language-model head (tied to the token embedding by default).
//!
//! Attention goes through [`crate::ops::attention::attention_with`], so on wgpu it runs the WGSL
//! flash-attention kernels forward and backward, and elsewhere burn's reference.

use crate::settings::settings;
use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::ops::attention::{AttentionOptions, attention_with, self_attention};
use crate::ops::gelu::gelu;
use crate::ops::layer_norm::layer_norm;
use crate::ops::linear::linear;
use crate::precision::{Precision, to_dtype};

/// ε of every LayerNorm (burn's and PyTorch's default).
const LN_EPS: f64 = 1e-5;

settings! {
    /// Configuration of [`Gpt`]. The defaults are nanoGPT's shakespeare_char model.
    pub struct GptConfig {
        /// Vocabulary size.
        pub vocab: usize = 256, with_vocab;
        /// Longest sequence (context window, "block size").
        pub context: usize = 256, with_context;
        /// Transformer blocks.
        pub layers: usize = 6, with_layers;
        /// Attention heads per block; `width` must be a multiple.
        pub heads: usize = 6, with_heads;
        /// Model width (embedding size).
        pub width: usize = 384, with_width;
        /// Dropout on attention output, MLP output and embeddings (training only).
        pub dropout: f64 = 0.0, with_dropout;
        /// Share the token embedding with the output head.
        pub tie_weights: bool = true, with_tie_weights;
        /// Rotary position embeddings (RoFormer; Su et al., 2021) on queries and keys instead of a
        /// learned position table.
        pub rotary: bool = false, with_rotary;
    }
}

impl GptConfig {
    /// A config with vocabulary `vocab` and the other fields at their defaults.
    pub fn new(vocab: usize) -> Self {
        Self {
            vocab,
            ..Self::default()
        }
    }
}

/// Rotates the two halves of each head's features by position-dependent angles (RoPE, in the
/// GPT-NeoX half-split layout): pair i of position p turns by p · 10000^(−2i/d). Query–key dot
/// products then depend only on relative positions.
///
/// # Shapes
/// - `x`: `[b, h, t, d]` with even d, positions `start..start + t`; returns the same shape.
pub fn rotary(x: Tensor<4>, start: usize) -> Tensor<4> {
    let [b, h, t, d] = x.dims();
    let half = d / 2;
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in start..start + t {
        for i in 0..half {
            let angle = p as f64 * 10000f64.powf(-2.0 * i as f64 / d as f64);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let device = x.device();
    let dtype = x.dtype();
    let table = |v: Vec<f32>| {
        let t = Tensor::<4>::from_data(burn::tensor::TensorData::new(v, [1, 1, t, half]), &device);
        to_dtype(t, dtype)
    };
    let (cos, sin) = (table(cos), table(sin));
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
    let x2 = x.slice([0..b, 0..h, 0..t, half..d]);
    Tensor::cat(
        vec![
            x1.clone() * cos.clone() - x2.clone() * sin.clone(),
            x1 * sin + x2 * cos,
        ],
        3,
    )
}

#[derive(Module, Debug)]
struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc: Linear,
    out: Linear,
    dropout: Dropout,
    heads: usize,
    rotary: bool,
}

/// Keys and values of the tokens seen so far, one pair per block, each preallocated as
/// `[b, heads, context, d]` on first use and filled in place, so a step writes its new keys and
/// values and copies nothing else.
///
/// With rotary positions the buffers are a ring: once `context` tokens are held, each new one
/// overwrites the oldest, and every layer attends to the last `context` positions, with no
/// re-encoding. That is sliding-window attention (as Mistral's), [`Gpt::forward_sliding`]
/// without a cache: rotary scores depend only on relative positions, but a kept key was
/// computed when older tokens were in view, so it is not what re-encoding the window would
/// give (`DecodeOptions::exact_window` asks for that). With learned positions every key
/// depends on where the window starts, so the cache holds at most `context` tokens and a longer
/// text must start a new one ([`crate::ar::window_start`] says where).
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// Tokens held (at most `capacity`).
    len: usize,
    /// Tokens fed in all (the absolute position of the next one).
    fed: usize,
    capacity: usize,
}

impl KvCache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens fed since the cache was new (more than [`Self::len`] once a ring has wrapped).
    pub fn fed(&self) -> usize {
        self.fed
    }
}

/// Where one step's keys and values go in a block's cache buffers.
#[derive(Clone, Copy, Debug)]
struct Slots {
    /// First slot written (the step's t slots are contiguous).
    write: usize,
    /// Slots that hold tokens after the write (attention reads slots 0..filled).
    filled: usize,
    /// Slots per buffer.
    capacity: usize,
}

impl Block {
    /// `x`: `[b, t, w]`. With `cache`, `x` holds the new tokens only and attends to the cached
    /// ones too; the new keys and values are written into `cache`.
    fn forward(
        &self,
        x: Tensor<3>,
        start: usize,
        cache: Option<(&mut Option<(Tensor<4>, Tensor<4>)>, Slots)>,
        band: Option<usize>,
    ) -> Tensor<3> {
        let qkv = linear(layer_norm(x.clone(), &self.ln1, LN_EPS), &self.qkv);
        // Causal masks are bottom-right aligned: the t new queries see every cached key.
        let options = AttentionOptions {
            causal: true,
            scale: None,
            window: None,
            key_lengths: None,
        };
        let y = if cache.is_none() && !self.rotary {
            self_attention(qkv, self.heads, options)
        } else {
            self.attend_cached(qkv, start, cache, band, options)
        };
        let x = x + self.dropout.forward(linear(y, &self.proj));
        let h = gelu(linear(layer_norm(x.clone(), &self.ln2, LN_EPS), &self.fc));
        x.clone() + self.dropout.forward(linear(h, &self.out))
    }

    /// Attention with rotary embeddings or a KV cache: the heads split out of `qkv`.
    fn attend_cached(
        &self,
        qkv: Tensor<3>,
        start: usize,
        cache: Option<(&mut Option<(Tensor<4>, Tensor<4>)>, Slots)>,
        band: Option<usize>,
        options: AttentionOptions,
    ) -> Tensor<3> {
        let [b, t, w3] = qkv.dims();
        let (w, d) = (w3 / 3, w3 / 3 / self.heads);
        let split = |i: usize| {
            qkv.clone()
                .slice([0..b, 0..t, i * w..(i + 1) * w])
                .reshape([b, t, self.heads, d])
                .swap_dims(1, 2)
        };
        let (mut q, mut k, mut v) = (split(0), split(1), split(2));
        if self.rotary {
            // Keys are cached rotated, at their own positions.
            q = rotary(q, start);
            k = rotary(k, start);
        }
        if let Some((slot, at)) = cache {
            // Write the new keys and values into their slots of the preallocated buffers (in
            // place: the cache holds the only reference), then attend to the filled part, a
            // view. Slot order need not be position order: a wrapped ring is fed one token at
            // a time, and one query sees every key.
            let (ck, cv) = slot.take().unwrap_or_else(|| {
                let device = k.device();
                let zeros = || {
                    let z = Tensor::<4>::zeros([b, self.heads, at.capacity, d], &device);
                    to_dtype(z, k.dtype())
                };
                (zeros(), zeros())
            });
            let (h, write) = (self.heads, at.write..at.write + t);
            let ck = ck.slice_assign([0..b, 0..h, write.clone(), 0..d], k);
            let cv = cv.slice_assign([0..b, 0..h, write, 0..d], v);
            k = ck.clone().slice([0..b, 0..h, 0..at.filled, 0..d]);
            v = cv.clone().slice([0..b, 0..h, 0..at.filled, 0..d]);
            *slot = Some((ck, cv));
        }
        // A band: query i sees keys i − band < j ≤ i (the uncached form of a wrapped ring).
        let bias = band.filter(|&n| n < t).map(|n| {
            let mask: Vec<f32> = (0..t * t)
                .map(|e| {
                    let (i, j) = (e / t, e % t);
                    if j + n > i { 0.0 } else { f32::NEG_INFINITY }
                })
                .collect();
            let mask = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, t, t]), &q.device());
            to_dtype(mask, q.dtype()).expand([b, self.heads, t, t])
        });
        attention_with(q, k, v, bias, options)
            .swap_dims(1, 2)
            .reshape([b, t, w])
    }
}

/// The decoder. See [`GptConfig`].
#[derive(Module, Debug)]
pub struct Gpt {
    wte: Embedding,
    wpe: Option<Embedding>,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Option<Linear>,
    dropout: Dropout,
    context: usize,
    /// Activations in f16 ([`Precision::F16`]); the weights stay as they are.
    half: bool,
}

impl GptConfig {
    /// Refuses a config no model can be built from: zero sizes, a width that is not a multiple
    /// of the heads, an odd rotary head dim, or a dropout outside [0, 1).
    pub fn validate(&self) -> Result<(), String> {
        if self.vocab == 0 || self.context == 0 || self.layers == 0 || self.width == 0 {
            return Err(format!(
                "vocab, context, layers and width must be at least 1 (got {}, {}, {}, {})",
                self.vocab, self.context, self.layers, self.width
            ));
        }
        if self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "model width {} is not a multiple of heads {}",
                self.width, self.heads
            ));
        }
        if self.rotary && !(self.width / self.heads).is_multiple_of(2) {
            return Err(format!(
                "rotary embeddings need an even head dim; width {} / heads {} = {}",
                self.width,
                self.heads,
                self.width / self.heads
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// Builds the model with freshly initialised weights.
    ///
    /// # Panics
    /// On a config that [`GptConfig::validate`] refuses; trainers validate first.
    pub fn init(&self, device: &Device) -> Gpt {
        if let Err(e) = self.validate() {
            panic!("invalid GptConfig: {e}");
        }
        let w = self.width;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        // GPT-2's initialisation of the embeddings (std 0.02): with a tied head, burn's default
        // N(0, 1) would start the logits at a scale of √width.
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, w)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        Gpt {
            wte: embedding(self.vocab),
            wpe: (!self.rotary).then(|| embedding(self.context)),
            blocks: (0..self.layers)
                .map(|_| Block {
                    ln1: LayerNormConfig::new(w).with_epsilon(LN_EPS).init(device),
                    qkv: linear(w, 3 * w),
                    proj: linear(w, w),
                    ln2: LayerNormConfig::new(w).with_epsilon(LN_EPS).init(device),
                    fc: linear(w, 4 * w),
                    out: linear(4 * w, w),
                    dropout: DropoutConfig::new(self.dropout).init(),
                    heads: self.heads,
                    rotary: self.rotary,
                })
                .collect(),
            ln_f: LayerNormConfig::new(w).with_epsilon(LN_EPS).init(device),
            head: (!self.tie_weights).then(|| LinearConfig::new(w, self.vocab).init(device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            context: self.context,
            half: false,
        }
    }
}

impl Gpt {
    /// The context window.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Transformer blocks.
    pub fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// The model computing in `precision`: with [`Precision::F16`] the activations are f16
    /// from the embeddings to the logits (LayerNorm statistics in f32), the logits come back
    /// in f32, and the weights stay f32 (mixed-precision training's master copy). Not part of
    /// the record: a loaded model computes in f32 until told otherwise.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.half = precision == Precision::F16;
        self
    }

    /// The precision of the activations (see [`Gpt::with_precision`]).
    pub fn precision(&self) -> Precision {
        if self.half {
            Precision::F16
        } else {
            Precision::F32
        }
    }

    /// Calls `f` on the weight of every linear layer: each block's qkv, proj, fc and out, then
    /// the head if it is not tied.
    pub(crate) fn for_each_weight(&self, mut f: impl FnMut(&Param<Tensor<2>>)) {
        for b in &self.blocks {
            for layer in [&b.qkv, &b.proj, &b.fc, &b.out] {
                f(&layer.weight);
            }
        }
        if let Some(head) = &self.head {
            f(&head.weight);
        }
    }

    /// Next-token logits at every position.
    ///
    /// # Shapes
    /// - `tokens`: `[b, t]` with t ≤ context; returns `[b, t, vocab]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.run(tokens, None, None)
    }

    /// Logits of a rotary model whose every layer attends only to the last `context` positions
    /// (sliding-window attention): what [`Gpt::forward_cached`] computes once its ring cache
    /// has wrapped, here without a cache, over a text of any length (the check of the ring).
    ///
    /// # Shapes
    /// - `tokens`: `[b, t]`, any t; returns `[b, t, vocab]`.
    ///
    /// # Panics
    /// When the model has learned positions (they end at `context`).
    pub fn forward_sliding(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        assert!(
            self.is_rotary(),
            "sliding-window attention needs rotary positions"
        );
        self.run(tokens, None, Some(self.context))
    }

    /// Whether the model has rotary positions (its cache is a ring: see [`KvCache`]).
    pub fn is_rotary(&self) -> bool {
        self.wpe.is_none()
    }

    /// Logits of `tokens` that follow the ones in `cache`, which then holds them too.
    ///
    /// # Shapes
    /// - `tokens`: `[b, t]`; returns `[b, t, vocab]`. With learned positions,
    ///   cache.len() + t ≤ context; with rotary ones any t (once the ring is full, each token
    ///   sees the last `context` tokens).
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        if cache.layers.is_empty() {
            cache.layers = self.blocks.iter().map(|_| None).collect();
            cache.capacity = self.context;
        }
        let [b, t] = tokens.dims();
        if self.is_rotary() && cache.len + t > cache.capacity && t > 1 {
            // The ring wraps inside this call: feed the tokens that fit at once, then one at a
            // time (a single query attends to every held key, whatever their slot order).
            let first = cache.capacity.saturating_sub(cache.len).max(1);
            let mut parts =
                vec![self.forward_cached(tokens.clone().slice([0..b, 0..first]), cache)];
            for i in first..t {
                parts.push(self.forward_cached(tokens.clone().slice([0..b, i..i + 1]), cache));
            }
            return Tensor::cat(parts, 1);
        }
        let slots = Slots {
            write: if cache.len + t <= cache.capacity {
                cache.len
            } else {
                cache.fed % cache.capacity
            },
            filled: (cache.len + t).min(cache.capacity),
            capacity: cache.capacity,
        };
        let logits = self.run(tokens, Some((cache, slots)), None);
        cache.len = slots.filled;
        cache.fed += t;
        logits
    }

    /// The final layer norm's output at every position: the features the output head reads
    /// (a reward model's head reads them too).
    ///
    /// # Shapes
    /// - `tokens`: `[b, t]` with t ≤ context; returns `[b, t, width]`.
    pub fn features(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.trunk(tokens, None, None).cast(DType::F32)
    }

    fn run(
        &self,
        tokens: Tensor<2, Int>,
        cache: Option<(&mut KvCache, Slots)>,
        band: Option<usize>,
    ) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let x = self.trunk(tokens, cache, band);
        let w = x.dims()[2];
        let logits = match &self.head {
            Some(head) => linear(x, head),
            None => {
                let table = to_dtype(self.wte.weight.val(), x.dtype()); // [vocab, w]
                let vocab = table.dims()[0];
                let y = x
                    .clone()
                    .reshape([b * t, w])
                    .matmul(table.transpose())
                    .reshape([b, t, vocab]);
                crate::ops::per_sample::tap_tied_head(&x, y, &self.wte)
            }
        };
        logits.cast(DType::F32)
    }

    fn trunk(
        &self,
        tokens: Tensor<2, Int>,
        mut cache: Option<(&mut KvCache, Slots)>,
        band: Option<usize>,
    ) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let start = cache.as_ref().map_or(0, |(c, _)| c.fed);
        let held = cache.as_ref().map_or(0, |(c, _)| c.len);
        assert!(
            band.is_some() || held + t <= self.context || self.is_rotary() && t <= self.context,
            "{} tokens past the context window of {}",
            held + t,
            self.context
        );
        let device = tokens.device();
        let mut x = crate::ops::embedding::embedding(tokens, &self.wte);
        if let Some(wpe) = &self.wpe {
            let positions = Tensor::<1, Int>::arange(start as i64..(start + t) as i64, &device)
                .reshape([1, t])
                .repeat_dim(0, b);
            x = x + crate::ops::embedding::embedding(positions, wpe);
        }
        let mut x = self.dropout.forward(x);
        if self.half {
            x = x.cast(DType::F16);
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let layer = cache.as_mut().map(|(c, slots)| (&mut c.layers[i], *slots));
            x = block.forward(x, start, layer, band);
        }
        layer_norm(x, &self.ln_f, LN_EPS)
    }

    /// Exact log-likelihood of each sequence, in nats: Σ_{i≥1} log p(x_i | x_<i). The first
    /// token is the condition (a prompt or a start token), not scored.
    ///
    /// # Shapes
    /// - `tokens`: `[b, t]`, 2 ≤ t ≤ context; returns `[b]`.
    pub fn log_prob(&self, tokens: Tensor<2, Int>) -> Tensor<1> {
        let [b, _] = tokens.dims();
        self.token_log_probs(tokens).sum_dim(1).reshape([b])
    }

    /// log p(x_i | x_<i) for i = 1..t.
    ///
    /// # Shapes
    /// - `tokens`: `[b, t]`; returns `[b, t − 1]`.
    pub fn token_log_probs(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [b, t] = tokens.dims();
        assert!(t >= 2, "log_prob needs at least two tokens");
        let inputs = tokens.clone().slice([0..b, 0..t - 1]);
        let targets = tokens.slice([0..b, 1..t]).reshape([b, t - 1, 1]);
        log_softmax(self.forward(inputs), 2)
            .gather(2, targets)
            .reshape([b, t - 1])
    }
}
