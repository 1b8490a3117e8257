//! AdamW with a fused update where a kernel accepts the device: burn's `AdamW` arithmetic and
//! state (so checkpoints are interchangeable with burn's `AdamW`), but on the Flex (CPU)
//! device each parameter is updated in one parallel pass
//! (`oxgen_models::ops::cpu::adamw`) rather than fifteen single-threaded tensor ops. Other
//! devices, and `OpPath::Reference`, take burn's `AdamW` itself.

use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{DType, Device, Tensor};
use oxgen_models::ops::cpu::adamw::{AdamWStep, cpu_adamw};
use oxgen_models::ops::cpu::is_flex;
use oxgen_models::ops::{OpPath, path};

/// Parameter updates that took the fused kernel, since the process started.
pub static FUSED_UPDATES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// AdamW's constants (burn's defaults but for ε, which callers set).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedAdamW {
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// ε.
    pub epsilon: f32,
    /// Decoupled weight decay λ.
    pub weight_decay: f32,
}

impl Default for FusedAdamW {
    /// burn's `AdamWConfig` defaults: β = (0.9, 0.999), ε = 1e-5, λ = 1e-4.
    fn default() -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: 1e-4,
        }
    }
}

impl FusedAdamW {
    /// burn's `AdamW` with the same constants (the path for other devices).
    pub fn reference(&self) -> AdamW {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .build()
    }

    /// The optimizer for a whole module.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let fused = is_flex(&device)
            && path() != OpPath::Reference
            && [tensor.dtype(), grad.dtype()] == [DType::F32; 2];
        if !fused {
            return self.reference().step(lr, tensor, grad, state);
        }
        let (m, v, time) = match state {
            Some(s) => (s.momentum.moment_1, s.momentum.moment_2, s.momentum.time),
            None => (tensor.zeros_like(), tensor.zeros_like(), 0),
        };
        let step = AdamWStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time: (time + 1) as i32,
        };
        let (p, m, v) = cpu_adamw(tensor, grad, m, v, step);
        FUSED_UPDATES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let momentum = AdaptiveMomentumState::new(time + 1, m, v);
        (p, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::TensorData;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec().expect("f32")
    }

    /// Five steps of a linear layer (odd sizes, weight decay on) by the fused update and by
    /// burn's `AdamW` agree to within one rounding of f32 (the same operations, in the same
    /// order), and the fused optimizer's record loads into burn's (and back): same state.
    #[test]
    fn fused_adamw_matches_burn_adamw_step_by_step() {
        let dev = Device::flex().autodiff();
        let opt = FusedAdamW {
            beta_1: 0.8,
            beta_2: 0.95,
            epsilon: 1e-6,
            weight_decay: 0.1,
        };
        let init = {
            let _g = crate::trainer::optim::device_rng_lock();
            dev.seed(7);
            LinearConfig::new(37, 19).init(&dev)
        };
        let x = Tensor::<2>::from_data(
            TensorData::new(
                (0..5 * 37)
                    .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
                    .collect::<Vec<_>>(),
                [5, 37],
            ),
            &dev,
        );
        let run = |fused: bool| {
            let mut model: Linear = init.clone();
            let mut optim = if fused {
                opt.init()
            } else {
                ModuleOptimizer::from(opt.reference())
            };
            for step in 0..5 {
                let loss = model.forward(x.clone()).powi_scalar(2).sum();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-2 * (step + 1) as f64, model, grads);
            }
            (model, optim)
        };
        let before = FUSED_UPDATES.load(std::sync::atomic::Ordering::Relaxed);
        let ((fused, fused_optim), (plain, _)) = (run(true), run(false));
        // Weight and bias, five steps: the fused kernel ran (the comparison is not vacuous).
        assert!(FUSED_UPDATES.load(std::sync::atomic::Ordering::Relaxed) - before >= 10);
        let (fw, pw) = (host(fused.weight.val()), host(plain.weight.val()));
        let worst = fw
            .iter()
            .zip(&pw)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "weights differ by {worst} (relative)");
        assert_ne!(fw, host(init.weight.val()), "the weights moved");
        // burn's AdamW reads the fused optimizer's state: one more step from either agrees.
        let mut burn_optim =
            ModuleOptimizer::from(opt.reference()).load_record(fused_optim.to_record());
        let mut fused_again = opt.init().load_record(fused_optim.to_record());
        let step = |m: Linear, o: &mut ModuleOptimizer| {
            let loss = m.forward(x.clone()).powi_scalar(2).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            host(o.step(1e-2, m, grads).weight.val())
        };
        let (a, b) = (
            step(fused.clone(), &mut burn_optim),
            step(fused, &mut fused_again),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "after reload the steps differ by {worst}");
    }
}
