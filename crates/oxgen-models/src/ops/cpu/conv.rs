//! 2D convolution for burn's Flex (CPU) backend: im2col and one GEMM per chunk of images,
//! forward and backward, chunks in parallel. burn's Flex runs small-image convolutions through a general
//! 3D path whose backward (a transposed convolution) is a scalar loop; for the UNet's 8 × 8
//! digits that was most of a training step.
//!
//! Per chunk of k images, with col the `[cin·kh·kw, k·ho·wo]` patch matrix (zero padding):
//! y = W·col + b; dW += dy·colᵀ; db += Σ dy; dcol = Wᵀ·dy, scattered back (col2im) into dx.
//! Each image is first copied into a zero-padded buffer, so that a window row has no edge
//! cases. With stride 1 the patch matrix is laid out on the padded grid's width (a few spare
//! columns per output row, dropped afterwards), which makes each patch row one long copy from
//! the padded image: the digits' rows are 8 pixels, and copying them 8 at a time cost more
//! than the GEMM.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;
use std::cell::RefCell;

use super::flex::{contiguous, dims, f32s, tensor};

use super::gemm::{Mat, matmul};
use super::simd::vectorized;

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
    fn image(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// Height and width of the zero-padded image the kernel reads: the rows and columns the
    /// windows cover (padding on both sides, the bottom and right from the output size).
    fn padded(&self) -> (usize, usize) {
        let [ho, wo] = self.launch.out;
        let [sy, sx] = self.launch.stride;
        ((ho - 1) * sy + self.kh, (wo - 1) * sx + self.kw)
    }

    /// Stride 1: the patch matrix holds outputs on the padded grid's width, `wp` columns per
    /// output row of which the last `wp − wo` are never used. A window row is then one run of
    /// `ho·wp` pixels of the padded image instead of `ho` runs of `wo`.
    fn wide(&self) -> bool {
        self.launch.stride == [1, 1]
    }

    /// Distance between output rows in a patch-matrix row: `wp` when [`Self::wide`], else `wo`.
    fn pitch(&self) -> usize {
        if self.wide() {
            self.padded().1
        } else {
            self.launch.out[1]
        }
    }

    /// Patch-matrix columns per image.
    fn columns(&self) -> usize {
        self.launch.out[0] * self.pitch()
    }

    /// Floats of the padded buffer: the image, and room for the last wide run to overrun.
    fn padded_len(&self) -> usize {
        let (hp, wp) = self.padded();
        self.cin * hp * wp + self.kw
    }

    /// Calls `f(r, offset)` for every row r of the patch matrix: its window rows read the padded
    /// image from `offset`, `offset + stride[0]·wp`, … (`wo` pixels each, `stride[1]` apart).
    #[inline(always)]
    fn for_each_row(&self, mut f: impl FnMut(usize, usize)) {
        let (hp, wp) = self.padded();
        for c in 0..self.cin {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    f((c * self.kh + ky) * self.kw + kx, (c * hp + ky) * wp + kx);
                }
            }
        }
    }

    /// Images per GEMM: enough to make the products wide, few enough that every core gets
    /// several chunks and a chunk's patch matrix stays in cache.
    fn chunk(&self, b: usize) -> usize {
        let by_cache = (COL_BUDGET / (self.patch() * self.columns()).max(1)).max(1);
        let by_threads = b.div_ceil(2 * rayon::current_num_threads()).max(1);
        by_cache.min(by_threads)
    }

    /// Copies image `x` into `padded` (length [`Self::padded_len`], zero outside the image).
    fn pad(&self, x: &[f32], padded: &mut Vec<f32>) {
        padded.clear();
        padded.resize(self.padded_len(), 0.0);
        self.for_each_image_row(|from, at, len| {
            padded[at..at + len].copy_from_slice(&x[from..from + len])
        });
    }

    /// Calls `f(image_offset, padded_offset, len)` for each image row the windows reach.
    fn for_each_image_row(&self, mut f: impl FnMut(usize, usize, usize)) {
        let ((hp, wp), [py, px]) = (self.padded(), self.launch.pad);
        let rows = self.h.min(hp.saturating_sub(py));
        let cols = self.w.min(wp.saturating_sub(px));
        for c in 0..self.cin {
            for y in 0..rows {
                f((c * self.h + y) * self.w, (c * hp + y + py) * wp + px, cols);
            }
        }
    }
}

