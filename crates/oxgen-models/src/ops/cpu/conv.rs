//! 2D convolution for burn's Flex (CPU) backend: im2col and one GEMM per image, forward and
//! backward, images in parallel. burn's Flex runs small-image convolutions through a general
//! 3D path whose backward (a transposed convolution) is a scalar loop; for the UNet's 8 × 8
//! digits that was most of a training step.
//!
//! Per image, with col the `[cin·kh·kw, ho·wo]` patch matrix (zero padding):
//! y = W·col + b; dW += dy·colᵀ; db += Σ dy; dcol = Wᵀ·dy, scattered back (col2im) into dx.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::flex::{contiguous, dims, f32s, tensor};

use super::gemm::{Mat, matmul};

/// Geometry of one call (square strides and kernels not required).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvLaunch {
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Padding before the first row and column (the rest follows from the output size).
    pub pad: [usize; 2],
    /// Output height and width.
    pub out: [usize; 2],
}

/// The kernel as a burn backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait CpuConvOps: Backend {
    /// y `[b, cout, ho, wo]` from x `[b, cin, h, w]`, weight `[cout, cin, kh, kw]`, bias `[cout]`.
    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        launch: ConvLaunch,
    ) -> FloatTensor<Self>;

    /// (dx, dweight, dbias).
    fn cpu_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: ConvLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Sizes: batch, in channels, h, w, out channels, kh, kw.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    launch: ConvLaunch,
}

impl Geometry {
    fn patch(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    fn positions(&self) -> usize {
        self.launch.out[0] * self.launch.out[1]
    }

    /// Calls `f(col_start, image_start, len)` for every run of patch entries that read pixels
    /// inside the image: entry `col_start + i` reads pixel `image_start + i · stride[1]`, for
    /// i < len (the entries outside every run are the zero padding).
    #[inline(always)]
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [ho, wo] = self.launch.out;
        let [sy, sx] = self.launch.stride;
        let [py, px] = self.launch.pad;
        let n = ho * wo;
        for kx in 0..self.kw {
            // Output columns whose input column ox · sx + kx − px lies in 0..w.
            let lo = px.saturating_sub(kx).div_ceil(sx);
            let hi = if self.w + px > kx {
                ((self.w - 1 + px - kx) / sx + 1).min(wo)
            } else {
                0
            };
            if lo >= hi {
                continue;
            }
            for c in 0..self.cin {
                for ky in 0..self.kh {
                    let row = ((c * self.kh + ky) * self.kw + kx) * n;
                    for oy in 0..ho {
                        let y = oy * sy + ky;
                        if y < py || y - py >= self.h {
                            continue;
                        }
                        let start = (c * self.h + y - py) * self.w + lo * sx + kx - px;
                        f(row + oy * wo + lo, start, hi - lo);
                    }
                }
            }
        }
    }

    /// col `[patch, positions]` of one image.
    fn im2col(&self, image: &[f32], col: &mut [f32]) {
        col.fill(0.0);
        let sx = self.launch.stride[1];
        self.for_each_run(|c, i, len| {
            let dst = &mut col[c..c + len];
            if sx == 1 {
                dst.copy_from_slice(&image[i..i + len]);
            } else {
                for (d, s) in dst.iter_mut().zip(image[i..].iter().step_by(sx)) {
                    *d = *s;
                }
            }
        });
    }

    /// dx of one image += the patch gradients, each added where its pixel came from.
    fn col2im(&self, dcol: &[f32], dx: &mut [f32]) {
        let sx = self.launch.stride[1];
        self.for_each_run(|c, i, len| {
            let src = &dcol[c..c + len];
            if sx == 1 {
                dx[i..i + len]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, s)| *d += s);
            } else {
                for (d, s) in dx[i..].iter_mut().step_by(sx).zip(src) {
                    *d += s;
                }
            }
        });
    }
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, launch: ConvLaunch) -> (usize, Geometry) {
    let (xd, wd) = (dims(x), dims(weight));
    let g = Geometry {
        cin: xd[1],
        h: xd[2],
        w: xd[3],
        cout: wd[0],
        kh: wd[2],
        kw: wd[3],
        launch,
    };
    (xd[0], g)
}

