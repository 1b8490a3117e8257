//! Flows invert exactly, and their log-determinant is the Jacobian's.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::*;

/// Adds N(0, σ²) to every parameter, so that no layer is the identity it starts as.
struct Jitter(f64, bool);

impl ModuleMapper for Jitter {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (std, self_ad) = (self.0, self.1);
        p.map(|t| {
            let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, std), &t.device());
            let t = (t + noise).detach();
            if self_ad { t.require_grad() } else { t }
        })
    }
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn random(rows: usize, cols: usize, seed: u64, device: &Device) -> Tensor<2> {
    crate::generative::host_normals(rows, cols, seed, device)
}

fn spline() -> CouplingKind {
    CouplingKind::Spline {
        bins: 6,
        bound: 3.0,
    }
}

fn configs() -> Vec<(FlowConfig, DataShape)> {
    let vec = |dim| DataShape::Vector { dim };
    let img = DataShape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    let small = FlowConfig::new().with_steps(3).with_hidden(16);
    vec![
        (small.clone(), vec(2)),
        (small.clone().with_coupling(spline()), vec(2)),
        (small.clone().with_coupling(spline()), vec(5)),
        (small.clone().with_invconv(false), vec(3)),
        (small.clone(), img),
        (small.clone().with_coupling(spline()).with_scales(3), img),
    ]
}

#[test]
fn flows_invert_to_1e4() {
    let device = Device::flex();
    device.seed(3);
    for (i, (config, shape)) in configs().into_iter().enumerate() {
        let flow = config.init(shape, &device);
        let x = random(64, shape.numel(), i as u64, &device).mul_scalar(1.5);
        let flow = flow.data_init(x.clone()).map(&mut Jitter(0.1, false));
        let (z, _) = flow.forward(x.clone());
        let back = host(flow.inverse(z.clone()));
        let want = host(x);
        let err = back
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            err < 1e-4,
            "config {i} ({shape:?}): max |f⁻¹(f(x)) − x| = {err}"
        );
        // And the other way round: f(f⁻¹(z)) = z.
        let z2 = host(flow.forward(flow.inverse(z.clone())).0);
        let err = z2
            .iter()
            .zip(host(z))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "config {i}: max |f(f⁻¹(z)) − z| = {err}");
    }
}

/// log |det J| of a row-major `n × n` matrix, by LU with partial pivoting in f64.
fn log_abs_det(mut m: Vec<f64>, n: usize) -> f64 {
    let mut total = 0.0;
    for col in 0..n {
        let p = (col..n)
            .max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))
            .unwrap();
        for k in 0..n {
            m.swap(col * n + k, p * n + k);
        }
        let d = m[col * n + col];
        total += d.abs().ln();
        for row in col + 1..n {
            let f = m[row * n + col] / d;
            for k in col..n {
                m[row * n + k] -= f * m[col * n + k];
            }
        }
    }
    total
}

#[test]
fn log_determinant_matches_the_brute_force_jacobian() {
    let device = Device::flex().autodiff();
    device.seed(4);
    let img = DataShape::Image {
        channels: 1,
        height: 4,
        width: 4,
    };
    let small = FlowConfig::new().with_steps(2).with_hidden(8);
    for (config, shape) in [
        (small.clone(), DataShape::Vector { dim: 3 }),
        (
            small.clone().with_coupling(spline()),
            DataShape::Vector { dim: 4 },
        ),
        (small.clone().with_coupling(spline()), img),
    ] {
        let d = shape.numel();
        let batch = 3;
        let flow = config.init(shape, &device);
        let x0 = random(batch, d, 9, &device);
        let flow = flow.data_init(x0.clone()).map(&mut Jitter(0.3, true));
        let (_, ld) = flow.forward(x0.clone());
        let ld: Vec<f32> = ld.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        // Row j of every sample's Jacobian: the gradient of Σ_b z[b, j] (samples are independent).
        let mut jac = vec![vec![0f64; d * d]; batch];
        for j in 0..d {
            let x = x0.clone().detach().require_grad();
            let (z, _) = flow.forward(x.clone());
            let grads = z.slice([0..batch, j..j + 1]).sum().backward();
            let g = host(x.grad(&grads).unwrap());
            for b in 0..batch {
                for i in 0..d {
                    jac[b][j * d + i] = g[b * d + i] as f64;
                }
            }
        }
        for b in 0..batch {
            let want = log_abs_det(jac[b].clone(), d);
            assert!(
                (ld[b] as f64 - want).abs() < 2e-3 * (1.0 + want.abs()),
                "{shape:?} row {b}: log-det {} vs brute force {want}",
                ld[b]
            );
        }
    }
}

#[test]
fn spline_starts_as_identity_and_is_monotone() {
    let device = Device::flex();
    let n = 200;
    let xs: Vec<f32> = (0..n)
        .map(|i| -4.0 + 8.0 * i as f32 / (n - 1) as f32)
        .collect();
    let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device);
    let kind = CouplingKind::Spline {
        bins: 5,
        bound: 3.0,
    };
    let zero = Tensor::<2>::zeros([n, kind.params()], &device);
    let (y, ld) = coupling::elementwise(kind, x.clone(), zero, false);
    let y: Vec<f32> = y.into_data().try_to_vec::<f32>().unwrap();
    let ld: Vec<f32> = ld.into_data().try_to_vec::<f32>().unwrap();
    for i in 0..n {
        assert!((y[i] - xs[i]).abs() < 1e-5 && ld[i].abs() < 1e-5);
    }
    // Random parameters: strictly increasing, continuous at the bounds, tails untouched.
    let p = random(1, kind.params(), 8, &device)
        .mul_scalar(1.5)
        .expand([n, kind.params()]);
    let (y, _) = coupling::elementwise(kind, x, p, false);
    let y: Vec<f32> = y.into_data().try_to_vec::<f32>().unwrap();
    assert!(y.windows(2).all(|w| w[1] > w[0]), "not monotone: {y:?}");
    assert_eq!(y[0], -4.0);
    assert_eq!(y[n - 1], 4.0);
}

#[test]
fn spline_inverts_elementwise() {
    let device = Device::flex();
    let n = 400;
    let kind = CouplingKind::Spline {
        bins: 6,
        bound: 3.0,
    };
    let x = random(n, 1, 5, &device).mul_scalar(2.0).reshape([n]);
    let p = random(n, kind.params(), 6, &device);
    let (y, ld) = coupling::elementwise(kind, x.clone(), p.clone(), false);
    let (back, ldi) = coupling::elementwise(kind, y.clone(), p, true);
    let xs: Vec<f32> = x.into_data().try_to_vec::<f32>().unwrap();
    let ys: Vec<f32> = y.into_data().try_to_vec::<f32>().unwrap();
    let bs: Vec<f32> = back.into_data().try_to_vec::<f32>().unwrap();
    let l1: Vec<f32> = ld.into_data().try_to_vec::<f32>().unwrap();
    let l2: Vec<f32> = ldi.into_data().try_to_vec::<f32>().unwrap();
    // Where the spline is nearly flat (dy/dx down to ~1e-4) the inverse amplifies f32 rounding
    // of y by dx/dy, so the error is measured in y-space: |x − f⁻¹(f(x))| · dy/dx.
    for i in 0..n {
        let slope = (l1[i] as f64).exp().min(1.0);
        assert!(
            ((xs[i] - bs[i]).abs() as f64) * slope < 1e-5 && (l1[i] + l2[i]).abs() < 1e-3,
            "x {} -> y {} -> x {} (log-dets {} {})",
            xs[i],
            ys[i],
            bs[i],
            l1[i],
            l2[i]
        );
    }
}
