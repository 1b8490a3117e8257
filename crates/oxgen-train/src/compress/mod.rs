//! Prediction is compression: `oxgen compress` and `oxgen decompress` with an autoregressive run.
//! The achieved size is the model's code length (its NLL in bits) plus a header and a few bits
//! of the range coder's rounding ([`ar`], [`quantize`], [`format`]); [`baselines`] gives gzip,
//! bzip2 and xz on the same input.
//!
//! Determinism: an encoder and a decoder must compute the same frequencies bit for bit, so the
//! coding distributions are always computed on the CPU backend (whatever device the run was
//! trained on), in a one-thread pool, so that no reduction depends on the number of threads,
//! and are quantised on the host. A file records the CPU class it was coded on (the SIMD
//! level picks the matrix kernels, which changes rounding); decompressing on another class is
//! refused with [`Error::Compressed`]. Whatever goes wrong, the original's CRC-32 is checked
//! before a byte is written, so a decoder never writes wrong bytes.

pub mod ar;
pub mod baselines;
pub mod bbans;
pub mod flowbb;
pub mod format;
mod latent;
pub mod quantize;

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use serde::Serialize;

use crate::ar::{ArRun, Codec, PIXEL_START, load_ar};
use crate::checkpoint;
use crate::{Error, Result};
pub use baselines::{Baselines, baselines};
use format::{Header, Kind};

/// How to run.
#[derive(Clone, Debug)]
pub struct CompressOptions {
    /// Show a progress bar.
    pub progress: bool,
    /// Also compress with gzip, bzip2 and xz for the summary.
    pub baselines: bool,
}

impl Default for CompressOptions {
    fn default() -> Self {
        Self {
            progress: false,
            baselines: true,
        }
    }
}

/// What a compression achieved.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Symbols coded: text units (bytes or characters) or pixels.
    pub symbols: usize,
    /// What a symbol is.
    pub symbol: &'static str,
    /// Bytes in.
    pub input_bytes: usize,
    /// Bytes out, header included.
    pub output_bytes: usize,
    /// Bytes of the header.
    pub header_bytes: usize,
    /// The model's code length of the input in bits: its NLL under the same conditioning, a
    /// VAE's negative ELBO or a flow's dequantised NLL.
    pub model_bits: f64,
    /// What `model_bits` is: "NLL", "negative ELBO" or "dequantised NLL".
    pub bound: &'static str,
    /// Bits the coder started from (bits-back's initial words), part of the output but not of
    /// the images' net length.
    pub initial_bits: f64,
    /// Bytes of the model's weights (`model.bpk`): the size a fair comparison counts too.
    pub model_bytes: u64,
    /// Seconds spent coding.
    pub seconds: f64,
    /// gzip, bzip2 and xz on the same input.
    pub baselines: Option<Baselines>,
}

impl Summary {
    /// Achieved bits per symbol, header included.
    pub fn bits_per_symbol(&self) -> f64 {
        8.0 * self.output_bytes as f64 / self.symbols.max(1) as f64
    }

    /// The model's bits per symbol.
    pub fn model_bits_per_symbol(&self) -> f64 {
        self.model_bits / self.symbols.max(1) as f64
    }
}

/// The CPU class the coding distributions depend on: the architecture and the SIMD level the
/// matrix kernels are picked by.
pub fn coding_class() -> String {
    #[cfg(target_arch = "x86_64")]
    let simd = if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512"
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        "avx2"
    } else {
        "sse2"
    };
    #[cfg(target_arch = "aarch64")]
    let simd = "neon";
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let simd = "generic";
    format!("cpu-{}-{simd}", std::env::consts::ARCH)
}

/// Runs `f` in a one-thread pool: the coding computation, whose reductions then never depend
/// on the machine's core count.
pub(crate) fn deterministic<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
        .install(f)
}

/// A model that codes: an autoregressive run, or a VAE (bits-back).
#[derive(Debug)]
pub enum Coder {
    /// An autoregressive run.
    Ar(ArRun),
    /// A VAE with the discretized logistic decoder.
    Vae(oxgen_models::vae::Vae),
    /// A flow on 8×8 digits (17 levels), loaded on the CPU's autodiff device (local bits-back
    /// coding needs its Jacobian).
    Flow(oxgen_models::flow::Flow),
}

