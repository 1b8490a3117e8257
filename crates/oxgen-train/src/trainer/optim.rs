//! What every step calls for its update: gradients with global-norm clipping ([`grads_of`],
//! [`update`]), gradient accumulation ([`accumulate`]), the EMA of weights, and seeded
//! initialisation.
//!
//! burn's own clipping is per parameter; [`clip_global_norm`] scales every gradient by one
//! factor so that the norm of all of them together is at most `max_norm`.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};

use super::StepOutput;
use super::parallel::StepGrads;
use burn::tensor::Tensor;
use burn::tensor::container::TensorContainer;

struct SqNorms<'a> {
    grads: &'a GradientsParams,
    acc: Vec<Tensor<1>>,
}

impl ModuleVisitor for SqNorms<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            self.acc.push(g.square().sum());
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            self.grads.register::<D>(p.id, g.mul_scalar(self.factor));
        }
    }
}

/// Every gradient of `model` multiplied by `factor` (undoing a loss scale, say).
pub fn scale_grads<M: Module>(model: &M, grads: &mut GradientsParams, factor: f64) {
    model.visit(&mut Scale { grads, factor });
}

/// The global L2 norm of all gradients of `model`, and the grads scaled so that it is at most
/// `max_norm` (no scaling when `max_norm <= 0`). Returns the norm before clipping.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let mut v = SqNorms {
        grads,
        acc: Vec::new(),
    };
    model.visit(&mut v);
    if v.acc.is_empty() {
        return 0.0;
    }
    let norm = (Tensor::cat(v.acc, 0).sum().into_scalar::<f32>() as f64).sqrt();
    if max_norm > 0.0 && norm > max_norm && norm.is_finite() {
        model.visit(&mut Scale {
            grads,
            factor: max_norm / (norm + 1e-6),
        });
    }
    norm
}

struct ScaleBy<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for ScaleBy<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            let factor = self.factor.clone().reshape([1; D]);
            self.grads.register::<D>(p.id, g * factor);
        }
    }
}

/// As [`clip_global_norm`], without reading anything back: the norm stays on the device
/// (`[1]`), and the scale min(1, max_norm / (norm + 10⁻⁶)) is applied there (no clipping when
/// `max_norm <= 0`).
pub fn clip_global_norm_on_device<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
    device: &burn::tensor::Device,
) -> Tensor<1> {
    let mut v = SqNorms {
        grads,
        acc: Vec::new(),
    };
    model.visit(&mut v);
    if v.acc.is_empty() {
        return Tensor::zeros([1], device);
    }
    let norm = Tensor::cat(v.acc, 0).sum().sqrt();
    if max_norm > 0.0 {
        let factor = norm
            .clone()
            .add_scalar(1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        model.visit(&mut ScaleBy { grads, factor });
    }
    norm
}

struct Collect(TensorContainer<ParamId>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.register(p.id, p.val().without_autodiff());
    }
}

struct EmaUpdate {
    src: TensorContainer<ParamId>,
    decay: f64,
}

impl ModuleMapper for EmaUpdate {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let d = self.decay;
        match self.src.remove::<Tensor<D>>(&p.id) {
            Some(new) => p.map(|e| e.mul_scalar(d) + new.mul_scalar(1.0 - d)),
            None => p,
        }
    }
}

/// ema ← decay·ema + (1 − decay)·model, parameter by parameter (matched by id; `ema` must be
/// `model.valid()` or a copy of it).
pub fn ema_update<M: Module>(ema: M, model: &M, decay: f64) -> M {
    let mut c = Collect(TensorContainer::new());
    model.visit(&mut c);
    ema.map(&mut EmaUpdate { src: c.0, decay })
}

struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let _ = p.val();
    }
}

/// Held while seeding a device and drawing from its generator (initialisation, dropout masks),
/// so that runs in one process (tests, say) draw reproducibly: burn's device generator is shared.
pub fn device_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds a module from a seed, reproducibly across threads.
///
/// burn's random generator is global per backend and parameters initialise lazily, so two
/// threads that seed and build at once would draw each other's numbers. This seeds `device`,
/// runs `build`, and forces every parameter's initial value, all under one process-wide lock.
pub fn seeded_init<M: Module>(
    device: &burn::tensor::Device,
    seed: u64,
    build: impl FnOnce() -> M,
) -> M {
    let _guard = device_rng_lock();
    device.seed(seed);
    let module = build();
    module.visit(&mut Materialize);
    module
}

