//! The CPU kernels against the plain-burn references, forward and gradients, through autodiff
//! on the Flex device, odd shapes included.

use burn::tensor::{Device, Tensor, TensorData};

use crate::ops::attention::{AttentionOptions, attention_reference};
use crate::ops::cpu::attention::cpu_attention;

fn normals(seed: u64, stream: u32, n: usize, scale: f32) -> Vec<f32> {
    crate::rng::normals(seed, stream, n)
        .into_iter()
        .map(|x| x * scale)
        .collect()
}

/// The largest |got − want| / (1 + |want|).
fn worst_relative(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().expect("f32")
}

/// [out, dq, dk, dv] of `loss = Σ out ⊙ w` by the kernel (`fused`) or the reference.
fn run(
    shape: (usize, usize, usize, usize, usize),
    o: AttentionOptions,
    fused: bool,
) -> [Vec<f32>; 4] {
    let (b, h, lq, lk, d) = shape;
    let dev = Device::flex().autodiff();
    let put = |v: Vec<f32>, s: [usize; 4]| Tensor::<4>::from_data(TensorData::new(v, s), &dev);
    let (sq, sk) = ([b, h, lq, d], [b, h, lk, d]);
    let q = put(normals(3, 1, b * h * lq * d, 1.5), sq).require_grad();
    let k = put(normals(3, 2, b * h * lk * d, 1.0), sk).require_grad();
    let v = put(normals(3, 3, b * h * lk * d, 1.0), sk).require_grad();
    let w = put(normals(3, 4, b * h * lq * d, 1.0), sq);
    let out = if fused {
        cpu_attention(q.clone(), k.clone(), v.clone(), o).0
    } else {
        attention_reference(q.clone(), k.clone(), v.clone(), None, o)
    };
    let grads = (out.clone() * w).sum().backward();
    let grad = |t: &Tensor<4>| host(t.grad(&grads).expect("a gradient"));
    [host(out), grad(&q), grad(&k), grad(&v)]
}

#[test]
fn cpu_attention_matches_the_reference_forward_and_backward() {
    let causal = |c: bool| AttentionOptions {
        causal: c,
        scale: None,
        window: None,
        key_lengths: None,
    };
    // (b, h, lq, lk, d): odd sizes, lq < lk (cached keys), a single query, head dims 1 to 32.
    let cases = [
        ((2, 3, 5, 7, 3), causal(false)),
        ((2, 3, 5, 7, 3), causal(true)),
        ((1, 2, 9, 9, 16), causal(true)),
        ((2, 2, 1, 6, 8), causal(true)),
        ((1, 1, 4, 4, 1), causal(false)),
        ((3, 4, 33, 33, 32), causal(true)),
        (
            (2, 1, 6, 10, 5),
            AttentionOptions {
                causal: false,
                scale: Some(0.3),
                window: None,
                key_lengths: None,
            },
        ),
    ];
    for (shape, o) in cases {
        let want = run(shape, o.clone(), false);
        let got = run(shape, o.clone(), true);
        for (name, (g, w)) in ["out", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
            assert_eq!(g.len(), w.len());
            let worst = worst_relative(g, w);
            assert!(worst < 2e-5, "{shape:?} {o:?}: {name} off by {worst}");
        }
    }
}

