//! Scaled dot-product attention: the op that attention layers call, with its plain-burn
//! reference (burn's `attention_fallback`). A kernel crate may register a fused flash attention
//! with [`register_fused`]; it takes tensors on the devices and head dims it accepts, forward and
//! backward (it brings its own autodiff node).

use std::sync::{Arc, OnceLock};

use burn::tensor::module::attention_fallback;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

/// Options of one attention call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttentionOptions {
    /// Mask keys after the query (bottom-right aligned when the lengths differ, as burn's
    /// `attention_fallback`: key j is visible to query i when j + lq ≤ i + lk).
    pub causal: bool,
    /// Score scale; `None` is 1/√d.
    pub scale: Option<f64>,
    /// A sliding window of this many keys: key j is visible to query i only when it is at most
    /// `window − 1` places before the query's position (bottom-right aligned as `causal`:
    /// j + window + lq > i + lk). With `causal`, each query sees its last `window` keys, itself
    /// included (local attention). No L×L buffer on the fused path.
    pub window: Option<usize>,
    /// Per-sequence key lengths (padding masks): one per batch element; the keys of batch
    /// element b at positions `key_lengths[b]` and later are masked for every head and query.
    /// Lengths must be at least 1 (a query with no visible key gets zeros on the fused path
    /// and NaN in the reference) and at most lk. No L×L buffer on the fused path.
    pub key_lengths: Option<Arc<[usize]>>,
}

impl AttentionOptions {
    /// These options with per-sequence key lengths (see [`AttentionOptions::key_lengths`]).
    pub fn with_key_lengths(self, lengths: impl Into<Arc<[usize]>>) -> Self {
        Self {
            key_lengths: Some(lengths.into()),
            ..self
        }
    }
}

/// A fused attention, provided by a kernel crate.
pub trait FusedAttention: Send + Sync {
    /// A short name for logs and tests.
    fn name(&self) -> &'static str;
    /// Whether tensors on `device` can take this path.
    fn accepts(&self, device: &Device) -> bool;
    /// Whether the kernel has a variant for this head dim.
    fn supports(&self, head_dim: usize) -> bool;
    /// The attention output. Only called when [`FusedAttention::accepts`] and
    /// [`FusedAttention::supports`] are true. Records the call in [`super::stats`] from the code
    /// that ran: the kernel's name, or the reference with the reason when it declines the input.
    fn forward(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<Tensor<4>>,
        options: AttentionOptions,
    ) -> Tensor<4>;
}

static FUSED: OnceLock<Box<dyn FusedAttention>> = OnceLock::new();

/// The built-in kernel for burn's Flex (CPU) backend.
static CPU: super::cpu::attention::CpuAttention = super::cpu::attention::CpuAttention;

/// The fused kernel for `device`: a registered one that accepts it, else the built-in CPU
/// kernel on the Flex device.
fn kernel_for(device: &Device) -> Option<&'static dyn FusedAttention> {
    super::install_kernels();
    match FUSED.get().filter(|k| k.accepts(device)) {
        Some(k) => Some(k.as_ref()),
        None => CPU.accepts(device).then_some(&CPU as &dyn FusedAttention),
    }
}

/// Whether a fused kernel (registered, or the built-in CPU one) accepts tensors on `device`.
pub fn accepts(device: &Device) -> bool {
    kernel_for(device).is_some()
}
/// Registers the fused implementation. The first registration wins; later ones return false.
pub fn register_fused(kernel: Box<dyn FusedAttention>) -> bool {
    FUSED.set(kernel).is_ok()
}

/// The op's name in [`super::stats`].
pub const OP: &str = "attention";

/// Name of the implementation the latest call on this thread ran: `"reference"` or a kernel's
/// name (as the code that ran recorded it, see [`super::stats`]).
pub fn last_path() -> Option<&'static str> {
    super::stats::last(OP)
}

/// How many calls a registered (kernel crate's) fused kernel ran since the process started,
/// on any thread.
pub fn fused_calls() -> usize {
    let counts = super::stats::process().op(OP);
    counts
        .kernels
        .iter()
        .filter(|(name, _)| !name.starts_with("cpu-"))
        .map(|(_, n)| *n as usize)
        .sum()
}

/// softmax(q·kᵀ/√d)·v.
///
/// # Shapes
/// - `q`, `k`, `v`: `[batch, heads, len, d]`; returns `[batch, heads, len, d]`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    attention_with(q, k, v, None, AttentionOptions::default())
}

