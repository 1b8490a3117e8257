//! Deterministic DDIM inversion (Song et al., 2021; Dhariwal & Nichol, 2021, appendix F):
//! running the η = 0 DDIM update backwards takes an image to the initial noise that would have
//! sampled it, up to the approximation ε(x_{t_i}, t_i) ≈ ε(x_{t_{i−1}}, t_{i−1}). Tree-Ring
//! detection reads the watermark there.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{Diffusion, DiffusionConfig};
use crate::samplers::trailing_timesteps;

/// The initial noise x_T that `steps` η = 0 DDIM steps would take to `x0`, conditioned on
/// `labels` where given, else unconditionally (the null class of a class-conditional model).
///
/// # Shapes
/// - `x0`: `[n, features]`; returns `[n, features]`.
pub fn ddim_invert(
    model: &Diffusion,
    config: &DiffusionConfig,
    steps: usize,
    x0: Tensor<2>,
    labels: Option<&[u32]>,
    device: &Device,
) -> Tensor<2> {
    let schedule = config.noise_schedule();
    let mut ts = trailing_timesteps(schedule.len(), steps);
    ts.reverse();
    let [n, _] = x0.dims();
    let labels = model.null_class().map(|c| {
        let v: Vec<i64> = match labels {
            Some(l) => l.iter().map(|&y| i64::from(y)).collect(),
            None => vec![c as i64; n],
        };
        Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
    });
    // The sampler's last step takes x_{t_0} to the image; its inverse noises the image to t_0
    // with the ε the model sees there.
    let t0 = ts[0];
    let t = Tensor::<1>::from_data(TensorData::new(vec![t0 as f32; n], [n]), device);
    let out = model.forward(x0.clone(), t, labels.clone());
    let ab = schedule.alpha_bar(Some(t0));
    let (px, po) = config.prediction.x0_coeffs(ab);
    let x0_hat = x0.clone().mul_scalar(px) + out.mul_scalar(po);
    let eps = (x0.clone() - x0_hat.mul_scalar(ab.sqrt())).div_scalar((1.0 - ab).sqrt());
    let mut x = x0.mul_scalar(ab.sqrt()) + eps.mul_scalar((1.0 - ab).sqrt());
    for pair in ts.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let t = Tensor::<1>::from_data(TensorData::new(vec![from as f32; n], [n]), device);
        let out = model.forward(x.clone(), t, labels.clone());
        let ab = schedule.alpha_bar(Some(from));
        let (px, po) = config.prediction.x0_coeffs(ab);
        let x0_hat = x.clone().mul_scalar(px) + out.mul_scalar(po);
        let eps = (x - x0_hat.clone().mul_scalar(ab.sqrt())).div_scalar((1.0 - ab).sqrt());
        let ab_to = schedule.alpha_bar(Some(to));
        x = x0_hat.mul_scalar(ab_to.sqrt()) + eps.mul_scalar((1.0 - ab_to).sqrt());
    }
    x
}
