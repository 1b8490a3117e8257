//! Tests of oxgen-wgpu: one binary. The wgpu tests run on lavapipe in CI and fail, never skip,
//! when no adapter is found.

mod denoise;
mod naga_validation;
