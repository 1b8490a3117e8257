//! A persistent autotune cache (the `autotune-cache` build feature; issue 23).
//!
//! burn's GPU kernels (matmul, reduce, convolution, …) pick among several variants by timing
//! them the first time each shape runs: on lavapipe that autotuning is most of the tens of
//! seconds a new process waits before its first step. burn 0.22.1 can keep those results in a
//! store on disk (its `persistence` feature, backed by the `turso` database), so a second
//! process reads them instead of timing again. Left to itself, cubecl puts the store under the
//! outermost Cargo workspace's `target/environment` (else the user's cache folder); this build
//! puts it in the user's cache folder always, so that it does not depend on the working
//! directory: `$XDG_CACHE_HOME/cubecl` or `~/.cache/cubecl` on Linux, `~/Library/Caches/cubecl`
//! on macOS, `%LOCALAPPDATA%\cubecl` on Windows. Clear it by deleting that folder; turn it off
//! for one process with `CUBECL_AUTOTUNE_CACHE=0`. A `cubecl.toml` or `burn.toml` in the working
//! directory or above it takes precedence, as cubecl's own configuration.
//!
//! The feature is off by default: the database adds to the cold build, and README command 1's
//! build time is the tighter constraint (`docs/benchmarks.md`).

/// Where the store is, or why it is not used. Call it before any device is made.
pub(crate) fn configure() -> Option<std::path::PathBuf> {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let has_file = std::env::current_dir().ok().is_some_and(|dir| {
        dir.ancestors().any(|d| {
            ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"]
                .iter()
                .any(|f| d.join(f).is_file())
        })
    });
    if has_file {
        return None;
    }
    let mut config = CubeClRuntimeConfig::default().override_from_env();
    config.environment.path = CacheConfig::Global;
    let root = config.environment.path.root();
    CubeClRuntimeConfig::try_set(config).then_some(root)
}