/// The saved logsumexp is log Σ_j exp(scale · q·k_j) over the visible keys: checked by hand on
/// a 1 × 1 × 2 × 2 causal case.
#[test]
fn cpu_attention_logsumexp_is_the_softmax_normaliser() {
    let dev = Device::flex();
    let t = |v: [f32; 4]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 1, 2, 2]), &dev);
    let (q, k, v) = (
        t([1.0, 0.0, 0.5, 2.0]),
        t([0.0, 1.0, 1.0, 1.0]),
        t([1.0, 2.0, 3.0, 4.0]),
    );
    let o = AttentionOptions {
        causal: true,
        scale: Some(1.0),
        window: None,
        key_lengths: None,
    };
    let (out, lse) = cpu_attention(q, k, v, o);
    let lse = host(lse);
    // Query 0 sees key 0 only: score 0 → lse 0, output v₀.
    assert!((lse[0] - 0.0).abs() < 1e-6);
    // Query 1 sees both: scores 2 and 2.5.
    let want = (2f32.exp() + 2.5f32.exp()).ln();
    assert!((lse[1] - want).abs() < 1e-5, "{} vs {want}", lse[1]);
    let out = host(out);
    assert_eq!(&out[..2], &[1.0, 2.0]);
    let p1 = 2.5f32.exp() / (2f32.exp() + 2.5f32.exp());
    assert!((out[2] - (1.0 + 2.0 * p1)).abs() < 1e-5);
}

/// GELU: the forward equals burn's exact `gelu`; the gradient equals the exact derivative
/// Φ(x) + x·φ(x) in f64 (Hendrycks & Gimpel, 2016, eq. for GELU with the normal CDF), and Φ
/// hits published values of the standard normal CDF (Φ(1) = 0.8413447, Φ(−2) = 0.0227501).
#[test]
fn cpu_gelu_matches_burn_forward_and_the_exact_derivative() {
    use crate::ops::cpu::gelu::{cpu_gelu, exp_neg, phi_cdf};
    assert!((phi_cdf(1.0) - 0.841_344_7).abs() < 2e-7);
    assert!((phi_cdf(-2.0) - 0.022_750_1).abs() < 2e-7);
    // The polynomial exp within 2 ulp of libm's over its range.
    for i in 0..=8700 {
        let x = -(i as f32) * 0.01;
        let (got, want) = (exp_neg(x), (x as f64).exp() as f32);
        assert!(
            (got - want).abs() <= 2.5e-7 * want,
            "exp({x}) = {got}, not {want}"
        );
    }
    let dev = Device::flex().autodiff();
    // An odd length past one parallel chunk, with large and tiny values.
    let n = (1 << 14) + 37;
    let xs: Vec<f32> = normals(5, 1, n, 3.0);
    let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [1, n]), &dev).require_grad();
    let w: Vec<f32> = normals(5, 2, n, 1.0);
    let y = cpu_gelu(x.clone());
    let want = burn::tensor::activation::gelu(x.clone());
    let (got_y, want_y) = (host(y.clone()), host(want));
    for (g, w) in got_y.iter().zip(&want_y) {
        assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "{g} vs {w}");
    }
    let grads = (y * Tensor::<2>::from_data(TensorData::new(w.clone(), [1, n]), &dev))
        .sum()
        .backward();
    let dx = host(x.grad(&grads).expect("a gradient"));
    for i in 0..n {
        let x = xs[i] as f64;
        let cdf = 0.5 * (1.0 + erf64(x / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let want = w[i] as f64 * (cdf + x * pdf);
        assert!(
            (dx[i] as f64 - want).abs() < 2e-6 * (1.0 + want.abs()),
            "x = {x}: {} vs {want}",
            dx[i]
        );
    }
}

/// erf in f64 (libm's, as a second implementation of the same function).
fn erf64(x: f64) -> f64 {
    libm::erf(x)
}

/// LayerNorm: the kernel against burn's `layer_norm` (composed ops under autodiff), forward and
/// the gradients of x, γ and β, on rows of odd width past one parallel chunk.
#[test]
fn cpu_layer_norm_matches_burn_forward_and_backward() {
    use crate::ops::cpu::layer_norm::cpu_layer_norm;
    let (rows, d) = (131, 37);
    let run = |fused: bool| {
        let dev = Device::flex().autodiff();
        let put = |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), &dev);
        let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [d]), &dev);
        let x = put(normals(9, 1, rows * d, 2.0), [1, rows, d]).require_grad();
        let gamma = vec1(normals(9, 2, d, 1.0)).require_grad();
        let beta = vec1(normals(9, 3, d, 1.0)).require_grad();
        let w = put(normals(9, 4, rows * d, 1.0), [1, rows, d]);
        let y = if fused {
            cpu_layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5)
        } else {
            burn::tensor::module::layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-5)
        };
        let grads = (y.clone() * w).sum().backward();
        [
            host(y),
            host(x.grad(&grads).expect("dx")),
            host(gamma.grad(&grads).expect("dγ")),
            host(beta.grad(&grads).expect("dβ")),
        ]
    };
    let (want, got) = (run(false), run(true));
    for (name, (g, w)) in ["y", "dx", "dγ", "dβ"].iter().zip(got.iter().zip(&want)) {
        let worst = worst_relative(g, w);
        assert!(worst < 2e-5, "{name} off by {worst}");
    }
}