/// softmax(scale · q·kᵀ + bias, masks)·v, fused where a kernel accepts the device and head
/// dim. The masks (causal, sliding window, key lengths) are in `options`.
///
/// # Shapes
/// - `q`: `[b, h, lq, d]`; `k`, `v`: `[b, h, lk, d]`; `bias`: `[b, h, lq, lk]` (−∞ masks a
///   key); returns `[b, h, lq, d]`.
///
/// # Panics
/// When the shapes disagree, or `options.key_lengths` does not hold b lengths in 1..=lk (as
/// burn's own ops panic on mismatched shapes).
pub fn attention_with(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    options: AttentionOptions,
) -> Tensor<4> {
    let [b, h, lq, d] = q.dims();
    let [kb, kh, lk, kd] = k.dims();
    assert!(
        [kb, kh, kd] == [b, h, d] && v.dims() == k.dims(),
        "attention: q {:?}, k {:?}, v {:?} do not match",
        q.dims(),
        k.dims(),
        v.dims()
    );
    if let Some(bias) = &bias {
        assert_eq!(
            bias.dims(),
            [b, h, lq, lk],
            "attention: bias must be [b, h, lq, lk]"
        );
    }
    if let Some(lengths) = &options.key_lengths {
        assert!(
            lengths.len() == b && lengths.iter().all(|n| (1..=lk).contains(n)),
            "attention: key_lengths must hold {b} lengths in 1..={lk}, got {lengths:?}"
        );
    }
    let device = q.device();
    let fused = kernel_for(&device);
    let use_fused = super::take_fused(OP, fused.is_some(), &device);
    match fused.filter(|_| use_fused) {
        // The kernel records the call itself: it may still decline the input.
        Some(kernel) if kernel.supports(d) => kernel.forward(q, k, v, bias, options),
        Some(_) => {
            super::stats::reference(OP, &format!("head dim {d} has no kernel variant"));
            attention_reference(q, k, v, bias, options)
        }
        None => {
            super::stats::reference(OP, super::reference_reason(fused.is_some(), &device));
            attention_reference(q, k, v, bias, options)
        }
    }
}

/// Multi-head self-attention from a packed projection `qkv` = (q | k | v), each `w = heads · d`
/// wide with the heads side by side; returns the heads' outputs side by side. On burn's Flex
/// device one kernel reads the heads in place ([`super::cpu::self_attention`]); elsewhere the
/// heads are split out and go through [`attention_with`] (the WGSL kernel on wgpu).
///
/// # Shapes
/// - `qkv`: `[b, t, 3w]`; returns `[b, t, w]`.
pub fn self_attention(qkv: Tensor<3>, heads: usize, options: AttentionOptions) -> Tensor<3> {
    let [b, t, w3] = qkv.dims();
    assert!(
        heads > 0 && w3 % (3 * heads) == 0,
        "self_attention: a width of {w3} is not 3 × heads ({heads}) × head dim"
    );
    let (w, d) = (w3 / 3, w3 / 3 / heads);
    let device = qkv.device();
    let cpu = CPU.accepts(&device)
        && qkv.dtype() == burn::tensor::DType::F32
        && options.window.is_none()
        && options.key_lengths.is_none();
    if cpu && super::take_fused(OP, true, &device) {
        super::stats::fused(OP, "cpu-self-attention");
        let launch = super::cpu::self_attention::SelfLaunch {
            heads,
            causal: options.causal,
            scale: options.scale.unwrap_or(1.0 / (d as f64).sqrt()) as f32,
        };
        return super::cpu::self_attention::cpu_self_attention(qkv, launch);
    }
    let split = |i: usize| {
        qkv.clone()
            .slice([0..b, 0..t, i * w..(i + 1) * w])
            .reshape([b, t, heads, d])
            .swap_dims(1, 2)
    };
    attention_with(split(0), split(1), split(2), None, options)
        .swap_dims(1, 2)
        .reshape([b, t, w])
}

