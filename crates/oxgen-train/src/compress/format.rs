//! The compressed file: a header, then the entropy coder's 32-bit words.
//!
//! ```text
//! magic      4  b"OXGZ"
//! version    1  FORMAT
//! kind       1  0: text (bytes or characters), 1: 8×8 pixel images (.npy), 2: the same,
//!               bits-back coded with a VAE
//! model      12 the checkpoint's digest: model.bpk's length (u64) and CRC-32
//! codec      4  CRC-32 of the run's codec.json (its tokenizer)
//! class      1+ the coding device class (length-prefixed UTF-8), e.g. "cpu-x86_64-avx512"
//! length     8  the original's length in bytes
//! crc        4  the original's CRC-32
//! lanes      4  segments coded side by side (text) or images (pixels)
//! extra      4+ kind-specific bytes (length-prefixed): the .npy header of images
//! words      8  number of 32-bit words in the body
//! header_crc 4  CRC-32 of everything above
//! body       4 × words, little-endian
//! ```
//!
//! Everything is checked before anything is decoded: the magic, the version, the header's CRC,
//! the body's length, then the model, the codec and the device class against the ones at hand.

use crate::{Error, Result};
use std::path::Path;

/// Magic number.
pub const MAGIC: &[u8; 4] = b"OXGZ";
/// Format version.
pub const FORMAT: u8 = 1;

/// What was coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes of text, through a byte or character model.
    Text = 0,
    /// 8×8 images with 17 levels in a `.npy` file, through the pixel GPT.
    Pixels = 1,
    /// The same images, bits-back coded with a VAE.
    BitsBack = 2,
    /// The same images, coded with a flow by dequantisation and local bits-back.
    FlowBitsBack = 3,
}

/// The header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// What was coded.
    pub kind: Kind,
    /// (length, CRC-32) of the checkpoint's weights.
    pub model: (u64, u32),
    /// CRC-32 of the codec.
    pub codec: u32,
    /// The device class the coding distributions were computed on.
    pub class: String,
    /// Length of the original.
    pub length: u64,
    /// CRC-32 of the original.
    pub crc: u32,
    /// Lanes (text) or images (pixels).
    pub lanes: u32,
    /// Kind-specific bytes.
    pub extra: Vec<u8>,
}

impl Header {
    /// The file: header then `words`.
    pub fn write(&self, words: &[u32]) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.extra.len() + 4 * words.len());
        b.extend_from_slice(MAGIC);
        b.push(FORMAT);
        b.push(self.kind as u8);
        b.extend_from_slice(&self.model.0.to_le_bytes());
        b.extend_from_slice(&self.model.1.to_le_bytes());
        b.extend_from_slice(&self.codec.to_le_bytes());
        b.push(self.class.len() as u8);
        b.extend_from_slice(self.class.as_bytes());
        b.extend_from_slice(&self.length.to_le_bytes());
        b.extend_from_slice(&self.crc.to_le_bytes());
        b.extend_from_slice(&self.lanes.to_le_bytes());
        b.extend_from_slice(&(self.extra.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.extra);
        b.extend_from_slice(&(words.len() as u64).to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        for w in words {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Bytes of the header of this file (all but the body).
    pub fn size(&self) -> usize {
        4 + 1 + 1 + 12 + 4 + 1 + self.class.len() + 8 + 4 + 4 + 4 + self.extra.len() + 8 + 4
    }

    /// Parses a file: its header and body words. `path` names it in errors.
    pub fn read(bytes: &[u8], path: &Path) -> Result<(Header, Vec<u32>)> {
        let bad = |reason: String| Error::Compressed {
            path: path.to_path_buf(),
            reason,
        };
        let mut r = Reader { bytes, at: 0 };
        let truncated = |_| bad("truncated: the file ends inside its header".into());
        if r.take(4).map_err(truncated)? != MAGIC {
            return Err(bad("not an oxgen compressed file (bad magic number)".into()));
        }
        let version = r.u8().map_err(truncated)?;
        if version != FORMAT {
            return Err(bad(format!(
                "format version {version}; this oxgen reads version {FORMAT}"
            )));
        }
        let kind = match r.u8().map_err(truncated)? {
            0 => Kind::Text,
            1 => Kind::Pixels,
            2 => Kind::BitsBack,
            3 => Kind::FlowBitsBack,
            k => return Err(bad(format!("unknown kind {k} (corrupt header)"))),
        };
        let model = (r.u64().map_err(truncated)?, r.u32().map_err(truncated)?);
        let codec = r.u32().map_err(truncated)?;
        let n = r.u8().map_err(truncated)? as usize;
        let class = String::from_utf8(r.take(n).map_err(truncated)?.to_vec())
            .map_err(|_| bad("corrupt header (device class)".into()))?;
        let length = r.u64().map_err(truncated)?;
        let crc = r.u32().map_err(truncated)?;
        let lanes = r.u32().map_err(truncated)?;
        let n = r.u32().map_err(truncated)? as usize;
        let extra = r.take(n).map_err(truncated)?.to_vec();
        let words = r.u64().map_err(truncated)?;
        let covered = r.at;
        let stored = r.u32().map_err(truncated)?;
        if crc32fast::hash(&bytes[..covered]) != stored {
            return Err(bad("the header is corrupt (CRC mismatch)".into()));
        }
        let body = &bytes[r.at..];
        if (body.len() as u64) != words.saturating_mul(4) {
            return Err(bad(format!(
                "the body is {} bytes, the header says {}: truncated or padded",
                body.len(),
                words.saturating_mul(4)
            )));
        }
        let words = body
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let header = Header {
            kind,
            model,
            codec,
            class,
            length,
            crc,
            lanes,
            extra,
        };
        Ok((header, words))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], ()> {
        let end = self.at.checked_add(n).ok_or(())?;
        let s = self.bytes.get(self.at..end).ok_or(())?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, ()> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, ()> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| ())?,
        ))
    }
    fn u64(&mut self) -> std::result::Result<u64, ()> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| ())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            kind: Kind::Pixels,
            model: (123_456, 0xDEAD_BEEF),
            codec: 7,
            class: "cpu-test".into(),
            length: 99,
            crc: 42,
            lanes: 3,
            extra: vec![1, 2, 3],
        }
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let h = header();
        let file = h.write(&[1, 2, 0xFFFF_FFFF]);
        assert_eq!(file.len(), h.size() + 12);
        let p = Path::new("x.oxgz");
        let (back, words) = Header::read(&file, p).unwrap();
        assert_eq!((back, words), (h.clone(), vec![1, 2, 0xFFFF_FFFF]));
        // Any flipped header byte, and any cut, is an error, never a header.
        for i in 0..h.size() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(Header::read(&bad, p).is_err(), "byte {i}");
        }
        for cut in 0..file.len() {
            assert!(Header::read(&file[..cut], p).is_err(), "cut at {cut}");
        }
    }
}
