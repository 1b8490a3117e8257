//! The latent-variable coders' glue: a `.npy` of digits, bits-back coded with a VAE
//! ([`super::bbans`]) or a flow ([`super::flowbb`]), and the model's own bound beside it.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::format::Kind;
use super::{
    CompressOptions, Summary, baselines, bbans, deterministic, flowbb, header_for, level_value,
    pixel_images,
};
use crate::{Error, Result};

/// Bits-back coding of a `.npy` of digits with `vae`.
pub(crate) fn compress_vae(
    vae: &oxgen_models::vae::Vae,
    model: (u64, u32),
    data: &[u8],
    name: &Path,
    opts: &CompressOptions,
    started: Instant,
) -> Result<(Vec<u8>, Summary)> {
    let device = Device::flex();
    let (npy_header, images) = pixel_images(data, name)?;
    let x: Vec<Vec<f32>> = images
        .iter()
        .map(|img| img.iter().map(|&v| level_value(v)).collect())
        .collect();
    let bar = crate::run::progress(opts.progress, 0, images.len());
    let coded =
        deterministic(|| bbans::encode(vae, &images, &x, &bar, &device)).map_err(Error::Config)?;
    bar.finish_and_clear();
    let header = header_for(Kind::BitsBack, model, 0, data, images.len(), npy_header);
    let file = header.write(&coded.words);
    let summary = Summary {
        symbols: images.len() * 64,
        symbol: "pixel",
        input_bytes: data.len(),
        output_bytes: file.len(),
        header_bytes: header.size(),
        model_bits: vae_nll_bits(vae, &x, &device),
        bound: "negative ELBO",
        initial_bits: (32 * bbans::INITIAL_WORDS) as f64,
        model_bytes: model.0,
        seconds: started.elapsed().as_secs_f64(),
        baselines: opts.baselines.then(|| baselines(data)),
    };
    Ok((file, summary))
}

/// The VAE's negative ELBO of `x` in bits, the mean of 8 draws per image (what bits-back
/// coding approaches).
fn vae_nll_bits(vae: &oxgen_models::vae::Vae, x: &[Vec<f32>], device: &Device) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let t = Tensor::<2>::from_data(TensorData::new(flat, [n, 64]), device);
    let draws = 8;
    let nats: f64 = (0..draws)
        .map(|s| f64::from(vae.nll_bound(t.clone(), 1, s).sum().into_scalar::<f32>()))
        .sum::<f64>()
        / draws as f64;
    nats / std::f64::consts::LN_2
}

/// Dequantisation and local bits-back coding of a `.npy` of digits with `flow` (on the CPU's
/// autodiff device).
pub(crate) fn compress_flow(
    flow: &oxgen_models::flow::Flow,
    model: (u64, u32),
    data: &[u8],
    name: &Path,
    opts: &CompressOptions,
    started: Instant,
) -> Result<(Vec<u8>, Summary)> {
    let device = Device::flex().autodiff();
    let (npy_header, images) = pixel_images(data, name)?;
    let bar = crate::run::progress(opts.progress, 0, images.len());
    let coded =
        deterministic(|| flowbb::encode(flow, &images, &bar, &device)).map_err(Error::Config)?;
    bar.finish_and_clear();
    let header = header_for(Kind::FlowBitsBack, model, 0, data, images.len(), npy_header);
    let file = header.write(&coded.words);
    let x: Vec<Vec<f32>> = images
        .iter()
        .map(|img| img.iter().map(|&v| level_value(v)).collect())
        .collect();
    let summary = Summary {
        symbols: images.len() * 64,
        symbol: "pixel",
        input_bytes: data.len(),
        output_bytes: file.len(),
        header_bytes: header.size(),
        model_bits: flow_nll_bits(flow, &x, &Device::flex()),
        bound: "dequantised NLL",
        initial_bits: (32 * flowbb::INITIAL_WORDS) as f64,
        model_bytes: model.0,
        seconds: started.elapsed().as_secs_f64(),
        baselines: opts.baselines.then(|| baselines(data)),
    };
    Ok((file, summary))
}

/// The flow's dequantised negative log-likelihood of `x` in bits, the mean of 8 noise draws
/// per image (what the coder approaches).
fn flow_nll_bits(flow: &oxgen_models::flow::Flow, x: &[Vec<f32>], device: &Device) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    let flow = flow.valid();
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let t = Tensor::<2>::from_data(TensorData::new(flat, [n, 64]), device);
    let delta = 2.0 / (flow.levels() as f64 - 1.0);
    let draws = 8;
    let nats: f64 = (0..draws)
        .map(|s| {
            f64::from(
                flow.dequantized_nll(t.clone(), delta, s)
                    .sum()
                    .into_scalar::<f32>(),
            )
        })
        .sum::<f64>()
        / draws as f64;
    nats / std::f64::consts::LN_2
}
