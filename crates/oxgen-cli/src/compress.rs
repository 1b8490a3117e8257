//! `oxgen compress` and `oxgen decompress`: a file coded with an autoregressive run's
//! predictions (see `oxgen_train::compress`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use oxgen_train::compress::{
    CompressOptions, compress as run_compress, decompress as run_decompress,
};

#[derive(Args)]
pub(crate) struct CompressArgs {
    /// An autoregressive run (a byte or character text run, or the pixel GPT) or a digits VAE or flow (bits-back).
    #[arg(long)]
    pub(crate) ckpt: PathBuf,
    /// The file to compress (text, or a .npy of 8×8 digits for the pixel GPT, the VAE or the flow).
    pub(crate) input: PathBuf,
    /// Where the compressed file goes (written atomically).
    pub(crate) output: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Skip gzip, bzip2 and xz in the summary.
    #[arg(long)]
    pub(crate) no_baselines: bool,
    /// Also write the summary as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct DecompressArgs {
    /// The run the file was compressed with.
    #[arg(long)]
    pub(crate) ckpt: PathBuf,
    /// The compressed file.
    pub(crate) input: PathBuf,
    /// Where the original goes (written atomically, once its CRC-32 matched).
    pub(crate) output: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

pub(crate) fn compress(a: CompressArgs) -> Result<()> {
    let opts = CompressOptions {
        progress: !a.quiet,
        baselines: !a.no_baselines,
    };
    let s = run_compress(&a.ckpt, &a.input, &a.output, &opts)?;
    let sym = s.symbol;
    println!(
        "{} -> {} bytes ({} {sym}s, {:.1} s; the model's weights: {} bytes)",
        s.input_bytes, s.output_bytes, s.symbols, s.seconds, s.model_bytes
    );
    println!(
        "achieved: {:.4} bits/{sym} (header {} bytes); the model's {}: {:.4} bits/{sym}",
        s.bits_per_symbol(),
        s.header_bytes,
        s.bound,
        s.model_bits_per_symbol()
    );
    if s.initial_bits > 0.0 {
        let net = 8.0 * (s.output_bytes - s.header_bytes) as f64 - s.initial_bits;
        println!(
            "bits-back net rate: {:.4} bits/{sym} (the body less the stack's {} initial bits), \
             {:+.2}% against the {}",
            net / s.symbols.max(1) as f64,
            s.initial_bits,
            100.0 * (net / s.model_bits - 1.0),
            s.bound
        );
    }
    if let Some(b) = s.baselines {
        let bits = |n: usize| 8.0 * n as f64 / s.symbols.max(1) as f64;
        println!(
            "gzip -9: {} bytes ({:.4} bits/{sym}); bzip2 -9: {} ({:.4}); xz -9e: {} ({:.4})",
            b.gzip,
            bits(b.gzip),
            b.bzip2,
            bits(b.bzip2),
            b.xz,
            bits(b.xz)
        );
        let ratio = |n: usize| s.output_bytes as f64 / n.max(1) as f64;
        println!(
            "size against gzip: {:.3}, bzip2: {:.3}, xz: {:.3}",
            ratio(b.gzip),
            ratio(b.bzip2),
            ratio(b.xz)
        );
    }
    if let Some(j) = a.json {
        std::fs::write(&j, serde_json::to_vec_pretty(&s)?)?;
    }
    Ok(())
}

pub(crate) fn decompress(a: DecompressArgs) -> Result<()> {
    let n = run_decompress(&a.ckpt, &a.input, &a.output, !a.quiet)?;
    println!("wrote {} ({n} bytes, CRC-32 checked)", a.output.display());
    Ok(())
}
