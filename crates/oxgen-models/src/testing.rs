//! Test helpers: parameters that do not depend on burn's shared random generator.
//!
//! `device.seed(n)` followed by `init` is not deterministic under `cargo test`: the generator
//! is one per backend, and tests on other threads draw from it (or reseed it) in between. A
//! test whose assertion depends on the particular weights initialises through [`seeded`].

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};

use crate::rng;

/// Replaces every float parameter by Philox normals of the stream `(seed, k)` (k counts the
/// parameters in visiting order), scaled by `1/√(3·fan_in)` for matrices (`dims[0]`, burn's
/// `[d_in, d_out]` layout: the variance of burn's default uniform init) and by 0.1 for vectors. Constant parameters (norm scales and shifts,
/// which burn initialises to ones and zeros) are kept.
pub(crate) fn seeded<M: Module>(module: M, seed: u64, gain: f32) -> M {
    module.map(&mut Seeded {
        seed,
        gain,
        count: 0,
    })
}

struct Seeded {
    seed: u64,
    gain: f32,
    count: u32,
}

impl ModuleMapper for Seeded {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let stream = self.count;
        self.count += 1;
        let (seed, gain) = (self.seed, self.gain);
        p.map(|t| {
            let dims = t.dims();
            let n: usize = dims.iter().product();
            let old: Vec<f32> = t.to_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            if old.iter().all(|v| *v == old[0]) {
                return t;
            }
            let scale = if D >= 2 {
                1.0 / (3.0 * dims[0] as f32).sqrt()
            } else {
                0.1
            };
            let values: Vec<f32> = rng::normals(seed, stream, n)
                .into_iter()
                .map(|z| z * scale * gain)
                .collect();
            let grad = t.is_require_grad();
            let fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &t.device());
            if grad { fresh.require_grad() } else { fresh }
        })
    }
}
