//! burn's autotune where kernel compiles are slow: lavapipe in CI, where the test suites spend
//! most of their wgpu time compiling autotune candidates.

/// Turns on cubecl's per-kernel timing (its profiling, at the basic level, logged nowhere unless
/// `CUBECL_DEBUG_LOG` names a place) for this process. Call it before the first wgpu device is
/// made: it returns false, and changes nothing, once cubecl's configuration has been read or set.
/// A `cubecl.toml` in the working folder and the `CUBECL_*` variables are still read.
///
/// Why the test suites call it: with every kernel timed, burn's autotune takes its first
/// candidate whenever that one is within reach of the adapter's peak, without compiling the
/// others. On lavapipe most keys then stop at their first matmul candidate. One wgpu test
/// (`privacy_flow::flow_per_sample_gradients_equal_batches_of_one_on_wgpu`, cold shaders):
/// without it 26 short circuits and 152 s, with it 88 short circuits and 50 s. The candidates
/// it skips are matmuls of up to 250 KB of WGSL that LLVM takes seconds each to compile.
///
/// The cost is a wait after every kernel: a 7% slower step in steady state on lavapipe
/// (`oxgen bench train --model gpt-small --device wgpu`: 3,441 against 3,208 ms), so a user's
/// long run should not call it. The tests' tolerances do not depend on it: every candidate
/// autotune may pick computes the same product, up to the order of its sums.
pub fn time_every_kernel() -> bool {
    use burn::cubecl::config::profiling::ProfilingLogLevel;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    if matches!(config.profiling.logger.level, ProfilingLogLevel::Disabled) {
        config.profiling.logger.level = ProfilingLogLevel::Basic;
    }
    CubeClRuntimeConfig::try_set(config)
}
