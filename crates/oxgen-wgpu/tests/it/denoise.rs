//! The fused WGSL denoising update against the plain-burn reference, on wgpu (lavapipe in CI).

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::ops::denoise::FusedDenoise;
use oxgen_models::ops::denoise::{
    self, DenoiseInput, Noise, OpPath, StepCoeffs, denoise_step, denoise_step_reference,
};
use oxgen_models::ops::{group_norm, with_path};
use oxgen_wgpu::denoise::{WgslDenoise, grid};

use crate::{U64_LOCK, gpu};

fn vec1(v: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn data(n: usize, stream: u32) -> Vec<f32> {
    oxgen_models::rng::normals(99, stream, n)
}

fn assert_close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * (1.0 + w.abs()),
            "{what}: element {i}: fused {g}, reference {w}"
        );
    }
}

fn coeffs(clip: Option<f32>, cp: f32, sigma: f32) -> StepCoeffs {
    StepCoeffs {
        guidance: 2.5,
        px: 1.7,
        po: -0.9,
        clip,
        cx: 0.83,
        c0: 0.41,
        cp,
        sigma,
    }
}

/// Every update family's variant, explicit noise, at sizes that are not multiples of 4 or of the
/// workgroup, and a batch of one 8×8 image.
#[test]
fn fused_matches_reference_with_explicit_noise() {
    let gpu = gpu();
    let cpu = Device::flex();
    let cases = [
        ("ddpm (noise)", None, 0.0, 0.3, false, false),
        ("ddim eta=0 (clip)", Some(1.0), 0.0, 0.0, false, false),
        ("euler ancestral (guided)", None, 0.0, 0.2, true, false),
        (
            "dpm++2m (prev, guided, clip)",
            Some(1.5),
            -0.37,
            0.0,
            true,
            true,
        ),
    ];
    // Multiples of 4 take the vec4 variant, the others the scalar one.
    for n in [1usize, 3, 4, 64, 1023, 1025, 4096, 4099, 100_000, 100_003] {
        for (name, clip, cp, sigma, guided, prev) in cases {
            let (x, out, u, p, z) = (data(n, 1), data(n, 2), data(n, 3), data(n, 4), data(n, 5));
            let c = coeffs(clip, cp, sigma);
            let input = |d: &Device| DenoiseInput {
                x: vec1(&x, d),
                out: vec1(&out, d),
                uncond: guided.then(|| vec1(&u, d)),
                prev_x0: prev.then(|| vec1(&p, d)),
                want_x0: true,
                threshold: None,
            };
            let want = denoise_step_reference(input(&cpu), c, Noise::Explicit(vec1(&z, &cpu)));
            let got = WgslDenoise.step(input(&gpu), c, Noise::Explicit(vec1(&z, &gpu)));
            let what = format!("{name}, n={n}");
            assert_close(&host(got.x), &host(want.x), 1e-5, &what);
            assert_close(&host(got.x0), &host(want.x0), 1e-5, &format!("{what}, x0"));
        }
    }
}

/// Dynamic thresholding in the kernel matches the reference: sample lengths that take the vec4
/// variant (64), the scalar one (7), and an even total with a sample length that is not a multiple
/// of 4 (2 × 4,102), which must fall back to the scalar variant.
#[test]
fn fused_dynamic_thresholding_matches_reference() {
    let gpu = gpu();
    let cpu = Device::flex();
    for (rows, len) in [(3usize, 7usize), (4, 64), (2, 4102), (1, 1000)] {
        let n = rows * len;
        let scaled = |s: u32| -> Vec<f32> { data(n, s).iter().map(|v| 2.5 * v).collect() };
        let (x, out, u) = (scaled(11), scaled(12), scaled(13));
        let c = coeffs(None, 0.0, 0.0);
        let input = |d: &Device| DenoiseInput {
            x: vec1(&x, d),
            out: vec1(&out, d),
            uncond: Some(vec1(&u, d)),
            prev_x0: None,
            want_x0: true,
            threshold: None,
        };
        let with_threshold = |d: &Device| {
            let mut i = input(d);
            i.threshold = Some(denoise::dynamic_threshold(&i, &c, rows, 0.9));
            i
        };
        let s = host(denoise::dynamic_threshold(&input(&cpu), &c, rows, 0.9));
        assert!(
            s.iter().any(|&v| v > 1.0),
            "{rows}×{len}: nothing to threshold: {s:?}"
        );
        let want = denoise_step_reference(with_threshold(&cpu), c, Noise::None);
        let got = WgslDenoise.step(with_threshold(&gpu), c, Noise::None);
        let what = format!("dynamic threshold, {rows}×{len}");
        let want_x0 = host(want.x0);
        assert!(
            want_x0.iter().all(|v| v.abs() <= 1.0 + 1e-6),
            "{what}: |x̂₀| > 1"
        );
        assert_close(&host(got.x), &host(want.x), 1e-5, &what);
        assert_close(&host(got.x0), &want_x0, 1e-5, &format!("{what}, x0"));
    }
}

