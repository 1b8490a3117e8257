//! User data: IDX files (raw or gzip), folders of PNG images, CSV files of points.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataShape, Dataset, LoadOptions};
use crate::error::{Error, Result};

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io("file", path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Parse {
                path: path.into(),
                reason: format!("bad gzip stream: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an unsigned-byte IDX file: returns its dimensions and its bytes.
pub fn parse_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    let bad = |reason: String| Error::Parse {
        path: path.into(),
        reason,
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            "not an IDX file (magic number must start with two zero bytes)".into(),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "IDX element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
            bytes[2]
        )));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated header: {rank} dimensions need {header} bytes, file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            bad(format!(
                "header dimensions {dims:?} overflow: their product does not fit in memory"
            ))
        })?;
    if dims.contains(&0) {
        return Err(bad(format!("header dimensions {dims:?} include a zero")));
    }
    let data = bytes[header..].to_vec();
    if data.len() != expected {
        return Err(Error::Shape {
            context: format!("IDX file {}", path.display()),
            expected: format!("{expected} bytes for dimensions {dims:?}"),
            got: format!("{} bytes", data.len()),
        });
    }
    Ok((dims, data))
}

/// The labels file beside an images file, by the MNIST naming convention.
fn labels_beside(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let guess = path.with_file_name(name.replace("images-idx3", "labels-idx1"));
    (guess != path && guess.exists()).then_some(guess)
}

/// An IDX image file `[n, h, w]` (and its labels file beside it, if present).
pub fn idx_images(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let (dims, data) = parse_idx(path)?;
    if dims.len() != 3 {
        return Err(Error::Shape {
            context: format!("IDX images {}", path.display()),
            expected: "3 dimensions [n, height, width]".into(),
            got: format!("{} dimensions {dims:?}", dims.len()),
        });
    }
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    let labels = match labels_beside(path) {
        Some(lp) => {
            let (ld, l) = parse_idx(&lp)?;
            if ld != [n] {
                return Err(Error::Shape {
                    context: format!("IDX labels {}", lp.display()),
                    expected: format!("[{n}]"),
                    got: format!("{ld:?}"),
                });
            }
            Some(l.into_iter().map(u32::from).collect::<Vec<_>>())
        }
        None => None,
    };
    let (oh, ow) = opts.image_size.unwrap_or((h, w));
    let mut x = Vec::with_capacity(n * oh * ow);
    for i in 0..n {
        let img = image::GrayImage::from_raw(
            w as u32,
            h as u32,
            data[i * h * w..(i + 1) * h * w].to_vec(),
        )
        .expect("IDX image buffer has the size its header gives");
        let img = if (oh, ow) == (h, w) {
            img
        } else {
            image::imageops::resize(
                &img,
                ow as u32,
                oh as u32,
                image::imageops::FilterType::Triangle,
            )
        };
        x.extend(img.into_raw().into_iter().map(|p| p as f32 / 127.5 - 1.0));
    }
    let num_classes = labels
        .as_ref()
        .map(|l| l.iter().copied().max().unwrap_or(0) as usize + 1);
    Ok(Dataset {
        name: path.display().to_string(),
        shape: DataShape::Image {
            channels: 1,
            height: oh,
            width: ow,
        },
        x,
        labels,
        num_classes,
        toy: None,
    })
}

fn pngs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("image folder", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("png"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// A folder of PNG images. Sub-folders, if any, are classes (named in sorted order); images are
/// resized to `opts.image_size` (default: the first image's size).
pub fn png_folder(dir: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("image folder", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut files: Vec<(PathBuf, Option<u32>)> =
        pngs_in(dir)?.into_iter().map(|p| (p, None)).collect();
    for (k, c) in classes.iter().enumerate() {
        files.extend(pngs_in(c)?.into_iter().map(|p| (p, Some(k as u32))));
    }
    if files.is_empty() {
        return Err(Error::Shape {
            context: format!("image folder {}", dir.display()),
            expected: "at least one .png file (directly or in class sub-folders)".into(),
            got: "none".into(),
        });
    }
    let channels = if opts.rgb { 3 } else { 1 };
    let mut size = opts.image_size;
    let mut x = Vec::new();
    for (path, _) in &files {
        let img = image::open(path).map_err(|e| Error::Parse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let (h, w) = *size.get_or_insert((img.height() as usize, img.width() as usize));
        let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
        let raw: Vec<u8> = if opts.rgb {
            img.to_rgb8().into_raw()
        } else {
            img.to_luma8().into_raw()
        };
        // Interleaved HWC → channel-major CHW.
        for c in 0..channels {
            x.extend(
                raw.iter()
                    .skip(c)
                    .step_by(channels)
                    .map(|&p| p as f32 / 127.5 - 1.0),
            );
        }
    }
    let (height, width) = size.expect("at least one image");
    let labelled = files.iter().all(|(_, l)| l.is_some());
    Ok(Dataset {
        name: dir.display().to_string(),
        shape: DataShape::Image {
            channels,
            height,
            width,
        },
        x,
        labels: labelled.then(|| files.iter().map(|(_, l)| l.unwrap()).collect()),
        num_classes: labelled.then_some(classes.len()),
        toy: None,
    })
}

/// A CSV file of points: one row per point, all rows of the same width; a first row that does
/// not parse as numbers is taken as a header.
pub fn csv(path: &Path) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("CSV file", path, e))?;
    let mut width = None;
    let mut x = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: std::result::Result<Vec<f32>, _> =
            line.split(',').map(|c| c.trim().parse::<f32>()).collect();
        let cells = match cells {
            Ok(c) => c,
            Err(_) if i == 0 => continue, // header
            Err(e) => {
                return Err(Error::Parse {
                    path: path.into(),
                    reason: format!("line {}: {e}: `{line}`", i + 1),
                });
            }
        };
        match width {
            None => width = Some(cells.len()),
            Some(w) if w != cells.len() => {
                return Err(Error::Shape {
                    context: format!("CSV {} line {}", path.display(), i + 1),
                    expected: format!("{w} columns"),
                    got: format!("{} columns", cells.len()),
                });
            }
            _ => {}
        }
        x.extend(cells);
    }
    let dim = width.ok_or_else(|| Error::Shape {
        context: format!("CSV {}", path.display()),
        expected: "at least one row of numbers".into(),
        got: "no rows".into(),
    })?;
    Ok(Dataset {
        name: path.display().to_string(),
        shape: DataShape::Vector { dim },
        x,
        labels: None,
        num_classes: None,
        toy: None,
    })
}