/// The reference: burn's `attention_fallback` (scores, mask, softmax, matmul; differentiable).
///
/// # Shapes
/// - as [`attention_with`].
pub fn attention_reference(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    options: AttentionOptions,
) -> Tensor<4> {
    let [b, h, lq, _] = q.dims();
    let lk = k.dims()[2];
    // The window and the key lengths as burn's boolean mask (true hides a key): dense here, by
    // design of a reference.
    let masked = options.window.is_some() || options.key_lengths.is_some();
    let mask = masked.then(|| {
        let hidden: Vec<bool> = (0..b * lq * lk)
            .map(|e| {
                let (batch, i, j) = (e / (lq * lk), e / lk % lq, e % lk);
                let outside = options.window.is_some_and(|w| j + w + lq <= i + lk);
                let padding = options.key_lengths.as_ref().is_some_and(|n| j >= n[batch]);
                outside || padding
            })
            .collect();
        Tensor::<3, burn::tensor::Bool>::from_data(
            burn::tensor::TensorData::new(hidden, [b, lq, lk]),
            &q.device(),
        )
        .reshape([b, 1, lq, lk])
        .expand([b, h, lq, lk])
    });
    attention_fallback(
        q,
        k,
        v,
        mask,
        bias,
        AttentionModuleOptions {
            scale: options.scale,
            softcap: None,
            is_causal: options.causal,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A causal window of 2 by hand: with all scores equal (q = 0), query i averages v over
    /// keys i − 1 and i (only key 0 for the first); the window counts from the bottom-right
    /// aligned position when the lengths differ.
    #[test]
    fn sliding_window_by_hand() {
        let device = Device::flex();
        let v: Vec<f32> = (0..5).map(|i| i as f32).collect();
        let v = Tensor::<4>::from_data(burn::tensor::TensorData::new(v, [1, 1, 5, 1]), &device);
        let options = AttentionOptions {
            causal: true,
            scale: None,
            window: Some(2),
            key_lengths: None,
        };
        let zeros = |l: usize| Tensor::<4>::zeros([1, 1, l, 1], &device);
        let out = attention_reference(zeros(5), zeros(5), v.clone(), None, options.clone());
        let got = out.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(got, vec![0.0, 0.5, 1.5, 2.5, 3.5]);
        // Two queries against five keys: positions 3 and 4, so keys {2, 3} and {3, 4}.
        let out = attention_reference(zeros(2), zeros(5), v, None, options);
        assert_eq!(out.into_data().try_to_vec::<f32>().unwrap(), vec![2.5, 3.5]);
    }
    use burn::tensor::{Distribution, Tolerance, activation::softmax};

    /// Key lengths by hand: with all scores equal (q = 0), each query of batch element b
    /// averages v over its first `key_lengths[b]` keys, for every head; with `causal` as well,
    /// query i averages keys 0..=min(i, len − 1).
    #[test]
    fn key_lengths_by_hand() {
        let device = Device::flex();
        let v: Vec<f32> = (0..2 * 2 * 4).map(|i| (i % 4) as f32).collect();
        let v = Tensor::<4>::from_data(burn::tensor::TensorData::new(v, [2, 2, 4, 1]), &device);
        let zeros = |l: usize| Tensor::<4>::zeros([2, 2, l, 1], &device);
        let options = AttentionOptions::default().with_key_lengths(vec![2, 4]);
        let got = attention_reference(zeros(1), zeros(4), v.clone(), None, options.clone());
        // b = 0 sees keys {0, 1}: 0.5; b = 1 all four: 1.5; both heads alike.
        assert_eq!(
            got.into_data().try_to_vec::<f32>().unwrap(),
            vec![0.5, 0.5, 1.5, 1.5]
        );
        let causal = AttentionOptions {
            causal: true,
            ..options
        };
        let got = attention_reference(zeros(4), zeros(4), v, None, causal);
        let got = got.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(&got[..4], &[0.0, 0.5, 0.5, 0.5]);
        assert_eq!(&got[8..12], &[0.0, 0.5, 1.0, 1.5]);
    }

    /// The reference equals softmax(q·kᵀ/√d)·v written out, and its causal mask hides the future.
    #[test]
    fn reference_matches_the_formula_and_masks_the_future() {
        let device = Device::flex();
        let r = |s: [usize; 4]| Tensor::<4>::random(s, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (r([2, 3, 5, 8]), r([2, 3, 5, 8]), r([2, 3, 5, 8]));
        let want = softmax(
            q.clone()
                .matmul(k.clone().swap_dims(2, 3))
                .div_scalar(8f64.sqrt()),
            3,
        )
        .matmul(v.clone());
        let got = attention_reference(q.clone(), k.clone(), v.clone(), None, Default::default());
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        // Causal: the first query sees only the first key, so its output is v's first row.
        let causal = AttentionOptions {
            causal: true,
            scale: None,
            window: None,
            key_lengths: None,
        };
        let got = attention_reference(q, k, v.clone(), None, causal);
        got.slice([0..2, 0..3, 0..1, 0..8])
            .into_data()
            .assert_approx_eq::<f32>(
                &v.slice([0..2, 0..3, 0..1, 0..8]).into_data(),
                Tolerance::absolute(1e-6),
            );
    }
}