/// The run at `ckpt` loaded on the CPU, and its digest (weights' length and CRC, codec CRC).
pub fn load(ckpt: &Path) -> Result<(Coder, (u64, u32), u32)> {
    let ck = checkpoint::load(ckpt)?;
    let family = ck.manifest.family.as_str();
    if family == "gan" {
        return Err(Error::Config(format!(
            "{} is a GAN run: it has no likelihood, and a compressor needs one",
            ckpt.display()
        )));
    }
    let entry = |name: &str| {
        ck.manifest
            .files
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Checkpoint {
                path: ck.dir.clone(),
                reason: format!("no {name}"),
            })
    };
    let model = entry("model.bpk")?;
    let model = (model.bytes, model.crc32);
    if family == "vae" {
        let (_, trained) = crate::family::load_family(ckpt, &Device::flex())?;
        let crate::family::Trained::Vae(vae) = trained else {
            unreachable!("a vae checkpoint holds a VAE")
        };
        if vae.decoder_kind() != oxgen_models::vae::DecoderKind::Logistic
            || vae.levels() != 17
            || vae.features() != 64
        {
            return Err(Error::Config(
                "bits-back coding takes a VAE on 8×8 digits with the discretized logistic \
                 decoder (17 levels), as `oxgen train vae --data digits8` trains"
                    .into(),
            ));
        }
        return Ok((Coder::Vae(vae), model, 0));
    }
    if family == "flow" {
        let (_, trained) = crate::family::load_family(ckpt, &Device::flex().autodiff())?;
        let crate::family::Trained::Flow(flow) = trained else {
            unreachable!("a flow checkpoint holds a flow")
        };
        if !flow.is_image() || flow.levels() != 17 || flow.features() != 64 {
            return Err(Error::Config(
                "bits-back coding takes a flow on 8×8 digits (17 levels), as `oxgen train flow \
                 --data digits8` trains"
                    .into(),
            ));
        }
        return Ok((Coder::Flow(flow), model, 0));
    }
    if !(family == "ar" || family.starts_with("ar-")) {
        return Err(Error::Config(format!(
            "{} is a {family} run; `oxgen compress` codes with autoregressive runs and VAEs \
             flows and VAEs (diffusion's bound is a theoretical rate only: docs/compression.md)",
            ckpt.display()
        )));
    }
    let codec = entry("codec.json")?;
    let run = load_ar(ckpt, &Device::flex())?;
    Ok((Coder::Ar(run), model, codec.crc32))
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    if !path.exists() {
        return Err(Error::NotFound {
            what,
            path: path.into(),
        });
    }
    std::fs::read(path).map_err(|e| Error::io(what, path, e))
}

/// Compresses `data` with the run `run` (digest `model`, codec CRC `codec`): the file's bytes
/// and the summary. `name` names `data` in errors.
pub fn compress_bytes(
    coder: &Coder,
    model: (u64, u32),
    codec: u32,
    data: &[u8],
    name: &Path,
    opts: &CompressOptions,
) -> Result<(Vec<u8>, Summary)> {
    let started = Instant::now();
    let device = Device::flex();
    let run = match coder {
        Coder::Ar(run) => run,
        Coder::Vae(vae) => return latent::compress_vae(vae, model, data, name, opts, started),
        Coder::Flow(flow) => return latent::compress_flow(flow, model, data, name, opts, started),
    };
    let (kind, coded, lanes, extra, symbol) = match &run.codec {
        Codec::Text(tok) => {
            let units = ar::units(tok, data);
            let lanes = ar::lanes_for(units.len());
            let bar = crate::run::progress(opts.progress, 0, units.len());
            let escape = matches!(tok, oxgen_models::ar::Tokenizer::Chars { .. });
            let coded = deterministic(|| {
                ar::encode_text(
                    &run.model,
                    tok.vocab(),
                    escape,
                    &units,
                    lanes,
                    &bar,
                    &device,
                )
            })?;
            bar.finish_and_clear();
            let extra = (units.len() as u64).to_le_bytes().to_vec();
            let symbol = if escape { "character" } else { "byte" };
            (Kind::Text, coded, lanes, extra, symbol)
        }
        Codec::Pixels => {
            let (npy_header, images) = pixel_images(data, name)?;
            let bar = crate::run::progress(opts.progress, 0, images.len() * 64);
            let coded = deterministic(|| {
                ar::encode_pixels(&run.model, &images, PIXEL_START, &bar, &device)
            })?;
            bar.finish_and_clear();
            (Kind::Pixels, coded, images.len(), npy_header, "pixel")
        }
        Codec::Arithmetic(_) => {
            return Err(Error::Config(
                "a run on the sums language codes sums, not files".into(),
            ));
        }
    };
    let header = header_for(kind, model, codec, data, lanes, extra);
    let file = header.write(&coded.words);
    let summary = Summary {
        symbols: coded.symbols,
        symbol,
        input_bytes: data.len(),
        output_bytes: file.len(),
        header_bytes: header.size(),
        model_bits: coded.model_bits,
        bound: "NLL",
        initial_bits: 0.0,
        model_bytes: model.0,
        seconds: started.elapsed().as_secs_f64(),
        baselines: opts.baselines.then(|| baselines(data)),
    };
    Ok((file, summary))
}

