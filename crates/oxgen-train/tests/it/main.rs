//! Integration tests of oxgen-train: one binary, one module per concern.

mod ar;
mod bad_input;
mod common;
mod compare;
mod families;
mod fixtures;
mod guidance;
mod interchange;
mod quality2d;
mod reliability;
mod resume;
mod wgpu_parity;
