//! Planted duplicates in image data: a few training images repeated many times, the image
//! counterpart of text canaries, for measuring how often a model (or a NAF combination of shard
//! models) reproduces them.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{Error, Result};

/// The indices of the `images` rows of `rows` (of `n`) that [`plant_rows`] repeats.
pub fn planted_indices(n: usize, images: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xd0_b1e5));
    idx.truncate(images);
    idx
}

/// Appends `repeats − 1` more copies of each of `images` rows drawn by `seed`, so that each is
/// present `repeats` times; returns the planted rows. Errors on more images than rows and on
/// `repeats` below 1.
pub fn plant_rows<T: Clone>(
    rows: &mut Vec<T>,
    images: usize,
    repeats: usize,
    seed: u64,
) -> Result<Vec<T>> {
    if images > rows.len() || repeats == 0 {
        return Err(Error::Config(format!(
            "duplicates = [{images}, {repeats}]: needs at most {} images and at least 1 repeat",
            rows.len()
        )));
    }
    let planted: Vec<T> = planted_indices(rows.len(), images, seed)
        .into_iter()
        .map(|i| rows[i].clone())
        .collect();
    for p in &planted {
        for _ in 1..repeats {
            rows.push(p.clone());
        }
    }
    Ok(planted)
}

/// `data` with `images` of its rows (drawn by `seed`, as [`planted_indices`]) each present
/// `repeats` times, labels kept. Errors as [`plant_rows`].
pub fn plant_dataset(
    data: &crate::data::Dataset,
    images: usize,
    repeats: usize,
    seed: u64,
) -> Result<crate::data::Dataset> {
    let mut idx: Vec<usize> = (0..data.len()).collect();
    plant_rows(&mut idx, images, repeats, seed)?;
    Ok(data.subset(&idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_planted_row_is_present_repeats_times() {
        let mut rows: Vec<u32> = (0..100).collect();
        let planted = plant_rows(&mut rows, 5, 20, 3).unwrap();
        assert_eq!(rows.len(), 100 + 5 * 19);
        for p in &planted {
            assert_eq!(rows.iter().filter(|r| *r == p).count(), 20);
        }
        let again = plant_rows(&mut (0..100).collect::<Vec<u32>>(), 5, 20, 3).unwrap();
        assert_eq!(planted, again);
        assert!(plant_rows(&mut vec![1u32], 2, 3, 0).is_err());
    }
}
