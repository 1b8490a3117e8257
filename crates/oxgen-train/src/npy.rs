//! Writes `.npy` files (NumPy format 1.0), so samples load with `numpy.load`, and reads back
//! the little-endian `f32` ones.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Encodes a little-endian `f32` array of `shape` in the NPY 1.0 format.
pub fn encode_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "npy: data does not fill shape {shape:?}"
    );
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `data` of `shape` to `path` as `.npy`.
pub fn write_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    let bytes = encode_f32(data, shape);
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| Error::io("npy output", path, e))
}

/// Reads a version 1 `.npy` file of little-endian `f32` values in C order: the values, flat.
pub fn read_f32(path: &Path) -> Result<Vec<f32>> {
    if !path.exists() {
        return Err(Error::NotFound {
            what: "npy file",
            path: path.into(),
        });
    }
    let data = std::fs::read(path).map_err(|e| Error::io("npy file", path, e))?;
    let bad = |reason: &str| Error::Parse {
        path: path.into(),
        reason: reason.into(),
    };
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" || data[6] != 1 {
        return Err(bad("not a version 1 .npy file"));
    }
    let end = 10 + u16::from_le_bytes([data[8], data[9]]) as usize;
    let head = data
        .get(10..end)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or unreadable .npy header"))?;
    if !head.contains("'descr': '<f4'") || !head.contains("'fortran_order': False") {
        return Err(bad("expected little-endian f32 values in C order"));
    }
    let body = &data[end..];
    if !body.len().is_multiple_of(4) {
        return Err(bad("the values end mid-number"));
    }
    Ok(body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        write_f32(&p, &[1.5, -2.0, 3.25], &[3]).unwrap();
        assert_eq!(read_f32(&p).unwrap(), vec![1.5, -2.0, 3.25]);
        std::fs::write(&p, b"not numpy").unwrap();
        assert!(matches!(read_f32(&p), Err(Error::Parse { .. })));
        assert!(matches!(
            read_f32(&dir.path().join("missing.npy")),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn header_is_aligned_and_parsable() {
        let b = encode_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        assert_eq!(
            f32::from_le_bytes(b[10 + hlen + 4..10 + hlen + 8].try_into().unwrap()),
            2.0
        );
    }
}