impl CpuConvOps for Flex {
    fn cpu_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        launch: ConvLaunch,
    ) -> FlexTensor {
        let [x, weight, bias] = [x, weight, bias].map(contiguous);
        let (b, g) = geometry(&x, &weight, launch);
        let (xs, ws, bs) = (f32s(&x), f32s(&weight), f32s(&bias));
        let (patch, n) = (g.patch(), g.positions());
        let mut y = vec![0.0f32; b * g.cout * n];
        y.par_chunks_mut(g.cout * n)
            .zip(xs.par_chunks(g.cin * g.h * g.w))
            .for_each_init(Vec::new, |col, (yi, xi)| {
                col.resize(patch * n, 0.0);
                g.im2col(xi, col);
                matmul(
                    yi,
                    Mat::new(ws, g.cout, patch),
                    Mat::new(col, patch, n),
                    false,
                );
                for (row, &bias) in yi.chunks_mut(n).zip(bs) {
                    row.iter_mut().for_each(|v| *v += bias);
                }
            });
        let [ho, wo] = launch.out;
        tensor(y, [b, g.cout, ho, wo])
    }

    fn cpu_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        dy: FlexTensor,
        launch: ConvLaunch,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, weight, dy] = [x, weight, dy].map(contiguous);
        let (b, g) = geometry(&x, &weight, launch);
        let (xs, ws, gs) = (f32s(&x), f32s(&weight), f32s(&dy));
        let (patch, n, image) = (g.patch(), g.positions(), g.cin * g.h * g.w);
        let mut dx = vec![0.0f32; b * image];
        // Each worker sums its images' dW and db; the partials are added at the end.
        let zero = || {
            (
                vec![0.0f32; g.cout * patch],
                vec![0.0f32; g.cout],
                Vec::new(),
            )
        };
        let (dw, db, _) = dx
            .par_chunks_mut(image)
            .zip(xs.par_chunks(image))
            .zip(gs.par_chunks(g.cout * n))
            .fold(zero, |(mut dw, mut db, mut col), ((dxi, xi), dyi)| {
                col.resize(2 * patch * n, 0.0);
                let (c, dcol) = col.split_at_mut(patch * n);
                g.im2col(xi, c);
                let dyi_m = Mat::new(dyi, g.cout, n);
                matmul(&mut dw, dyi_m, Mat::new(c, patch, n).t(), true);
                for (acc, row) in db.iter_mut().zip(dyi.chunks(n)) {
                    *acc += row.iter().sum::<f32>();
                }
                matmul(dcol, Mat::new(ws, g.cout, patch).t(), dyi_m, false);
                g.col2im(dcol, dxi);
                (dw, db, col)
            })
            .map(|(dw, db, _)| (dw, db, Vec::new()))
            .reduce(zero, |(mut a, mut b, _), (c, d, _)| {
                a.iter_mut().zip(c).for_each(|(x, y)| *x += y);
                b.iter_mut().zip(d).for_each(|(x, y)| *x += y);
                (a, b, Vec::new())
            });
        (
            tensor(dx, dims(&x)),
            tensor(dw, dims(&weight)),
            tensor(db, [g.cout]),
        )
    }
}

impl<B: CpuConvOps, C: CheckpointStrategy> CpuConvOps for Autodiff<B, C> {
    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        launch: ConvLaunch,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvBackward;

        impl<B: CpuConvOps> Backward<B, 3> for ConvBackward {
            type State = (NodeId, NodeId, ConvLaunch);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_w, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_id, w_id, launch) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
                let w: FloatTensor<B> = checkpointer.retrieve_node_output(w_id);
                let (dx, dw, db) = B::cpu_conv2d_backward(x, w, dy, launch);
                for (node, grad) in [(node_x, dx), (node_w, dw), (node_b, db)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match ConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let w_id = prep.checkpoint(&weight);
                let y = B::cpu_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    launch,
                );
                prep.finish((x_id, w_id, launch), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                launch,
            )),
        }
    }

    fn cpu_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        launch: ConvLaunch,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not itself differentiable: the results are constants.
        let (dx, dw, db) = B::cpu_conv2d_backward(
            x.into_primitive(),
            weight.into_primitive(),
            dy.into_primitive(),
            launch,
        );
        let lift = <Autodiff<B, C> as AutodiffBackend>::from_inner;
        (lift(dx), lift(dw), lift(db))
    }
}

/// Runs the kernel on Dispatch tensors.
///
/// # Shapes
/// - `x`: `[b, cin, h, w]`; `weight`: `[cout, cin, kh, kw]`; `bias`: `[cout]`; returns
///   `[b, cout, launch.out[0], launch.out[1]]`.
pub fn cpu_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    launch: ConvLaunch,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuConvOps>::cpu_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        launch,
    ))
}
