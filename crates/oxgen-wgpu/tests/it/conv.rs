//! The WGSL 2D convolution, forward and its three gradients, against burn's `Conv2d` module (and
//! burn's autodiff of it) on the CPU, on wgpu (lavapipe in CI).

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::ops::conv::{self, conv2d, conv2d_reference};
use oxgen_models::ops::stats;

use crate::gpu;

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// One convolution's geometry: input `[b, cin, h, w]`, output channels, kernel, stride and
/// explicit padding (top, left, bottom, right).
#[derive(Clone, Copy, Debug)]
struct Case {
    input: [usize; 4],
    cout: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: (usize, usize, usize, usize),
}

const fn case(
    input: [usize; 4],
    cout: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: (usize, usize, usize, usize),
) -> Case {
    Case {
        input,
        cout,
        kernel,
        stride,
        pad,
    }
}

/// The UNet's convolutions (8 × 8 digits: conv_in, 3 × 3 at 8 × 8 and 4 × 4, the stride-2
/// down, the 1 × 1 skips, conv_out), and odd ones: channel counts that are not multiples of 4,
/// a 5 × 5 window, a rectangular window and stride, asymmetric padding, no padding, a batch of
/// one.
const CASES: [Case; 10] = [
    case([2, 1, 8, 8], 32, [3, 3], [1, 1], (1, 1, 1, 1)),
    case([2, 32, 8, 8], 32, [3, 3], [1, 1], (1, 1, 1, 1)),
    case([3, 32, 8, 8], 32, [3, 3], [2, 2], (1, 1, 1, 1)),
    case([2, 96, 4, 4], 64, [1, 1], [1, 1], (0, 0, 0, 0)),
    case([2, 32, 8, 8], 1, [3, 3], [1, 1], (1, 1, 1, 1)),
    case([3, 5, 7, 9], 6, [3, 3], [2, 2], (1, 1, 1, 1)),
    case([2, 3, 11, 10], 9, [5, 5], [1, 1], (2, 1, 0, 2)),
    case([1, 4, 9, 6], 13, [2, 3], [2, 1], (0, 1, 1, 1)),
    case([2, 7, 6, 5], 5, [3, 3], [1, 1], (0, 0, 0, 0)),
    case([1, 2, 3, 3], 3, [3, 3], [3, 3], (1, 1, 1, 1)),
];

/// The convolution of `c` with deterministic weights and bias, on `device`.
fn module(c: &Case, device: &Device) -> Conv2d {
    let (t, l, b, r) = c.pad;
    let conv = Conv2dConfig::new([c.input[1], c.cout], c.kernel)
        .with_stride(c.stride)
        .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
        .init(device);
    let [cout, cin, kh, kw] = conv.weight.dims();
    let n = cout * cin * kh * kw;
    let w = oxgen_models::rng::normals(3, n as u32, n);
    let bias = oxgen_models::rng::normals(4, cout as u32, cout);
    Conv2d {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [cout, cin, kh, kw]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [cout]),
            device,
        ))),
        ..conv
    }
}

fn input(c: &Case, device: &Device) -> Tensor<4> {
    let n: usize = c.input.iter().product();
    let x = oxgen_models::rng::normals(5, n as u32, n);
    Tensor::from_data(TensorData::new(x, c.input), device)
}

/// `|got − want| ≤ tol · (max |want| + |want|)` elementwise: sums over many products, compared
/// relative to the result's scale.
fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() && (g - w).abs() <= tol * (scale + w.abs()),
            "{what}[{i}]: fused {g}, reference {w}"
        );
    }
}

/// The forward against burn's module on the CPU, every case.
#[test]
fn forward_matches_reference() {
    let gpu = gpu();
    let cpu = Device::flex();
    for c in CASES {
        let want = host(conv2d_reference(input(&c, &cpu), &module(&c, &cpu)));
        let (got, report) = stats::scope(|| conv2d(input(&c, &gpu), &module(&c, &gpu)));
        assert_eq!(
            report.op(conv::OP).kernels.get("wgsl-conv2d"),
            Some(&1),
            "{c:?}"
        );
        assert_close(&host(got), &want, 1e-5, &format!("{c:?}: y"));
    }
}