pub(crate) fn header_for(
    kind: Kind,
    model: (u64, u32),
    codec: u32,
    data: &[u8],
    lanes: usize,
    extra: Vec<u8>,
) -> Header {
    Header {
        kind,
        model,
        codec,
        class: coding_class(),
        length: data.len() as u64,
        crc: crc32fast::hash(data),
        lanes: lanes as u32,
        extra,
    }
}

/// Decompresses the file `bytes` (named `name` in errors) with `coder`; refuses a file for
/// another model, codec or CPU class, and checks the original's length and CRC-32.
pub fn decompress_bytes(
    coder: &Coder,
    model: (u64, u32),
    codec: u32,
    bytes: &[u8],
    name: &Path,
    progress: bool,
) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::Compressed {
        path: name.to_path_buf(),
        reason,
    };
    let (header, words) = Header::read(bytes, name)?;
    if header.model != model {
        return Err(bad(format!(
            "it was compressed with another checkpoint (weights of {} bytes, CRC-32 {:08x}; this \
             one's: {} bytes, {:08x})",
            header.model.0, header.model.1, model.0, model.1
        )));
    }
    if header.codec != codec {
        return Err(bad("it was compressed with another tokenizer".into()));
    }
    let class = coding_class();
    if header.class != class {
        return Err(bad(format!(
            "it was coded on a {} CPU and this one is {class}: the model's arithmetic would \
             round differently; decompress on a {} machine",
            header.class, header.class
        )));
    }
    let device = Device::flex();
    let images = |n: usize| {
        if (n as u64) * 256 > header.length {
            Err(bad("corrupt header (more images than bytes)".into()))
        } else {
            Ok(n)
        }
    };
    let levels_out = |levels: Vec<Vec<u32>>| {
        let mut out = header.extra.clone();
        for v in levels.iter().flatten() {
            out.extend_from_slice(&level_value(*v).to_le_bytes());
        }
        out
    };
    let out = match (coder, header.kind) {
        (Coder::Ar(run), Kind::Text) => {
            let Codec::Text(tok) = &run.codec else {
                return Err(bad("it holds text and this run codes images".into()));
            };
            let n = u64::from_le_bytes(
                header
                    .extra
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad("corrupt header (unit count)".into()))?,
            ) as usize;
            if n as u64 > header.length {
                return Err(bad("corrupt header (more units than bytes)".into()));
            }
            let escape = matches!(tok, oxgen_models::ar::Tokenizer::Chars { .. });
            let bar = crate::run::progress(progress, 0, n);
            let lanes = header.lanes as usize;
            let units = deterministic(|| {
                ar::decode_text(
                    &run.model,
                    tok.vocab(),
                    escape,
                    words,
                    n,
                    lanes,
                    &bar,
                    &device,
                )
            })
            .map_err(bad)?;
            bar.finish_and_clear();
            ar::bytes_of(tok, &units)
        }
        (Coder::Ar(run), Kind::Pixels) if matches!(run.codec, Codec::Pixels) => {
            let n = images(header.lanes as usize)?;
            let bar = crate::run::progress(progress, 0, n * 64);
            let levels = deterministic(|| {
                ar::decode_pixels(&run.model, words, n, PIXEL_START, &bar, &device)
            })
            .map_err(bad)?;
            bar.finish_and_clear();
            levels_out(levels)
        }
        (Coder::Vae(vae), Kind::BitsBack) => {
            let n = images(header.lanes as usize)?;
            let bar = crate::run::progress(progress, 0, n);
            let levels =
                deterministic(|| bbans::decode(vae, words, n, &bar, &device)).map_err(bad)?;
            bar.finish_and_clear();
            levels_out(levels)
        }
        (Coder::Flow(flow), Kind::FlowBitsBack) => {
            let n = images(header.lanes as usize)?;
            let bar = crate::run::progress(progress, 0, n);
            let ad = device.clone().autodiff();
            let levels =
                deterministic(|| flowbb::decode(flow, words, n, &bar, &ad)).map_err(bad)?;
            bar.finish_and_clear();
            levels_out(levels)
        }
        _ => {
            return Err(bad(
                "it holds another kind of data than this run codes".into()
            ));
        }
    };
    if out.len() as u64 != header.length || crc32fast::hash(&out) != header.crc {
        return Err(bad(
            "the decoded bytes do not match the original's length and CRC-32: the body is \
             corrupt"
                .into(),
        ));
    }
    Ok(out)
}