/// The in-kernel Philox noise is the reference generator's noise.
#[test]
fn in_kernel_noise_matches_the_host_generator() {
    let _guard = U64_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gpu = gpu();
    // Both Philox products: 16-bit halves, and the native 64-bit multiply where the adapter has
    // shader-int64 (lavapipe does).
    let int64 = gpu.supports_dtype(burn::tensor::DType::U64);
    for native in [false, true] {
        oxgen_wgpu::denoise::set_native_u64(native);
        let before = oxgen_wgpu::denoise::mul64_launches();
        // 10,008 takes the vec4 variant, 10,007 the scalar one.
        for n in [10_007, 10_008] {
            let got = host(seeded_noise_gpu(&gpu, n, 0xdead_beef_1234, 17));
            let want = oxgen_models::rng::normals(0xdead_beef_1234, 17, n);
            // Same bits in, same Box–Muller; only the GPU's log/sin/cos rounding differs.
            let what = format!("philox noise, n={n}, native u64 {native}");
            assert_close(&got, &want, 2e-5, &what);
        }
        let used = oxgen_wgpu::denoise::mul64_launches() - before;
        assert_eq!(used, if native && int64 { 2 } else { 0 });
    }
    oxgen_wgpu::denoise::set_native_u64(true);
}

/// Moments, a Kolmogorov–Smirnov test, neighbour and step correlations of the in-kernel noise.
#[test]
fn in_kernel_noise_is_standard_normal_and_uncorrelated() {
    let _u64 = U64_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gpu = gpu();
    let n = 1 << 18;
    let draw = |seed: u64, stream: u32| host(seeded_noise_gpu(&gpu, n, seed, stream));
    let a = draw(1, 0);
    let b = draw(1, 1);
    let c = draw(2, 0);
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    // Standard errors: 1/√n ≈ 0.002 for the mean, √(2/n) ≈ 0.0028 for the variance.
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 1.0).abs() < 0.015, "variance {var}");
    // KS statistic against Φ; the 1% critical value is 1.63/√n ≈ 0.0032.
    let mut s: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    s.sort_by(f64::total_cmp);
    let d = s
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let f = phi(v);
            (f - i as f64 / n as f64)
                .abs()
                .max(((i + 1) as f64 / n as f64 - f).abs())
        })
        .fold(0.0, f64::max);
    assert!(d < 1.63 / (n as f64).sqrt(), "KS statistic {d}");
    let corr = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| p as f64 * q as f64)
            .sum::<f64>()
            / x.len() as f64
    };
    // Correlations of independent unit normals have standard error 1/√n ≈ 0.002.
    assert!(
        corr(&a[..n - 1], &a[1..]).abs() < 0.01,
        "neighbour correlation"
    );
    assert!(
        corr(&a[..n - 4], &a[4..]).abs() < 0.01,
        "next-block correlation"
    );
    assert!(corr(&a, &b).abs() < 0.01, "correlation across steps");
    assert!(corr(&a, &c).abs() < 0.01, "correlation across seeds");
    assert_ne!(a[..16], b[..16]);
    assert_ne!(a[..16], c[..16]);
    assert_eq!(a, draw(1, 0), "the same seed and step give the same noise");
}