/// [y, dx, dW, db] of `loss = Σ y ⊙ w` for y = x·W + b, by the kernel or burn's `linear`.
fn linear_run<const D: usize>(shape: [usize; D], n: usize, fused: bool) -> [Vec<f32>; 4] {
    use crate::ops::cpu::linear::cpu_linear;
    let dev = Device::flex().autodiff();
    let k = shape[D - 1];
    let rows = shape.iter().product::<usize>() / k;
    let mut out_shape = shape;
    out_shape[D - 1] = n;
    let x = Tensor::<D>::from_data(TensorData::new(normals(5, 1, rows * k, 1.5), shape), &dev)
        .require_grad();
    let weight = Tensor::<2>::from_data(TensorData::new(normals(5, 2, k * n, 0.3), [k, n]), &dev)
        .require_grad();
    let bias =
        Tensor::<1>::from_data(TensorData::new(normals(5, 3, n, 1.0), [n]), &dev).require_grad();
    let w = Tensor::<D>::from_data(
        TensorData::new(normals(5, 4, rows * n, 1.0), out_shape),
        &dev,
    );
    let y = if fused {
        cpu_linear(x.clone(), weight.clone(), bias.clone())
    } else {
        burn::tensor::module::linear(x.clone(), weight.clone(), Some(bias.clone()))
    };
    let grads = (y.clone() * w).sum().backward();
    [
        host(y),
        host(x.grad(&grads).expect("dx")),
        host(weight.grad(&grads).expect("dW")),
        host(bias.grad(&grads).expect("db")),
    ]
}

/// Linear: the kernel against burn's `linear` (matmul and broadcast add under autodiff),
/// forward and the gradients of x, W and b; odd widths, rows past one parallel chunk of the
/// bias gradient, a single row, an input width of 1, and 2-, 3- and 4-D inputs.
#[test]
fn cpu_linear_matches_burn_forward_and_backward() {
    let cases = [
        (
            linear_run([3, 197, 37], 29, false),
            linear_run([3, 197, 37], 29, true),
        ),
        (
            linear_run([1, 1, 5], 3, false),
            linear_run([1, 1, 5], 3, true),
        ),
        (
            linear_run([2, 3, 5, 1], 64, false),
            linear_run([2, 3, 5, 1], 64, true),
        ),
        (
            linear_run([300, 130], 7, false),
            linear_run([300, 130], 7, true),
        ),
    ];
    for (case, (want, got)) in cases.iter().enumerate() {
        for (name, (g, w)) in ["y", "dx", "dW", "db"].iter().zip(got.iter().zip(want)) {
            let worst = worst_relative(g, w);
            // dW sums up to 600 products per element, in another order than burn.
            let tol = if *name == "dW" { 1e-4 } else { 2e-5 };
            assert!(worst < tol, "case {case}: {name} off by {worst}");
        }
    }
}