/// Compresses the file `input` with the run at `ckpt` into `output` (written atomically).
pub fn compress(
    ckpt: &Path,
    input: &Path,
    output: &Path,
    opts: &CompressOptions,
) -> Result<Summary> {
    let data = read(input, "input file")?;
    let (coder, model, codec) = load(ckpt)?;
    let (file, summary) = compress_bytes(&coder, model, codec, &data, input, opts)?;
    crate::run::write_atomic(output, &file, "output")?;
    Ok(summary)
}

/// Decompresses `input` with the run at `ckpt` into `output` (written atomically, only once
/// the CRC-32 matched). Returns the bytes written.
pub fn decompress(ckpt: &Path, input: &Path, output: &Path, progress: bool) -> Result<usize> {
    let bytes = read(input, "compressed file")?;
    let (coder, model, codec) = load(ckpt)?;
    let out = decompress_bytes(&coder, model, codec, &bytes, input, progress)?;
    crate::run::write_atomic(output, &out, "output")?;
    Ok(out.len())
}

/// The value of pixel level `v` (0..=16) in the digits' scale.
pub(crate) fn level_value(v: u32) -> f32 {
    v as f32 / 8.0 - 1.0
}

/// The header bytes and the pixel levels of a `.npy` file of 8×8 images (little-endian f32,
/// C order, 64 values per image, each a level v/8 − 1 exactly, as `oxgen sample` writes them).
pub(crate) fn pixel_images(data: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<Vec<u32>>)> {
    let bad = |reason: String| Error::Parse {
        path: path.to_path_buf(),
        reason,
    };
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" || data[6] != 1 {
        return Err(bad("not a version 1 .npy file".into()));
    }
    let len = u16::from_le_bytes([data[8], data[9]]) as usize;
    let end = 10 + len;
    let head = data
        .get(10..end)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or unreadable .npy header".into()))?;
    if !head.contains("'descr': '<f4'") || !head.contains("'fortran_order': False") {
        return Err(bad(format!(
            "the pixel GPT codes little-endian f32 arrays in C order; this one is {}",
            head.trim()
        )));
    }
    let body = &data[end..];
    if !body.len().is_multiple_of(256) {
        return Err(bad(format!(
            "{} bytes of values: not a whole number of 8×8 f32 images",
            body.len()
        )));
    }
    let mut images = Vec::with_capacity(body.len() / 256);
    for (i, img) in body.chunks_exact(256).enumerate() {
        let mut levels = Vec::with_capacity(64);
        for (j, c) in img.chunks_exact(4).enumerate() {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let level = ((v + 1.0) * 8.0).round();
            if !(0.0..=16.0).contains(&level) || level_value(level as u32).to_bits() != v.to_bits()
            {
                return Err(bad(format!(
                    "image {i}, pixel {j} is {v}: not one of the 17 levels v/8 − 1 the pixel \
                     GPT codes"
                )));
            }
            levels.push(level as u32);
        }
        images.push(levels);
    }
    Ok((data[..end].to_vec(), images))
}