/// Floats of patch matrix one chunk of images may fill (1 MiB).
const COL_BUDGET: usize = 1 << 18;

/// Image j's windows, from its padded copy into columns j·m.. of the patch matrix (rows kn
/// long, m = [`Geometry::columns`]).
#[inline(always)]
fn spread(g: &Geometry, padded: &[f32], col: &mut [f32], j: usize, kn: usize) {
    let (m, wo, sx) = (g.columns(), g.launch.out[1], g.launch.stride[1]);
    let step = g.launch.stride[0] * g.padded().1;
    let wide = g.wide();
    g.for_each_row(|r, from| {
        let dst = &mut col[r * kn + j * m..][..m];
        if wide {
            dst.copy_from_slice(&padded[from..from + m]);
        } else {
            for (oy, dst) in dst.chunks_exact_mut(wo).enumerate() {
                for (d, s) in dst
                    .iter_mut()
                    .zip(padded[from + oy * step..].iter().step_by(sx))
                {
                    *d = *s;
                }
            }
        }
    })
}

/// The reverse of [`spread`]: image j's patch gradients added into its padded copy.
#[inline(always)]
fn gather(g: &Geometry, col: &[f32], padded: &mut [f32], j: usize, kn: usize) {
    let (m, wo, sx) = (g.columns(), g.launch.out[1], g.launch.stride[1]);
    let step = g.launch.stride[0] * g.padded().1;
    let wide = g.wide();
    g.for_each_row(|r, to| {
        let src = &col[r * kn + j * m..][..m];
        if wide {
            for (d, s) in padded[to..to + m].iter_mut().zip(src) {
                *d += s;
            }
        } else {
            for (oy, src) in src.chunks_exact(wo).enumerate() {
                for (d, s) in padded[to + oy * step..].iter_mut().step_by(sx).zip(src) {
                    *d += s;
                }
            }
        }
    })
}

/// Per-thread buffers: one zero-padded image, the patch matrix of a chunk, and a
/// `[cout, chunk·columns]` product. They live as long as the thread (rayon's workers live as
/// long as the process), so a step does not allocate and zero a fresh megabyte per chunk.
#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    col: Vec<f32>,
    out: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are in use).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

impl Scratch {
    /// col `[patch, k·m]` of the k images in `xs` (image j in columns j·m..(j + 1)·m).
    fn im2col(&mut self, g: &Geometry, xs: &[f32]) {
        let k = xs.len() / g.image();
        let kn = k * g.columns();
        self.col.resize(g.patch() * kn, 0.0);
        for (j, x) in xs.chunks(g.image()).enumerate() {
            g.pad(x, &mut self.padded);
            let (col, padded) = (&mut self.col, &self.padded);
            vectorized(|| spread(g, padded, col, j, kn));
        }
    }

    /// dx of the k images = the patch gradients in `self.col`, each added where its pixel came
    /// from.
    fn col2im(&mut self, g: &Geometry, dxs: &mut [f32]) {
        let k = dxs.len() / g.image();
        let kn = k * g.columns();
        for (j, dx) in dxs.chunks_mut(g.image()).enumerate() {
            self.padded.clear();
            self.padded.resize(g.padded_len(), 0.0);
            let (col, padded) = (&self.col, &mut self.padded);
            vectorized(|| gather(g, col, padded, j, kn));
            dx.fill(0.0);
            g.for_each_image_row(|to, at, len| {
                dx[to..to + len].copy_from_slice(&self.padded[at..at + len])
            });
        }
    }

