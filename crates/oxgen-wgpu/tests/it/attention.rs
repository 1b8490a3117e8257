//! Flash attention (WGSL, forward and backward) against burn's `attention_fallback` on the CPU,
//! through autodiff, on wgpu (lavapipe in CI).

use burn::tensor::{DType, Device, Tensor, TensorData, f16};
use oxgen_models::ops::attention::{self, AttentionOptions, attention_reference, attention_with};
use oxgen_models::ops::{OpPath, with_path};

use crate::gpu;

pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn on(device: &Device, v: &[f32], shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

pub(crate) fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        let err = (g - w).abs() / (1.0 + w.abs());
        if err > worst.0 {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: element {}: got {}, want {} (relative error {:.2e} > {tol:.0e})",
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0
    );
}

pub(crate) struct Case {
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub causal: bool,
    pub bias: bool,
    pub logit_scale: f32,
    /// f16 tensors (the kernels' f16-storage variant); the reference gets the same f16-rounded
    /// inputs in f32.
    pub half: bool,
}

thread_local! {
    /// Sliding window of the cases of [`sliding_window_matches_the_reference`] (0: none); the
    /// other tests leave it at 0. Read by [`run_bh`] through this thread-local, so `Case` keeps
    /// its shape.
    static WINDOW: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Per-sequence key lengths of the cases of [`key_lengths_match_the_reference`] (one per
    /// batch element), as `WINDOW`.
    static KEY_LENGTHS: std::cell::RefCell<Option<Vec<usize>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with per-sequence key lengths on this thread's cases.
pub(crate) fn with_key_lengths(lengths: &[usize], f: impl FnOnce()) {
    KEY_LENGTHS.with(|k| *k.borrow_mut() = Some(lengths.to_vec()));
    f();
    KEY_LENGTHS.with(|k| *k.borrow_mut() = None);
}

/// Runs `f` with a sliding window of `window` keys (0: none) on this thread's cases.
pub(crate) fn with_window(window: usize, f: impl FnOnce()) {
    WINDOW.with(|w| w.set(window));
    f();
    WINDOW.with(|w| w.set(0));
}

/// Output and the three gradients of sum(out ∘ w), on `device`, with batch × heads = `bh`.
fn run_bh(device: &Device, c: &Case, fused: bool, (b, h): (usize, usize)) -> [Vec<f32>; 4] {
    let sq = [b, h, c.lq, c.d];
    let sk = [b, h, c.lk, c.d];
    let round = |v: Vec<f32>| -> Vec<f32> {
        if c.half {
            v.into_iter().map(|x| f16::from_f32(x).to_f32()).collect()
        } else {
            v
        }
    };
    let normals = |n: usize, stream: u32| round(oxgen_models::rng::normals(42, stream, n));
    let q: Vec<f32> = round(
        normals(b * h * c.lq * c.d, 1)
            .iter()
            .map(|x| x * c.logit_scale)
            .collect(),
    );
    let (k, v) = (
        normals(b * h * c.lk * c.d, 2),
        normals(b * h * c.lk * c.d, 3),
    );
    let w = normals(b * h * c.lq * c.d, 4);
    let dev = device.clone().autodiff();
    let put = |v: &[f32], shape: [usize; 4]| {
        let t = on(&dev, v, shape);
        if c.half && fused {
            t.cast(DType::F16)
        } else {
            t
        }
    };
    let qt = put(&q, sq).require_grad();
    let kt = put(&k, sk).require_grad();
    let vt = put(&v, sk).require_grad();
    // Bias: small values, and every key j ≡ 3 (mod 5) masked with −∞ (never key 0, so no row
    // is fully masked).
    let bias = c.bias.then(|| {
        let n = b * h * c.lq * c.lk;
        let mut bias: Vec<f32> = normals(n, 5).iter().map(|x| 0.5 * x).collect();
        for (i, x) in bias.iter_mut().enumerate() {
            if i % c.lk % 5 == 3 {
                *x = f32::NEG_INFINITY;
            }
        }
        put(&round(bias), [b, h, c.lq, c.lk])
    });
    let options = AttentionOptions {
        causal: c.causal,
        scale: None,
        window: Some(WINDOW.with(|w| w.get())).filter(|&w| w > 0),
        key_lengths: KEY_LENGTHS.with(|k| k.borrow().clone()).map(Into::into),
    };
    let out = if fused {
        let out = with_path(OpPath::Fused, || {
            attention_with(qt.clone(), kt.clone(), vt.clone(), bias, options.clone())
        });
        assert_eq!(attention::last_path(), Some(expected_name(c.lq)));
        out
    } else {
        attention_reference(qt.clone(), kt.clone(), vt.clone(), bias, options)
    };
    if c.half && fused {
        assert_eq!(out.dtype(), DType::F16, "f16 in, f16 out");
    }
    let grads = (out.clone() * put(&w, sq)).sum().backward();
    let grad = |t: &Tensor<4>| host(t.grad(&grads).expect("a gradient"));
    [host(out), grad(&qt), grad(&kt), grad(&vt)]
}

/// The name the stats give a fused call with `lq` query rows: a few rows take the decode path.
fn expected_name(lq: usize) -> &'static str {
    if lq <= oxgen_wgpu::attention_decode::MAX_ROWS {
        oxgen_wgpu::attention::DECODE_NAME
    } else {
        "wgsl-flash-attention"
    }
}

impl Case {
    /// f32 inputs, unscaled logits.
    pub(crate) fn plain(lq: usize, lk: usize, d: usize, causal: bool, bias: bool) -> Self {
        Self {
            lq,
            lk,
            d,
            causal,
            bias,
            logit_scale: 1.0,
            half: false,
        }
    }
}

pub(crate) fn check(gpu: &Device, c: &Case) {
    check_bh(gpu, c, (2, 2));
}

fn check_bh(gpu: &Device, c: &Case, bh: (usize, usize)) {
    let what = format!(
        "lq={} lk={} d={} causal={} bias={} logits×{} f16={} window={} key lengths={:?}",
        c.lq,
        c.lk,
        c.d,
        c.causal,
        c.bias,
        c.logit_scale,
        c.half,
        WINDOW.with(|w| w.get()),
        KEY_LENGTHS.with(|k| k.borrow().clone())
    );
    // f16 results are rounded once on store (2⁻¹¹ relative); Δ = dO·O then sees rounded O.
    let tol = if c.half { 3e-3 } else { 2e-4 };
    let want = run_bh(&Device::flex(), c, false, bh);
    let got = run_bh(gpu, c, true, bh);
    for (i, name) in ["out", "dq", "dk", "dv"].iter().enumerate() {
        close(&got[i], &want[i], tol, &format!("{what}: {name}"));
    }
}

/// Forward and all three gradients: lengths that are not tile multiples, causal and not, with and
/// without a bias that masks keys, every head dim, batch × heads = 4.
#[test]
fn forward_and_gradients_match_the_reference() {
    let gpu = gpu();
    wide_matrix(|| {
        for l in [1, 17, 129, 300] {
            for d in [32, 64, 128] {
                for causal in [false, true] {
                    for bias in [false, true] {
                        let case = Case::plain(l, l, d, causal, bias);
                        check(&gpu, &case);
                    }
                }
            }
        }
    });
}

/// Every head dim from 1 to 256 has a kernel: the defaults' 16, small ones, ones that are not a
/// multiple of 4 (zero-padded, with the scale of the real head dim) and the largest, each with
/// an odd length, causal and not, with and without a masking bias.
#[test]
fn every_head_dim_matches_the_reference() {
    let gpu = gpu();
    for (d, l, causal, bias) in [
        (1, 9, false, false),
        (6, 33, true, false),
        (8, 17, false, true),
        (16, 129, true, true),
        (16, 40, false, false),
        (24, 65, true, false),
        (48, 20, false, true),
        (130, 9, true, false),
        // One case only: lavapipe's LLVM takes about 25 s per kernel at this head dim (cold
        // shader cache), where d = 16 takes under 1 s.
        (256, 70, true, true),
    ] {
        let case = Case::plain(l, l, d, causal, bias);
        check(&gpu, &case);
    }
}

/// Sliding windows (local attention) without an L×L mask: causal and not, windows shorter and
/// longer than a tile, queries shorter and longer than keys, with and without a bias; forward
/// and all three gradients against burn's `attention_fallback` with the window as a dense mask.
#[test]
fn sliding_window_matches_the_reference() {
    let gpu = gpu();
    for (lq, lk, d, causal, bias, window) in [
        (70, 70, 16, true, false, 5),
        (70, 70, 16, true, true, 40),
        (33, 33, 32, false, false, 8),
        (17, 40, 64, true, false, 4),
        (40, 17, 8, true, true, 3),
        (129, 129, 64, true, false, 1),
    ] {
        let case = Case::plain(lq, lk, d, causal, bias);
        wide_matrix(|| with_window(window, || check(&gpu, &case)));
    }
}

/// Per-sequence key lengths (padding masks), alone and with causal, bias and window masks, a
/// length of 1, head dims that pad, and the decode path (one split and several): forward and all
/// three gradients (the padding keys get zero dK and dV).
#[test]
fn key_lengths_match_the_reference() {
    let gpu = gpu();
    for (lq, lk, d, causal, bias, window, lengths) in [
        (17, 40, 16, false, false, 0, [40, 9]),
        (70, 70, 32, true, false, 0, [70, 33]),
        (129, 129, 64, false, true, 0, [1, 100]),
        (40, 40, 6, true, false, 30, [40, 20]),
        (1, 1000, 64, false, false, 0, [1000, 257]),
        (3, 300, 128, true, true, 0, [300, 5]),
    ] {
        let case = Case::plain(lq, lk, d, causal, bias);
        for groups in [None, Some(oxgen_wgpu::attention_decode::GPU_GROUPS)] {
            oxgen_wgpu::attention_decode::with_target_groups(groups, || {
                with_key_lengths(&lengths, || {
                    wide_matrix(|| with_window(window, || check(&gpu, &case)))
                })
            });
        }
    }
}

/// The wide test matrices (every length × head dim × mask) run the kernels at 2 rows per
/// invocation: the code is the same for any row count (one generator writes it out per row),
/// and at this adapter's defaults (16 and 8 rows at d = 64) lavapipe's LLVM takes about 15 s to
/// compile each kernel cold, which over the matrices' ~40 variants would add half an hour to
/// CI. The defaults run in `every_head_dim_matches_the_reference`, `half_storage_…`,
/// `cross_attention_lengths`, `long_sequences`, `large_logits_stay_finite` and the product
/// paths; 1, 2 and 4 rows in `rows_per_invocation_settings_match_the_reference`.
fn wide_matrix<R>(f: impl FnOnce() -> R) -> R {
    oxgen_wgpu::attention_tiling::with_rows_per_invocation(2, f)
}

/// The rows per invocation other adapters get (a GPU's 2, and 1 and 4), in all three kernels:
/// forward and all three gradients at odd lengths (several row tiles), causal with a bias and
/// plain. The defaults of this adapter run in every other test.
#[test]
fn rows_per_invocation_settings_match_the_reference() {
    let gpu = gpu();
    for rows in [1, 2, 4] {
        for (l, d, causal, bias) in [(129, 64, true, true), (70, 32, false, false)] {
            let case = Case::plain(l, l, d, causal, bias);
            oxgen_wgpu::attention_tiling::with_rows_per_invocation(rows, || check(&gpu, &case));
        }
    }
}

/// The broadcast form of the three kernels, this adapter's default where its subgroups hold the
/// workgroup (lavapipe: 8 lanes, and 8 invocations at 8 or 16 rows each): each step's K and V
/// chunks (forward, dQ) or q and dO chunks, lse and Δ (dK/dV) are loaded by the lanes and shared
/// by `subgroupBroadcast`, with no tiles in workgroup memory.
/// Odd lengths (the last step's keys past Lk read a clamped row, which is masked), queries
/// longer and shorter than the keys, causal with a bias, a window, key lengths, head dims 8 (one
/// chunk per lane per step), 64 and 128 (8 rows per invocation); forward and all three
/// gradients (f16 storage takes the broadcast form in `half_storage_matches_the_reference`, at
/// this adapter's row counts). The first case also with subgroups off (the tiled form at the same row count).
/// Where the adapter's subgroups are at least 8 wide, the broadcast form must have run.
#[test]
fn broadcast_kernels_match_the_reference() {
    let gpu = gpu();
    let wide = oxgen_wgpu::adapters()
        .iter()
        .all(|a| a.subgroups && a.subgroup_sizes.0 >= 8);
    for (lq, lk, d, causal, bias, window, lengths) in [
        (129, 129, 64, true, true, 0, None),
        (70, 203, 8, false, false, 0, None),
        (100, 61, 128, true, false, 0, None),
        (129, 129, 32, true, false, 17, Some([129, 40])),
    ] {
        let case = Case::plain(lq, lk, d, causal, bias);
        let before = oxgen_wgpu::attention::broadcast_launches();
        let run = || {
            with_window(window, || match &lengths {
                Some(l) => with_key_lengths(l, || check(&gpu, &case)),
                None => check(&gpu, &case),
            })
        };
        run();
        if wide {
            // The forward, dQ and dK/dV; at d = 128 the backward kernels hold 4 rows per
            // invocation, 16 invocations, two subgroups of lavapipe, and take the tiled form.
            let kernels = if d <= 64 { 3 } else { 1 };
            assert!(
                oxgen_wgpu::attention::broadcast_launches() >= before + kernels,
                "lq {lq}, lk {lk}, d {d}: the broadcast kernels did not run"
            );
        }
        if lq == 129 && d == 64 {
            oxgen_wgpu::subgroups::with_enabled(Some(false), run);
        }
    }
}

/// More (batch, head) pairs than one grid dimension holds (65,535): the grid folds into z, and
/// every pair, the last included, gets its output and gradients.
#[test]
fn batch_heads_past_the_grid_limit() {
    let gpu = gpu();
    for causal in [false, true] {
        let case = Case::plain(3, 3, 4, causal, false);
        check_bh(&gpu, &case, (32_769, 2));
    }
}

/// f16 storage with f32 arithmetic (lavapipe has shader-f16): forward and all three gradients,
/// which come back as f16, against the f32 reference on the same f16-rounded inputs.
#[test]
fn half_storage_matches_the_reference() {
    let gpu = gpu();
    let half = gpu.supports_dtype(DType::F16);
    if !half {
        eprintln!("this adapter has no shader-f16: the f16 inputs run in the f32 kernels");
    }
    let _f16 = crate::F16_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = oxgen_wgpu::attention::half_launches();
    let broadcast_before = oxgen_wgpu::attention::broadcast_launches();
    for (l, d, causal, bias) in [
        (17, 32, false, true),
        (129, 64, true, false),
        (129, 64, false, true),
        (40, 128, true, true),
    ] {
        let case = Case {
            lq: l,
            lk: l,
            d,
            causal,
            bias,
            logit_scale: 1.0,
            half: true,
        };
        check(&gpu, &case);
    }
    if half {
        // Forward, dQ and dK/dV for each case: the f16 kernels really ran.
        assert_eq!(oxgen_wgpu::attention::half_launches() - before, 4 * 3);
    }
    // At 129 rows and d = 64 every kernel takes the broadcast form where lavapipe-wide (8 lanes)
    // subgroups hold the workgroup: f16 through it too.
    if half
        && oxgen_wgpu::adapters()
            .iter()
            .all(|a| a.subgroups && a.subgroup_sizes.0 >= 8)
    {
        assert!(oxgen_wgpu::attention::broadcast_launches() > broadcast_before);
    }
}

/// Queries and keys of different lengths (bottom-right causal alignment, as burn's).
#[test]
fn cross_attention_lengths() {
    let gpu = gpu();
    for (lq, lk) in [(17, 40), (40, 17)] {
        for causal in [false, true] {
            let case = Case::plain(lq, lk, 64, causal, false);
            check(&gpu, &case);
        }
    }
}

/// A sequence long enough that a kernel looping over the head dim would pass lavapipe's limit
/// of 65,535 loop iterations per invocation (it silently stopped after about 480 keys at d = 64).
#[test]
fn long_sequences() {
    let gpu = gpu();
    for (l, d) in [(1024, 64), (600, 128)] {
        let case = Case::plain(l, l, d, false, false);
        check(&gpu, &case);
    }
}

/// Logits scaled by 30: no NaN or Inf, and still the reference's numbers.
#[test]
fn large_logits_stay_finite() {
    let gpu = gpu();
    for causal in [false, true] {
        let case = Case {
            lq: 129,
            lk: 129,
            d: 64,
            causal,
            bias: true,
            logit_scale: 30.0,
            half: false,
        };
        check(&gpu, &case);
    }
}

/// Head dims past 256 take the reference, and the call is counted as such, with the reason; the
/// CPU takes its own kernel; the counts are those of the code that ran.
#[test]
fn path_selection() {
    use oxgen_models::ops::stats;
    let gpu = gpu();
    let t = |d: usize, device: &Device| on(device, &vec![0.5; 2 * 3 * d], [1, 2, 3, d]);
    let ((), counts) = stats::scope(|| {
        let _ = attention::attention(t(16, &gpu), t(16, &gpu), t(16, &gpu));
        assert_eq!(attention::last_path(), Some(expected_name(3)));
        let _ = attention::attention(t(300, &gpu), t(300, &gpu), t(300, &gpu));
        assert_eq!(attention::last_path(), Some("reference"));
        // Forcing the fused path still sends a head dim without a kernel to the reference.
        let _ = with_path(OpPath::Fused, || {
            attention::attention(t(300, &gpu), t(300, &gpu), t(300, &gpu))
        });
        assert_eq!(attention::last_path(), Some("reference"));
    });
    let c = counts.op(attention::OP);
    assert_eq!((c.fused, c.reference), (1, 2), "{counts:?}");
    assert_eq!(
        c.reasons.get("head dim 300 has no kernel variant"),
        Some(&2)
    );
    // The Flex device takes the built-in CPU kernel.
    let cpu = Device::flex();
    let _ = attention::attention(t(64, &cpu), t(64, &cpu), t(64, &cpu));
    assert_eq!(attention::last_path(), Some("cpu-fused-attention"));
    let ((), counts) = with_path(OpPath::Reference, || {
        stats::scope(|| {
            let _ = attention::attention(t(64, &cpu), t(64, &cpu), t(64, &cpu));
        })
    });
    assert_eq!(attention::last_path(), Some("reference"));
    assert_eq!(
        counts.op(attention::OP).reasons.get("--op-path reference"),
        Some(&1)
    );
}

#[test]
fn tile_rows_fit_the_workgroup_storage() {
    use oxgen_wgpu::attention::tile_rows;
    for (storage, d, rows) in [
        (32 * 1024, 32, 64),
        (32 * 1024, 64, 32),
        (32 * 1024, 128, 16),
    ] {
        assert_eq!(tile_rows(d, storage), rows);
        assert!(2 * rows as usize * d as usize * 4 <= storage / 2);
    }
    assert_eq!(tile_rows(128, 16 * 1024), 8);
}

/// The forward's key limit on lavapipe (65,535 loop iterations per invocation), worked out by
/// hand from its loops at the software rows per invocation (16, 16, 8; 8 invocations): at
/// d = 64, 32-key tiles, 32·16/8 = 64 load iterations + 8 key steps + 1 = 73 per tile,
/// 65,535 / 73 = 897 tiles of 32 keys.
#[test]
fn software_key_limits() {
    use oxgen_wgpu::attention::software_max_keys;
    // The limits follow the rows per invocation: this thread's, the defaults. Selecting the
    // adapter notes whether it is a software one.
    let _gpu = gpu();
    if !oxgen_wgpu::device::maybe_software() {
        return;
    }
    assert_eq!(software_max_keys(32), 51_776);
    assert_eq!(software_max_keys(64), 28_704);
    assert_eq!(software_max_keys(128), 15_184);
}
