//! Benchmark harnesses, kept out of the library crates: the fused denoising update
//! ([`denoise`]), the 2D convolution ([`conv`]) and flash attention ([`attention`], and its decode path, [`attention_decode`]) against burn's best paths, and GPT decoding
//! with and without the KV cache ([`decode`]), and training steps beside their PyTorch twins
//! ([`train`], [`peer`]). `oxgen bench` and the `benches/` targets call them.

pub mod attention;
pub mod attention_decode;
pub mod conv;
pub mod decode;
pub mod denoise;
pub mod peer;
pub mod process;
pub mod sample;
pub mod train;
