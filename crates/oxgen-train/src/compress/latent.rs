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
    let x = values(&images);
    let bar = crate::run::progress(opts.progress, 0, images.len());
    let coded =
        deterministic(|| bbans::encode(vae, &images, &x, &bar, &device)).map_err(Error::Config)?;
    bar.finish_and_clear();
    // The negative ELBO: what bits-back coding with the VAE approaches.
    let bits = mean_bits(&x, &device, |t, s| vae.nll_bound(t, 1, s));
    let coded = Coded {
        kind: Kind::BitsBack,
        words: coded.words,
        model_bits: (bits, "negative ELBO"),
        initial_words: bbans::INITIAL_WORDS,
    };
    Ok(coded.finish(model, data, images.len(), npy_header, opts, started))
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
    // The dequantised NLL: what the flow's coder approaches.
    let plain = flow.valid();
    let delta = 2.0 / (plain.levels() as f64 - 1.0);
    let bits = mean_bits(&values(&images), &Device::flex(), |t, s| {
        plain.dequantized_nll(t, delta, s)
    });
    let coded = Coded {
        kind: Kind::FlowBitsBack,
        words: coded.words,
        model_bits: (bits, "dequantised NLL"),
        initial_words: flowbb::INITIAL_WORDS,
    };
    Ok(coded.finish(model, data, images.len(), npy_header, opts, started))
}

/// The pixel values of images of levels.
fn values(images: &[Vec<u32>]) -> Vec<Vec<f32>> {
    images
        .iter()
        .map(|img| img.iter().map(|&v| level_value(v)).collect())
        .collect()
}

/// The mean over 8 draws of a per-image bound in nats (`bound(x, seed)`, `[n]`), summed over
/// the images of `x`, in bits.
fn mean_bits(x: &[Vec<f32>], device: &Device, bound: impl Fn(Tensor<2>, u64) -> Tensor<1>) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    let flat: Vec<f32> = x.iter().flatten().copied().collect();
    let t = Tensor::<2>::from_data(TensorData::new(flat, [n, 64]), device);
    let draws = 8;
    let nats: f64 = (0..draws)
        .map(|s| f64::from(bound(t.clone(), s).sum().into_scalar::<f32>()))
        .sum::<f64>()
        / draws as f64;
    nats / std::f64::consts::LN_2
}

/// A latent-variable coder's output, before the header.
struct Coded {
    kind: Kind,
    words: Vec<u32>,
    /// The model's bound in bits, and its name.
    model_bits: (f64, &'static str),
    initial_words: usize,
}

impl Coded {
    /// The file and its summary.
    fn finish(
        self,
        model: (u64, u32),
        data: &[u8],
        images: usize,
        npy_header: Vec<u8>,
        opts: &CompressOptions,
        started: Instant,
    ) -> (Vec<u8>, Summary) {
        let header = header_for(self.kind, model, 0, data, images, npy_header);
        let file = header.write(&self.words);
        let summary = Summary {
            symbols: images * 64,
            symbol: "pixel",
            input_bytes: data.len(),
            output_bytes: file.len(),
            header_bytes: header.size(),
            model_bits: self.model_bits.0,
            bound: self.model_bits.1,
            initial_bits: (32 * self.initial_words) as f64,
            model_bytes: model.0,
            seconds: started.elapsed().as_secs_f64(),
            baselines: opts.baselines.then(|| baselines(data)),
        };
        (file, summary)
    }
}
