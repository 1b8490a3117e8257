//! Normalizing flows: an invertible map f from data to a standard normal, so that
//! log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x| exactly (Dinh et al., RealNVP, 2017;
//! Kingma & Dhariwal, Glow, 2018; Durkan et al., Neural Spline Flows, 2019).
//!
//! A step is ActNorm → invertible 1×1 convolution → coupling. Vectors run all steps at one
//! scale (a "pixel" of `dim` channels). Images are multiscale, as in Glow: each scale squeezes
//! 2×2 pixels into channels, runs its steps, and factors half of the channels out to the prior.
//!
//! Discrete pixels are uniformly dequantized ([`Flow::dequantized_nll`]); the result bounds the
//! discrete likelihood and is reported as such.

pub mod coupling;
pub mod layers;

use crate::settings::settings;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::DataShape;
use crate::generative::{
    Bound, Capabilities, ExactDensity, Generative, Likelihood, host_normals,
    standard_normal_log_prob,
};
use coupling::{Coupling, CouplingKind};
use layers::{ActNorm, InvConv, squeeze, unsqueeze};

settings! {
    /// Configuration of a [`Flow`].
    pub struct FlowConfig {
        /// The coupling map.
        pub coupling: CouplingKind = CouplingKind::Affine, with_coupling;
        /// Flow steps (ActNorm, 1×1 conv, coupling) per scale.
        pub steps: usize = 8, with_steps;
        /// Hidden width of each coupling's conditioner.
        pub hidden: usize = 64, with_hidden;
        /// Scales for images (each halves height and width); vectors use one.
        pub scales: usize = 2, with_scales;
        /// Use ActNorm in each step.
        pub actnorm: bool = true, with_actnorm;
        /// Use the invertible 1×1 convolution in each step (else the halves just alternate).
        pub invconv: bool = true, with_invconv;
        /// Levels of the discrete pixels of image data (256 for 8-bit, 17 for the 8×8 digits);
        /// images are scaled to [−1, 1], so the dequantization step is 2 / (levels − 1).
        pub levels: usize = 256, with_levels;
    }
}

impl FlowConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One step: ActNorm, 1×1 convolution, coupling.
#[derive(Module, Debug)]
pub struct FlowStep {
    actnorm: Option<ActNorm>,
    invconv: Option<InvConv>,
    coupling: Coupling,
}

/// One scale: its steps, and the (channels, height, width) they see.
#[derive(Module, Debug)]
pub struct Scale {
    steps: Vec<FlowStep>,
    shape: [usize; 3],
}

/// A normalizing flow over flattened data `[batch, features]`.
#[derive(Module, Debug)]
pub struct Flow {
    scales: Vec<Scale>,
    data: [usize; 3],
    image: bool,
    bins: usize,
    bound: f64,
    levels: usize,
}

/// Uniforms in [0, 1), drawn on the host from `seed`.
pub fn host_uniforms(n: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>()).collect()
}

