//! The step RNG: every random draw of training step `s` comes from a generator seeded by
//! `(run seed, s, stream)`, so `(seed, step)` is the whole random state of a run and a resumed
//! run draws exactly what a straight one would.
//!
//! The batch order is a separate, per-epoch shuffle ([`batch_indices`]). A family uses its own
//! [`Stream`], so two families with one seed do not share noise; the streams are the derivations
//! of run format 1 and must not change, or older runs would no longer resume exactly.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Which family's draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Diffusion: timesteps, noise and label dropout.
    Diffusion,
    /// Autoregressive: sequence choice and dropout seeds.
    Ar,
    /// VAE, flow and GAN: sub-stream `k` of a step (GAN: 0 for the generator, 1 + i for the
    /// i-th discriminator update).
    Family(u64),
    /// Post-training: prompts and sampling seeds.
    Tune,
    /// DP-SGD's Poisson sampling and noise.
    Privacy,
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The seed of `stream`'s draws at `step`.
pub fn step_seed(seed: u64, step: usize, stream: Stream) -> u64 {
    match stream {
        Stream::Diffusion => seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ (step as u64 + 1),
        Stream::Ar => seed.wrapping_mul(GOLDEN) ^ (step as u64 + 7),
        Stream::Family(k) => seed.wrapping_mul(GOLDEN) ^ ((step as u64) << 8 | k),
        Stream::Tune => seed.wrapping_mul(0xd1b5_4a32_d192_ed03) ^ (step as u64 + 13),
        Stream::Privacy => seed.wrapping_mul(0x94d0_49bb_1331_11eb) ^ (step as u64 + 29),
    }
}

/// A generator for `stream`'s draws at `step`.
pub fn step_rng(seed: u64, step: usize, stream: Stream) -> StdRng {
    StdRng::seed_from_u64(step_seed(seed, step, stream))
}

/// Replica `i`'s seed of a step's device draws (dropout) in a data-parallel run, from the
/// step's `seed`: replica 0 keeps it, so one device draws what a run without replicas would.
pub fn replica_seed(seed: u64, i: usize) -> u64 {
    match i {
        0 => seed,
        _ => seed ^ (i as u64).wrapping_mul(GOLDEN).rotate_left(17),
    }
}

/// The rows for step `step`: position `step · batch` in the endless sequence of per-epoch
/// shuffles of `n` rows, each shuffle seeded by `(seed, epoch)`.
pub fn batch_indices(n: usize, batch: usize, seed: u64, step: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(batch);
    let mut pos = step * batch;
    let mut perm: Option<(usize, Vec<usize>)> = None;
    while out.len() < batch {
        let epoch = pos / n;
        if perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut p: Vec<usize> = (0..n).collect();
            p.shuffle(&mut StdRng::seed_from_u64(
                seed ^ (epoch as u64).wrapping_mul(GOLDEN),
            ));
            perm = Some((epoch, p));
        }
        out.push(perm.as_ref().expect("set above").1[pos % n]);
        pos += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_each_epoch_once_and_streams_differ() {
        // 10 rows in batches of 4: steps 0..5 cover two epochs, each a permutation.
        let rows: Vec<usize> = (0..5).flat_map(|s| batch_indices(10, 4, 3, s)).collect();
        for epoch in rows.chunks(10) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(rows[..10], rows[10..]);
        let seeds = [
            step_seed(1, 5, Stream::Diffusion),
            step_seed(1, 5, Stream::Ar),
            step_seed(1, 5, Stream::Family(0)),
            step_seed(1, 5, Stream::Family(1)),
            step_seed(1, 6, Stream::Family(0)),
        ];
        for i in 0..seeds.len() {
            for j in i + 1..seeds.len() {
                assert_ne!(seeds[i], seeds[j]);
            }
        }
    }

    /// Replica 0 draws what a one-device run draws; the others draw their own streams.
    #[test]
    fn replicas_past_the_first_get_their_own_seeds() {
        let s = step_seed(3, 9, Stream::Ar);
        assert_eq!(replica_seed(s, 0), s);
        let seeds: Vec<u64> = (0..8).map(|i| replica_seed(s, i)).collect();
        for i in 0..seeds.len() {
            for j in i + 1..seeds.len() {
                assert_ne!(seeds[i], seeds[j], "replicas {i} and {j}");
            }
        }
    }
}