/// More output pixel blocks than one grid dimension holds (65,535 workgroups of 64): the grid
/// goes 2D.
#[test]
fn forward_past_the_dispatch_limit() {
    let gpu = gpu();
    let cpu = Device::flex();
    let c = case([1, 1, 2050, 2050], 2, [3, 3], [1, 1], (1, 1, 1, 1));
    assert!(2050 * 2050 / 64 > 65_535);
    let want = host(conv2d_reference(input(&c, &cpu), &module(&c, &cpu)));
    let got = host(conv2d(input(&c, &gpu), &module(&c, &gpu)));
    assert_close(&got, &want, 1e-5, "y");
}

/// (dx, dW, db) of sum(y ∘ r) for a fixed r, y = the convolution of `c` on `device`: the kernel
/// through the op (`fused`) or burn's module, through autodiff.
fn gradients(c: &Case, device: &Device, fused: bool) -> [Vec<f32>; 3] {
    let ad = device.clone().autodiff();
    let conv = module(c, &ad);
    let conv = Conv2d {
        weight: conv.weight.map(|w| w.require_grad()),
        bias: conv.bias.map(|b| b.map(|b| b.require_grad())),
        ..conv
    };
    let x = input(c, &ad).require_grad();
    let y = if fused {
        let y = conv2d(x.clone(), &conv);
        assert_eq!(conv::last_path(), Some("wgsl-conv2d"), "{c:?}");
        y
    } else {
        conv2d_reference(x.clone(), &conv)
    };
    let dims = y.dims();
    let n: usize = dims.iter().product();
    let r = Tensor::<4>::from_data(
        TensorData::new(oxgen_models::rng::normals(6, n as u32, n), dims),
        &ad,
    );
    let grads = (y * r).sum().backward();
    let bias = conv.bias.as_ref().expect("a bias");
    [
        host(x.grad(&grads).expect("dx")),
        host(conv.weight.val().grad(&grads).expect("dW")),
        host(bias.val().grad(&grads).expect("db")),
    ]
}

/// The input, weight and bias gradients against burn's autodiff on the CPU, every case.
#[test]
fn gradients_match_reference() {
    let gpu = gpu();
    let cpu = Device::flex();
    for c in CASES {
        let want = gradients(&c, &cpu, false);
        let got = gradients(&c, &gpu, true);
        for (k, name) in ["dx", "dW", "db"].iter().enumerate() {
            assert_close(&got[k], &want[k], 1e-4, &format!("{c:?}: {name}"));
        }
    }
}

/// Which implementation each device and convolution takes, and what the counters say.
#[test]
fn path_selection() {
    let gpu = gpu();
    let c = CASES[1];
    // The CPU takes its own kernel.
    let cpu = Device::flex();
    let (_, report) = stats::scope(|| conv2d(input(&c, &cpu), &module(&c, &cpu)));
    assert_eq!(conv::last_path(), Some("cpu-conv2d"));
    assert_eq!(report.op(conv::OP).kernels.get("cpu-conv2d"), Some(&1));
    // A grouped convolution declines: burn's module, counted with its reason.
    let grouped = Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).init(&*gpu);
    let (_, report) = stats::scope(|| conv2d(Tensor::zeros([1, 4, 5, 5], &*gpu), &grouped));
    assert_eq!(conv::last_path(), Some("reference"));
    assert_eq!(report.reference_calls(conv::OP), 1);
    // A forced reference path.
    let (_, report) = stats::scope(|| {
        oxgen_models::ops::with_path(oxgen_models::ops::OpPath::Reference, || {
            conv2d(input(&c, &gpu), &module(&c, &gpu))
        })
    });
    assert_eq!(conv::last_path(), Some("reference"));
    assert_eq!(report.reference_calls(conv::OP), 1);
}