/// The kernel's in-register noise: with cx = c0 = 0 and σ = 1 the update returns z itself.
fn seeded_noise_gpu(gpu: &Device, n: usize, seed: u64, stream: u32) -> Tensor<1> {
    let zeros = Tensor::<1>::zeros([n], gpu);
    let c = StepCoeffs {
        guidance: 1.0,
        px: 0.0,
        po: 0.0,
        clip: None,
        cx: 0.0,
        c0: 0.0,
        cp: 0.0,
        sigma: 1.0,
    };
    WgslDenoise
        .step(
            DenoiseInput {
                x: zeros.clone(),
                out: zeros,
                uncond: None,
                prev_x0: None,
                want_x0: false,
                threshold: None,
            },
            c,
            Noise::Seeded { seed, stream },
        )
        .x
}

/// Standard normal CDF (Abramowitz & Stegun 7.1.26 for erf, error below 1.5e-7).
fn phi(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The fused path is what a user gets on a wgpu device, and a whole DDIM run through it gives the
/// same images as the reference path with the same noise.
#[test]
fn a_ddim_sampler_run_takes_the_fused_path_and_matches_the_reference() {
    let _u64 = U64_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gpu = gpu();
    let cfg = oxgen_models::DiffusionConfig::new(oxgen_models::diffusion::DenoiserConfig::UNet(
        oxgen_models::diffusion::unet::UNetConfig::new()
            .with_channels(16)
            .with_heads(2),
    ))
    .with_num_classes(Some(10));
    let shape = oxgen_models::DataShape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    gpu.seed(3);
    let model = cfg.init(shape, &gpu);
    let sample = oxgen_models::SampleConfig {
        sampler: oxgen_models::samplers::SamplerKind::Ddim,
        steps: 8,
        eta: 0.5,
        guidance: 2.0,
        clip: Some(1.0),
        dynamic_threshold: None,
        seed: 11,
        final_denoise: true,
    };
    let labels: Vec<u32> = (0..5).collect();
    let (fused, counts) = oxgen_models::ops::stats::scope(|| {
        host(
            oxgen_models::diffusion::sample(&model, &cfg, &sample, 5, Some(&labels), &gpu)
                .reshape([5 * 64]),
        )
    });
    assert_eq!(
        denoise::last_path(),
        Some("wgsl-denoise"),
        "sampling on wgpu must take the fused kernel"
    );
    // Every GroupNorm+SiLU of the UNet took the fused kernel too: 6 residual blocks × 2 plus the
    // output norm, once per step (the guided batch is one forward).
    assert_eq!(group_norm::last_path(), Some("wgsl-group-norm-silu"));
    assert_eq!(counts.op(group_norm::OP).fused, 13 * 8);
    let reference = with_path(OpPath::Reference, || {
        host(
            oxgen_models::diffusion::sample(&model, &cfg, &sample, 5, Some(&labels), &gpu)
                .reshape([5 * 64]),
        )
    });
    assert_eq!(denoise::last_path(), Some("reference"));
    assert_close(&fused, &reference, 1e-4, "DDIM samples, fused vs reference");
    // And the CPU never takes it.
    let _ = denoise_step(
        DenoiseInput {
            x: vec1(&[1.0], &Device::flex()),
            out: vec1(&[1.0], &Device::flex()),
            uncond: None,
            prev_x0: None,
            want_x0: false,
            threshold: None,
        },
        coeffs(None, 0.0, 0.0),
        Noise::None,
    );
    assert_eq!(denoise::last_path(), Some("reference"));
}

#[test]
fn grids_stay_within_the_dispatch_limit() {
    // A workgroup covers 256 invocations × 4 blocks × 4 elements.
    assert_eq!(grid(1), (1, 1));
    assert_eq!(grid(4096), (1, 1));
    assert_eq!(grid(4097), (2, 1));
    let (x, y) = grid(100_000_000);
    assert!(x <= 65_535 && (x as u64) * (y as u64) * 4096 >= 100_000_000);
    let (x, y) = grid(4096 * 65_536);
    assert!(x == 65_535 && y == 2);
}

/// The benchmark's roofline kernel copies exactly.
#[test]
fn the_copy_kernel_copies() {
    let gpu = gpu();
    for n in [4usize, 1024, 1_000_004] {
        let x = data(n, 7);
        let got = host(oxgen_wgpu::copy::copy(vec1(&x, &gpu)));
        assert!(got == x, "copy of {n} elements differs");
    }
}
