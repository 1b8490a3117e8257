//! The arguments of `oxgen bench` (the harnesses live in oxgen-bench).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use oxgen_models::ops::denoise::OpPath;
use oxgen_wgpu::DeviceChoice;

use crate::args::parse_path;

#[derive(Subcommand)]
pub(crate) enum BenchKind {
    /// The fused denoising update against burn's reference path with fusion on and off, with the
    /// copy rate as roofline, and whole-sampler wall times (UNet forward included). Prints
    /// Markdown and writes JSON.
    #[command(
        after_help = "Examples:\n  oxgen bench denoise --json denoise.json\n  oxgen bench denoise --sizes 10000,1000000 --no-sampler\n\nSizes past the adapter's storage-binding limit are skipped and listed."
    )]
    Denoise(BenchArgs),
    /// Our flash attention (WGSL, forward and backward) against burn's `attention` and
    /// `attention_fallback`, in ms and TFLOP/s. Prints Markdown and writes JSON.
    #[command(
        after_help = "Examples:\n  oxgen bench attention --seq 1024,2048,4096 --json attention.json\n  oxgen bench attention --seq 128,256 --batch 1 --heads 4 --causal\n  oxgen bench attention --seq 16384 --batch 1 --heads 8 --iters 1 --no-peers   (memory grows with L)\n  oxgen bench attention --decode --seq 4096,16384 --batch 1 --heads 8   (one token against a KV cache)"
    )]
    Attention(AttentionBenchArgs),
    /// The 2D convolution (WGSL, forward and both gradients) against burn's `Conv2d` and its
    /// autodiff, at the digits UNet's shapes (batch 64), in ms. Prints Markdown and writes JSON.
    #[command(
        after_help = "Examples:\n  oxgen bench conv\n  oxgen bench conv --iters 50 --json conv.json"
    )]
    Conv(ConvBenchArgs),
    /// GPT decoding with the KV cache (batch 1 and 16 by default) against re-running the window
    /// each step, and beside its PyTorch twin: same model (nanoGPT's shakespeare_char shape by
    /// default, random weights), greedy, tokens checked equal. Prints Markdown and writes JSON.
    #[command(
        after_help = "Examples:\n  oxgen bench decode --device cpu\n  oxgen bench decode --new-tokens 512 --batch 1,4,64 --device wgpu --json decode.json"
    )]
    Decode(DecodeBenchArgs),
    /// One training step of oxgen's trainer (optimizer and clipping included) beside its
    /// PyTorch twin (`benches/peers/twins.py`), measured one after the other: ms per step,
    /// tokens or samples per second, CPU ÷ wall, peak memory, and the throughput ratio.
    #[command(
        after_help = "Examples:\n  oxgen bench train --model gpt-small --device cpu\n  oxgen bench train --model unet-digits --iters 50 --json unet.json\n  oxgen bench train --model gpt-char --no-peer --device wgpu"
    )]
    Train(TrainBenchArgs),
    /// The digits UNet (untrained, digits8 defaults) drawing samples with DDIM and guidance 2,
    /// beside its PyTorch twin: ms per draw, samples per second, and the ratio.
    #[command(
        after_help = "Examples:\n  oxgen bench ddim --device cpu\n  oxgen bench ddim --batch 16 --steps 20 --no-peer"
    )]
    Ddim(DdimBenchArgs),
}

#[derive(Args)]
pub(crate) struct DdimBenchArgs {
    /// Samples per draw.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch: usize,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    pub(crate) steps: usize,
    #[command(flatten)]
    pub(crate) peer: PeerArgs,
    /// auto | wgpu | vulkan | metal | dx12 | cpu.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: DeviceChoice,
}

/// How a benchmark runs its PyTorch twin (`benches/peers/twins.py`).
#[derive(Args)]
pub(crate) struct PeerArgs {
    /// The Python that runs the twin (needs torch).
    #[arg(long, default_value = "python3")]
    pub(crate) python: String,
    /// Skip the PyTorch twin.
    #[arg(long)]
    pub(crate) no_peer: bool,
}

impl PeerArgs {
    /// The Python to run the twin with, unless skipped.
    pub(crate) fn python(&self) -> Option<&str> {
        (!self.no_peer).then_some(self.python.as_str())
    }
}

