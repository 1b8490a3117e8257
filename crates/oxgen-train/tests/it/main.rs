//! Integration tests of oxgen-train: one binary, one module per concern.

mod ar;
mod bad_input;
mod common;
mod compare;
mod compress;
mod copyright;
mod families;
mod fixtures;
mod guidance;
mod interchange;
mod kernel_paths;
mod limit;
mod lora;
mod parallel;
mod precision;
mod privacy;
mod privacy_ar;
mod privacy_flow;
mod privacy_gan;
mod quality2d;
mod reliability;
mod reliability_table;
mod resume;
mod tune;
mod watermark;
mod wgpu_parity;

// As the `oxgen` binary: glibc hands big tensor buffers back to the kernel on every free.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
