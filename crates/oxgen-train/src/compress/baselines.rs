//! The general-purpose compressors beside a model's code: gzip (`flate2`, level 9), bzip2
//! (`bzip2`, level 9) and xz (`liblzma`, preset 9 with the extreme flag, `xz -9e`), each on the
//! whole input, in memory.

use std::io::Write;

use serde::Serialize;

/// Compressed sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Baselines {
    /// gzip -9.
    pub gzip: usize,
    /// bzip2 -9.
    pub bzip2: usize,
    /// xz -9e.
    pub xz: usize,
}

/// The sizes of `data` compressed by gzip, bzip2 and xz at their strongest settings.
pub fn baselines(data: &[u8]) -> Baselines {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).expect("writes to memory");
    let gzip = gz.finish().expect("writes to memory").len();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    bz.write_all(data).expect("writes to memory");
    let bzip2 = bz.finish().expect("writes to memory").len();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 9 | liblzma::stream::PRESET_EXTREME);
    xz.write_all(data).expect("writes to memory");
    let xz = xz.finish().expect("writes to memory").len();
    Baselines { gzip, bzip2, xz }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitive_text_shrinks_and_random_bytes_do_not() {
        let text = "the cat sat on the mat. ".repeat(400);
        let b = baselines(text.as_bytes());
        assert!(b.gzip < text.len() / 20 && b.bzip2 < text.len() / 20 && b.xz < text.len() / 20);
        use rand::{RngCore, SeedableRng};
        let mut noise = vec![0u8; 4096];
        rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut noise);
        let b = baselines(&noise);
        assert!(b.gzip > 3000 && b.xz > 3000, "{b:?}");
    }
}