#[derive(Args)]
pub(crate) struct TrainBenchArgs {
    /// gpt-small (4 × 4 × 128, context 128, batch 32), gpt-char (6 × 6 × 384, context 256,
    /// batch 64), gpt-arithmetic (`train ar`'s defaults), unet-digits (the digits diffusion defaults) or unet-digits-dp (the same step
    /// under DP-SGD: σ 1, clip 1, fixed-size batches; no twin).
    #[arg(long, default_value = "gpt-small")]
    pub(crate) model: oxgen_bench::train::Model,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub(crate) iters: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub(crate) warmup: usize,
    #[command(flatten)]
    pub(crate) peer: PeerArgs,
    /// Write the report as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 | cpu (| ndarray, in a build with that feature).
    #[arg(long, default_value = "cpu")]
    pub(crate) device: DeviceChoice,
    /// auto | reference | fused: `reference` times burn's composed ops and burn's AdamW instead
    /// of the kernels.
    #[arg(long, default_value = "auto", value_parser = parse_path)]
    pub(crate) op_path: OpPath,
    /// Also time the step with every fused op on its reference, in the same run, and print the
    /// ratio.
    #[arg(long)]
    pub(crate) against_reference: bool,
    /// Also time the step with subgroup operations off (the kernels' reductions through
    /// workgroup memory only), in the same run, and print the ratio.
    #[arg(long)]
    pub(crate) against_no_subgroups: bool,
    /// Also time the step split over these devices (data parallelism, as `train --devices`:
    /// wgpu:0,wgpu:1 | cpu:0,cpu:1 | all), in the same run, against the first of them alone:
    /// ms per step, all-reduce ms per step and the scaling efficiency.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub(crate) devices: Option<String>,
}

#[derive(Args)]
pub(crate) struct DecodeBenchArgs {
    /// Tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub(crate) new_tokens: usize,
    /// Prompt tokens.
    #[arg(long, default_value_t = 1)]
    pub(crate) prompt: usize,
    /// Blocks.
    #[arg(long, default_value_t = 6)]
    pub(crate) layers: usize,
    /// Heads.
    #[arg(long, default_value_t = 6)]
    pub(crate) heads: usize,
    /// Width.
    #[arg(long, default_value_t = 384)]
    pub(crate) width: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 65)]
    pub(crate) vocab: usize,
    /// Context window (past it, both paths keep the last half window and re-encode it:
    /// `oxgen_models::ar::window_start`).
    #[arg(long, default_value_t = 256)]
    pub(crate) context: usize,
    /// Past the window, re-encode exactly the last `context` tokens at every token (the twin
    /// does not: use with --no-peer).
    #[arg(long)]
    pub(crate) exact_window: bool,
    /// Rows decoded at once, comma-separated: one measurement each.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 16])]
    pub(crate) batch: Vec<usize>,
    #[command(flatten)]
    pub(crate) peer: PeerArgs,
    /// Write the row as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 | cpu.
    #[arg(long, default_value = "auto")]
    pub(crate) device: DeviceChoice,
}

#[derive(Args)]
pub(crate) struct ConvBenchArgs {
    /// Timed calls per measurement.
    #[arg(long, default_value_t = 20)]
    pub(crate) iters: usize,
    /// Write the rows as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 (a wgpu device is required).
    #[arg(long, default_value = "wgpu")]
    pub(crate) device: DeviceChoice,
}

#[derive(Args)]
pub(crate) struct AttentionBenchArgs {
    /// Sequence lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 1024, 2048, 4096])]
    pub(crate) seq: Vec<usize>,
    /// Batch.
    #[arg(long, default_value_t = 4)]
    pub(crate) batch: usize,
    /// Heads.
    #[arg(long, default_value_t = 8)]
    pub(crate) heads: usize,
    /// Head dim: 4, 8, 16, 32, 64, 128 or 256.
    #[arg(long, default_value_t = 64)]
    pub(crate) dim: usize,
    /// Decoding: one query row per (batch, head) against `--seq` keys (a KV cache). Times the
    /// decode path against the forward kernel on the same call, and burn's two paths.
    #[arg(long)]
    pub(crate) decode: bool,
    /// Causal mask.
    #[arg(long)]
    pub(crate) causal: bool,
    /// f16 storage (f32 arithmetic) for q, k, v and the results, where the adapter has
    /// shader-f16.
    #[arg(long)]
    pub(crate) f16: bool,
    /// Run only ours (for lengths where burn's L×L buffers cannot exist).
    #[arg(long)]
    pub(crate) no_peers: bool,
    /// Timed calls per measurement.
    #[arg(long, default_value_t = 10)]
    pub(crate) iters: usize,
    /// Write the rows as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 (a wgpu device is required).
    #[arg(long, default_value = "wgpu")]
    pub(crate) device: DeviceChoice,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Element counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000, 10_000_000, 100_000_000])]
    pub(crate) sizes: Vec<usize>,
    /// Timed updates per measurement.
    #[arg(long, default_value_t = 30)]
    pub(crate) iters: usize,
    /// Skip the whole-sampler timings (1,000-step DDPM and 50-step DDIM with the UNet).
    #[arg(long)]
    pub(crate) no_sampler: bool,
    /// Images per whole-sampler run.
    #[arg(long, default_value_t = 64)]
    pub(crate) sampler_batch: usize,
    /// Philox's products from 16-bit halves even where the adapter has shader-int64 (to compare
    /// the two; they give the same noise).
    #[arg(long)]
    pub(crate) philox16: bool,
    /// Image shape for the whole-sampler runs, as C,H,W.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8, 8])]
    pub(crate) sampler_shape: Vec<usize>,
    /// Write the rows as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// auto | wgpu | vulkan | metal | dx12 (a wgpu device is required).
    #[arg(long, default_value = "wgpu")]
    pub(crate) device: DeviceChoice,
}