/// Self-attention from the packed projection: the kernel against the heads split out and sent
/// through the reference, forward and the gradient of qkv, causal or not, odd sizes.
#[test]
fn cpu_self_attention_matches_the_split_reference() {
    use crate::ops::cpu::self_attention::{SelfLaunch, cpu_self_attention};
    for (b, t, heads, d, causal) in [
        (2, 7, 3, 5, true),
        (3, 16, 4, 16, false),
        (1, 1, 2, 4, true),
    ] {
        let w = heads * d;
        let run = |fused: bool| {
            let dev = Device::flex().autodiff();
            let put =
                |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), &dev);
            let qkv = put(normals(7, 1, b * t * 3 * w, 1.0), [b, t, 3 * w]).require_grad();
            let wt = put(normals(7, 2, b * t * w, 1.0), [b, t, w]);
            let o = AttentionOptions {
                causal,
                scale: None,
                window: None,
                key_lengths: None,
            };
            let y = if fused {
                let launch = SelfLaunch {
                    heads,
                    causal,
                    scale: 1.0 / (d as f32).sqrt(),
                };
                cpu_self_attention(qkv.clone(), launch)
            } else {
                let split = |i: usize| {
                    qkv.clone()
                        .slice([0..b, 0..t, i * w..(i + 1) * w])
                        .reshape([b, t, heads, d])
                        .swap_dims(1, 2)
                };
                attention_reference(split(0), split(1), split(2), None, o)
                    .swap_dims(1, 2)
                    .reshape([b, t, w])
            };
            let grads = (y.clone() * wt).sum().backward();
            [host(y), host(qkv.grad(&grads).expect("dqkv"))]
        };
        let (want, got) = (run(false), run(true));
        for (name, (g, w)) in ["y", "dqkv"].iter().zip(got.iter().zip(&want)) {
            let worst = worst_relative(g, w);
            assert!(
                worst < 2e-5,
                "b{b} t{t} h{heads} d{d} causal {causal}: {name} off by {worst}"
            );
        }
    }
}