/// The gradients of `loss` for the parameters of `part` (the whole model, or a GAN's generator
/// or discriminator), clipped to a global norm of `clip` (0: no clipping); and the norm before
/// clipping.
pub fn grads_of<P: Module>(loss: Tensor<1>, part: &P, clip: f64) -> (GradientsParams, f64) {
    let mut grads = GradientsParams::from_grads(loss.backward(), part);
    let norm = clip_global_norm(part, &mut grads, clip);
    (grads, norm)
}

/// One optimizer update of `model` on `loss` at rate `lr`, with global-norm clipping. A
/// non-finite loss makes no update (the model comes back as it was). With `defer`, nothing is
/// read back: clipping happens on the device and the loss and norm come back pending
/// ([`StepOutput::pending`]), for the loop to read with other steps' (it stops the run if one
/// is not finite).
pub fn update<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    loss: Tensor<1>,
    lr: f64,
    clip: f64,
    defer: bool,
) -> (M, StepOutput) {
    if defer {
        let value = loss.clone().detach().reshape([1]);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        return step_deferred(model, optim, grads, value, lr, clip);
    }
    let value = loss.clone().into_scalar::<f32>() as f64;
    if !value.is_finite() {
        return (model, StepOutput::loss(value, f64::NAN));
    }
    let (grads, norm) = grads_of(loss, &model, clip);
    (optim.step(lr, model, grads), StepOutput::loss(value, norm))
}

/// As [`update`], from a data-parallel step's gradients (summed on the first device) and the
/// loss they are of: `model` is updated in place, and the step's metrics fields join the
/// output's.
pub fn update_with<M: Module>(
    model: &mut M,
    optim: &mut ModuleOptimizer,
    step: StepGrads<()>,
    lr: f64,
    clip: f64,
    defer: bool,
) -> StepOutput {
    let StepGrads {
        mut grads,
        loss: value,
        extra,
        ..
    } = step;
    let mut out = if defer {
        let (m, out) = step_deferred(model.clone(), optim, grads, value, lr, clip);
        *model = m;
        out
    } else {
        let value = value.into_scalar::<f32>() as f64;
        if value.is_finite() {
            let norm = clip_global_norm(model, &mut grads, clip);
            *model = optim.step(lr, model.clone(), grads);
            StepOutput::loss(value, norm)
        } else {
            StepOutput::loss(value, f64::NAN)
        }
    };
    super::merge_extra(&mut out, extra);
    out
}

/// A deferred update: clipping on the device, the loss and norm left there
/// ([`StepOutput::pending`]).
fn step_deferred<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    mut grads: GradientsParams,
    value: Tensor<1>,
    lr: f64,
    clip: f64,
) -> (M, StepOutput) {
    let device = value.device();
    let norm = clip_global_norm_on_device(&model, &mut grads, clip, &device);
    let pending = Tensor::cat(vec![value, norm], 0);
    (optim.step(lr, model, grads), StepOutput::pending(pending))
}

/// The gradients of `part`'s parameters only (one network of a model that holds two, say).
pub fn restrict<P: Module>(part: &P, grads: GradientsParams) -> GradientsParams {
    accumulate(part, GradientsParams::new(), grads)
}

/// Sums two sets of gradients parameter by parameter (gradient accumulation).
pub fn accumulate<M: Module>(
    model: &M,
    mut acc: GradientsParams,
    new: GradientsParams,
) -> GradientsParams {
    struct Add<'a> {
        acc: &'a mut GradientsParams,
        new: GradientsParams,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.new.remove::<D>(p.id) {
                let sum = match self.acc.remove::<D>(p.id) {
                    Some(a) => a + g,
                    None => g,
                };
                self.acc.register::<D>(p.id, sum);
            }
        }
    }
    model.visit(&mut Add { acc: &mut acc, new });
    acc
}