    /// `self.out` `[cout, k·m]` → `ys` `[k, cout, ho, wo]`, plus the bias (the wide layout's
    /// spare columns dropped).
    fn unfold_output(&self, g: &Geometry, ys: &mut [f32], bias: &[f32]) {
        let ([ho, wo], m, pitch) = (g.launch.out, g.columns(), g.pitch());
        let kn = self.out.len() / g.cout;
        for (j, yj) in ys.chunks_mut(g.cout * ho * wo).enumerate() {
            for ((plane, out), &b) in yj.chunks_mut(ho * wo).zip(self.out.chunks(kn)).zip(bias) {
                let out = &out[j * m..(j + 1) * m];
                for (row, src) in plane.chunks_mut(wo).zip(out.chunks(pitch)) {
                    for (v, o) in row.iter_mut().zip(src) {
                        *v = o + b;
                    }
                }
            }
        }
    }

    /// `dys` `[k, cout, ho, wo]` → `self.out` `[cout, k·m]` (the spare columns zero).
    fn fold_gradient(&mut self, g: &Geometry, dys: &[f32]) {
        let ([ho, wo], m, pitch) = (g.launch.out, g.columns(), g.pitch());
        let k = dys.len() / (g.cout * ho * wo);
        let kn = k * m;
        self.out.clear();
        self.out.resize(g.cout * kn, 0.0);
        for (j, dyj) in dys.chunks(g.cout * ho * wo).enumerate() {
            for (out, plane) in self.out.chunks_mut(kn).zip(dyj.chunks(ho * wo)) {
                let out = &mut out[j * m..(j + 1) * m];
                for (dst, row) in out.chunks_mut(pitch).zip(plane.chunks(wo)) {
                    dst[..wo].copy_from_slice(row);
                }
            }
        }
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
        let [ho, wo] = launch.out;
        let (patch, n, image, k) = (g.patch(), ho * wo, g.image(), g.chunk(b));
        let mut y = vec![0.0f32; b * g.cout * n];
        y.par_chunks_mut(k * g.cout * n)
            .zip(xs.par_chunks(k * image))
            .for_each(|(ys, xs)| {
                with_scratch(|s| {
                    s.im2col(&g, xs);
                    let kn = s.col.len() / patch;
                    s.out.resize(g.cout * kn, 0.0);
                    let (w, col) = (Mat::new(ws, g.cout, patch), Mat::new(&s.col, patch, kn));
                    matmul(&mut s.out, w, col, false);
                    s.unfold_output(&g, ys, bs);
                })
            });
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
        let [ho, wo] = launch.out;
        let (patch, n, image, k) = (g.patch(), ho * wo, g.image(), g.chunk(b));
        let mut dx = vec![0.0f32; b * image];
        // Each worker sums its chunks' dW and db; the partials are added at the end.
        let zero = || (vec![0.0f32; g.cout * patch], vec![0.0f32; g.cout]);
        let (dw, db) = dx
            .par_chunks_mut(k * image)
            .zip(xs.par_chunks(k * image))
            .zip(gs.par_chunks(k * g.cout * n))
            .fold(zero, |(mut dw, mut db), ((dxs, xs), dys)| {
                with_scratch(|s| {
                    s.im2col(&g, xs);
                    s.fold_gradient(&g, dys);
                    let kn = s.col.len() / patch;
                    for (acc, row) in db.iter_mut().zip(s.out.chunks(kn)) {
                        *acc += row.iter().sum::<f32>();
                    }
                    // The spare columns of dy are zero, so they add nothing to dW or dcol.
                    let dyc = Mat::new(&s.out, g.cout, kn);
                    matmul(&mut dw, dyc, Mat::new(&s.col, patch, kn).t(), true);
                    // The patch matrix is spent: dcol = Wᵀ·dy takes its place.
                    matmul(&mut s.col, Mat::new(ws, g.cout, patch).t(), dyc, false);
                    s.col2im(&g, dxs);
                });
                (dw, db)
            })
            .reduce(zero, |(mut a, mut b), (c, d)| {
                a.iter_mut().zip(c).for_each(|(x, y)| *x += y);
                b.iter_mut().zip(d).for_each(|(x, y)| *x += y);
                (a, b)
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