/// Conv2d: the kernel against burn's `conv2d` forward and the gradients of x, the weight and
/// the bias: 3 × 3 with stride 1 and 2 (odd sides, asymmetric padding from the stride), 1 × 1,
/// and batches that the kernel splits into chunks of images.
#[test]
fn cpu_conv2d_matches_burn_forward_and_backward() {
    use crate::ops::cpu::conv::{ConvLaunch, cpu_conv2d};
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    // (b, cin, cout, h, w, k, stride)
    for (b, cin, cout, h, w, k, s) in [
        (2, 3, 5, 7, 6, 3, 1),
        (3, 2, 4, 8, 8, 3, 2),
        (1, 4, 3, 5, 9, 1, 1),
        (2, 3, 2, 7, 5, 3, 2),
        // Batches that split into several chunks of images, the last one short.
        (9, 3, 4, 6, 5, 3, 1),
        (7, 2, 3, 5, 5, 3, 2),
    ] {
        let pad = k / 2;
        let out = [(h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1];
        let run = |fused: bool| {
            let dev = Device::flex().autodiff();
            let put =
                |v: Vec<f32>, sh: [usize; 4]| Tensor::<4>::from_data(TensorData::new(v, sh), &dev);
            let x = put(normals(4, 1, b * cin * h * w, 1.0), [b, cin, h, w]).require_grad();
            let wt = put(normals(4, 2, cout * cin * k * k, 0.5), [cout, cin, k, k]).require_grad();
            let bias =
                Tensor::<1>::from_data(TensorData::new(normals(4, 3, cout, 1.0), [cout]), &dev)
                    .require_grad();
            let g = put(
                normals(4, 4, b * cout * out[0] * out[1], 1.0),
                [b, cout, out[0], out[1]],
            );
            let y = if fused {
                let launch = ConvLaunch {
                    stride: [s, s],
                    pad: [pad, pad],
                    out,
                };
                cpu_conv2d(x.clone(), wt.clone(), bias.clone(), launch)
            } else {
                let o = ConvOptions::new([s, s], [pad, pad], [1, 1], 1);
                conv2d(x.clone(), wt.clone(), Some(bias.clone()), o)
            };
            let grads = (y.clone() * g).sum().backward();
            [
                host(y),
                host(x.grad(&grads).expect("dx")),
                host(wt.grad(&grads).expect("dw")),
                host(bias.grad(&grads).expect("db")),
            ]
        };
        let (want, got) = (run(false), run(true));
        for (name, (g, w)) in ["y", "dx", "dw", "db"].iter().zip(got.iter().zip(&want)) {
            assert_eq!(g.len(), w.len(), "{name}");
            let worst = worst_relative(g, w);
            assert!(
                worst < 3e-5,
                "k{k} s{s} {h}x{}: {name} off by {worst}",
                out[1]
            );
        }
    }
}

/// GroupNorm + SiLU: the kernel against the plain-burn reference (burn's GroupNorm arithmetic,
/// then `silu`), forward and the gradients of x, γ and β; odd sizes, several groups.
#[test]
fn cpu_group_norm_silu_matches_the_reference_forward_and_backward() {
    use crate::ops::cpu::group_norm::{NormLaunch, cpu_group_norm_silu};
    use crate::ops::group_norm::{GroupNormParams, group_norm_silu_reference};
    for (b, c, h, w, groups) in [(2, 6, 3, 5, 3), (3, 8, 4, 4, 8), (1, 4, 7, 1, 1)] {
        let run = |fused: bool| {
            let dev = Device::flex().autodiff();
            let x = Tensor::<4>::from_data(
                TensorData::new(normals(6, 1, b * c * h * w, 2.0), [b, c, h, w]),
                &dev,
            )
            .require_grad();
            let vec1 = |s: u32| {
                Tensor::<1>::from_data(TensorData::new(normals(6, s, c, 1.0), [c]), &dev)
                    .require_grad()
            };
            let (gamma, beta) = (vec1(2), vec1(3));
            let wt = Tensor::<4>::from_data(
                TensorData::new(normals(6, 4, b * c * h * w, 1.0), [b, c, h, w]),
                &dev,
            );
            let y = if fused {
                let launch = NormLaunch {
                    groups,
                    epsilon: 1e-5,
                };
                cpu_group_norm_silu(x.clone(), gamma.clone(), beta.clone(), launch)
            } else {
                let params = GroupNormParams {
                    gamma: Some(gamma.clone()),
                    beta: Some(beta.clone()),
                    groups,
                    epsilon: 1e-5,
                };
                group_norm_silu_reference(x.clone(), &params)
            };
            let grads = (y.clone() * wt).sum().backward();
            [
                host(y),
                host(x.grad(&grads).expect("dx")),
                host(gamma.grad(&grads).expect("dγ")),
                host(beta.grad(&grads).expect("dβ")),
            ]
        };
        let (want, got) = (run(false), run(true));
        for (name, (g, v)) in ["y", "dx", "dγ", "dβ"].iter().zip(got.iter().zip(&want)) {
            let worst = worst_relative(g, v);
            assert!(
                worst < 5e-5,
                "{b}×{c}×{h}×{w}/{groups}: {name} off by {worst}"
            );
        }
    }
}

/// `with_path` forces a path on this thread only and restores the previous one afterwards.
#[test]
fn with_path_is_scoped_to_the_thread() {
    use crate::ops::{OpPath, path, with_path};
    let outer = path();
    with_path(OpPath::Reference, || {
        assert_eq!(path(), OpPath::Reference);
        let other = std::thread::spawn(path).join().unwrap();
        assert_eq!(other, outer, "another thread keeps the global path");
        with_path(OpPath::Fused, || assert_eq!(path(), OpPath::Fused));
        assert_eq!(path(), OpPath::Reference);
    });
    assert_eq!(path(), outer);
}