impl FlowConfig {
    /// Checks that the config fits data of `shape`.
    pub fn check(&self, shape: DataShape) -> Result<(), String> {
        if self.steps == 0 {
            return Err("a flow needs at least one step".into());
        }
        if let CouplingKind::Spline { bins, bound } = self.coupling
            && (bins < 2 || bound <= 0.0)
        {
            return Err(format!(
                "spline needs bins ≥ 2 and bound > 0, got {bins}, {bound}"
            ));
        }
        match shape {
            DataShape::Vector { dim } if dim < 2 => {
                Err("a coupling flow needs at least 2 features".into())
            }
            DataShape::Image { height, width, .. } => {
                let f = 1usize << self.scales;
                if self.scales == 0 || height % f != 0 || width % f != 0 {
                    Err(format!(
                        "{} scales need height and width divisible by {f}; the data are \
                         {height}×{width}",
                        self.scales
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Builds the flow for data of `shape`. Panics where [`FlowConfig::check`] fails.
    pub fn init(&self, shape: DataShape, device: &Device) -> Flow {
        self.check(shape).expect("flow config fits the data");
        let (image, data) = shape.layout();
        let n_scales = if image { self.scales } else { 1 };
        let [mut c, mut h, mut w] = data;
        let mut scales = Vec::new();
        let mut layer = 0u64;
        for s in 0..n_scales {
            if image {
                (c, h, w) = (4 * c, h / 2, w / 2);
            }
            let steps = (0..self.steps)
                .map(|i| {
                    layer += 1;
                    FlowStep {
                        actnorm: self.actnorm.then(|| ActNorm::new(c, device)),
                        invconv: self.invconv.then(|| InvConv::new(c, layer, device)),
                        coupling: Coupling::new(
                            c,
                            self.coupling,
                            self.hidden,
                            image,
                            i % 2 == 1,
                            device,
                        ),
                    }
                })
                .collect();
            scales.push(Scale {
                steps,
                shape: [c, h, w],
            });
            if image && s + 1 < n_scales {
                c -= c / 2;
            }
        }
        let (bins, bound) = match self.coupling {
            CouplingKind::Affine => (0, 0.0),
            CouplingKind::Spline { bins, bound } => (bins, bound),
        };
        Flow {
            scales,
            data,
            image,
            bins,
            bound,
            levels: self.levels,
        }
    }
}

impl FlowStep {
    fn forward(&self, x: Tensor<4>, kind: CouplingKind) -> (Tensor<4>, Tensor<1>) {
        let [b, ..] = x.dims();
        let mut ld = Tensor::<1>::zeros([b], &x.device());
        let mut h = x;
        if let Some(a) = &self.actnorm {
            let (y, l) = a.forward(h);
            (h, ld) = (y, ld + l);
        }
        if let Some(c) = &self.invconv {
            let (y, l) = c.forward(h);
            (h, ld) = (y, ld + l);
        }
        let (y, l) = self.coupling.apply(kind, h, false);
        (y, ld + l)
    }

    fn inverse(&self, y: Tensor<4>, kind: CouplingKind) -> Tensor<4> {
        let mut h = self.coupling.apply(kind, y, true).0;
        if let Some(c) = &self.invconv {
            h = c.inverse(h);
        }
        if let Some(a) = &self.actnorm {
            h = a.inverse(h);
        }
        h
    }
}

impl Flow {
    fn kind(&self) -> CouplingKind {
        if self.bins == 0 {
            CouplingKind::Affine
        } else {
            CouplingKind::Spline {
                bins: self.bins,
                bound: self.bound,
            }
        }
    }

    /// Features per data point.
    pub fn features(&self) -> usize {
        self.data.iter().product()
    }

    /// Levels of the discrete pixels it was configured for (images only).
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// Whether it models images (multiscale, dequantized) rather than vectors.
    pub fn is_image(&self) -> bool {
        self.image
    }

    /// x ↦ (z, log |det ∂z/∂x|).
    ///
    /// # Shapes
    /// - `x`: `[batch, features]`; returns (`[batch, features]`, `[batch]`).
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        self.run(x)
    }

    /// Sets every ActNorm from the statistics of `x` flowing through the model (Glow's
    /// data-dependent initialisation). Call once, on the first training batch.
    pub fn data_init(mut self, x: Tensor<2>) -> Self {
        let mut visit = |step: &mut FlowStep, h: &Tensor<4>| {
            if let Some(a) = &mut step.actnorm {
                a.init_from(h);
            }
        };
        let _ = self.run_mut(x, &mut visit);
        self
    }

    fn run(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let [b, _] = x.dims();
        let [c, h, w] = self.data;
        let mut hcur = x.reshape([b, c, h, w]);
        let mut ld = Tensor::<1>::zeros([b], &hcur.device());
        let mut out = Vec::new();
        let kind = self.kind();
        for (i, scale) in self.scales.iter().enumerate() {
            if self.image {
                hcur = squeeze(hcur);
            }
            for step in &scale.steps {
                let (y, l) = step.forward(hcur, kind);
                (hcur, ld) = (y, ld + l);
            }
            if self.image && i + 1 < self.scales.len() {
                let [_, cc, hh, ww] = hcur.dims();
                let keep = cc - cc / 2;
                out.push(
                    hcur.clone()
                        .slice([0..b, keep..cc, 0..hh, 0..ww])
                        .reshape([b, (cc - keep) * hh * ww]),
                );
                hcur = hcur.slice([0..b, 0..keep, 0..hh, 0..ww]);
            }
        }
        let [_, cc, hh, ww] = hcur.dims();
        out.push(hcur.reshape([b, cc * hh * ww]));
        (Tensor::cat(out, 1), ld)
    }

    fn run_mut(
        &mut self,
        x: Tensor<2>,
        visit: &mut impl FnMut(&mut FlowStep, &Tensor<4>),
    ) -> Tensor<4> {
        let [b, _] = x.dims();
        let [c, h, w] = self.data;
        let mut hcur = x.reshape([b, c, h, w]);
        let kind = self.kind();
        let n = self.scales.len();
        for (i, scale) in self.scales.iter_mut().enumerate() {
            if self.image {
                hcur = squeeze(hcur);
            }
            for step in &mut scale.steps {
                visit(step, &hcur);
                hcur = step.forward(hcur, kind).0;
            }
            if self.image && i + 1 < n {
                let [_, cc, hh, ww] = hcur.dims();
                hcur = hcur.slice([0..b, 0..cc - cc / 2, 0..hh, 0..ww]);
            }
        }
        hcur
    }

    /// z ↦ x, the exact inverse of [`Flow::forward`].
    ///
    /// # Shapes
    /// - `z`: `[batch, features]`; returns `[batch, features]`.
    pub fn inverse(&self, z: Tensor<2>) -> Tensor<2> {
        let [b, f] = z.dims();
        let kind = self.kind();
        // Where each scale's factored-out part sits in z.
        let mut offsets = Vec::new();
        let mut at = 0;
        for (i, scale) in self.scales.iter().enumerate() {
            let [c, h, w] = scale.shape;
            if self.image && i + 1 < self.scales.len() {
                offsets.push(at);
                at += (c / 2) * h * w;
            }
        }
        let [c, h, w] = self.scales.last().expect("a scale").shape;
        let mut hcur = z
            .clone()
            .slice([0..b, at..at + c * h * w])
            .reshape([b, c, h, w]);
        for (i, scale) in self.scales.iter().enumerate().rev() {
            if self.image && i + 1 < self.scales.len() {
                let [cs, hs, ws] = scale.shape;
                let out = cs / 2;
                let part = z
                    .clone()
                    .slice([0..b, offsets[i]..offsets[i] + out * hs * ws])
                    .reshape([b, out, hs, ws]);
                hcur = Tensor::cat(vec![hcur, part], 1);
            }
            for step in scale.steps.iter().rev() {
                hcur = step.inverse(hcur, kind);
            }
            if self.image {
                hcur = unsqueeze(hcur);
            }
        }
        hcur.reshape([b, f])
    }

    /// Negative log-likelihood of dequantized discrete data, in nats per row (`[batch]`): data
    /// on a grid of step `delta` (pixels at `levels` levels scaled to [−1, 1] have
    /// `delta = 2 / (levels − 1)`) get uniform noise `u` in ±delta/2, and
    /// −log P(x) ≤ −log p(x + u) − D · log delta.
    pub fn dequantized_nll(&self, x: Tensor<2>, delta: f64, seed: u64) -> Tensor<1> {
        let [b, d] = x.dims();
        let u = host_uniforms(b * d, seed);
        let u = Tensor::<2>::from_data(TensorData::new(u, [b, d]), &x.device())
            .sub_scalar(0.5)
            .mul_scalar(delta);
        self.log_prob(x + u).neg().sub_scalar(d as f64 * delta.ln())
    }
}

impl ExactDensity for Flow {
    fn log_prob(&self, x: Tensor<2>) -> Tensor<1> {
        let (z, ld) = self.forward(x);
        standard_normal_log_prob(z) + ld
    }
}

impl Generative for Flow {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            family: "flow",
            sample: true,
            conditional: false,
            likelihood: if self.image {
                Likelihood::Bound {
                    bound: Bound::Dequantized,
                }
            } else {
                Likelihood::Exact
            },
        }
    }

    fn sample(&self, n: usize, _labels: Option<&[u32]>, seed: u64, device: &Device) -> Tensor<2> {
        self.inverse(host_normals(n, self.features(), seed, device))
    }

    fn nll(&self, x: Tensor<2>, seed: u64) -> Option<Tensor<1>> {
        Some(if self.image {
            self.dequantized_nll(x, 2.0 / (self.levels as f64 - 1.0), seed)
        } else {
            self.log_prob(x).neg()
        })
    }
}

#[cfg(test)]
mod tests;
