//! Datasets: embedded defaults (2D distributions, 8×8 digits) and user files (IDX, PNG folders,
//! CSV), with a deterministic train/validation split.
//!
//! Every dataset is a row-major `[n, features]` matrix of `f32` plus optional labels. Images are
//! scaled to [−1, 1] and stored channel-major.

mod files;
pub mod toy2d;

use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

pub use oxgen_models::DataShape;
use toy2d::Toy2d;

use crate::error::{Error, Result};

/// Points drawn for a built-in 2D distribution (before the split).
pub const TOY2D_POINTS: usize = 20_000;

/// An in-memory dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Name, as given.
    pub name: String,
    /// Shape of one row.
    pub shape: DataShape,
    /// Row-major data, `[len, shape.numel()]`.
    pub x: Vec<f32>,
    /// Class labels, if any.
    pub labels: Option<Vec<u32>>,
    /// Number of classes (max label + 1), if labelled.
    pub num_classes: Option<usize>,
    /// The closed-form 2D distribution behind it, if any.
    pub toy: Option<Toy2d>,
}

/// Options for [`load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Resize images to `(height, width)`.
    pub image_size: Option<(usize, usize)>,
    /// Keep colour (3 channels) instead of converting to grayscale.
    pub rgb: bool,
}

/// Names of the built-in datasets.
pub fn builtin_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = Toy2d::ALL.iter().map(|(n, _)| *n).collect();
    v.push("digits8");
    v
}

/// Loads a dataset by built-in name, or from a path (IDX file, PNG folder, CSV file).
///
/// Built-in 2D distributions are drawn from `seed`.
pub fn load(spec: &str, seed: u64, opts: &LoadOptions) -> Result<Dataset> {
    if let Some(toy) = Toy2d::from_name(spec) {
        let x = toy.sample(TOY2D_POINTS, &mut StdRng::seed_from_u64(seed));
        return Ok(Dataset {
            name: spec.into(),
            shape: DataShape::Vector { dim: 2 },
            x,
            labels: None,
            num_classes: None,
            toy: Some(toy),
        });
    }
    if spec == "digits8" {
        return Ok(digits8());
    }
    let path = Path::new(spec);
    let looks_like_path = spec.contains('/') || spec.contains('.') || path.exists();
    if !looks_like_path {
        return Err(Error::UnknownDataset {
            name: spec.into(),
            known: builtin_names().join(", "),
        });
    }
    if !path.exists() {
        return Err(Error::NotFound {
            what: "dataset",
            path: path.into(),
        });
    }
    let ds = if path.is_dir() {
        files::png_folder(path, opts)?
    } else {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.ends_with(".csv") {
            files::csv(path)?
        } else if name.contains("idx") || name.ends_with(".gz") || name.ends_with("ubyte") {
            files::idx_images(path, opts)?
        } else {
            return Err(Error::Parse {
                path: path.into(),
                reason: "unknown file type; expected an IDX file (…idx3-ubyte[.gz]), a .csv file or a folder of PNGs".into(),
            });
        }
    };
    ds.check_finite()?;
    Ok(ds)
}

/// The 8×8 handwritten digits (1,797 images, 10 classes) that `smartcore` ships.
/// Pixel values 0..16 are scaled to [−1, 1].
pub fn digits8() -> Dataset {
    let d = smartcore::dataset::digits::load_dataset();
    Dataset {
        name: "digits8".into(),
        shape: DataShape::Image {
            channels: 1,
            height: 8,
            width: 8,
        },
        x: d.data.iter().map(|v| v / 8.0 - 1.0).collect(),
        labels: Some(d.target.iter().map(|&y| y as u32).collect()),
        num_classes: Some(10),
        toy: None,
    }
}

impl Dataset {
    /// A dataset of the program's own rows: `x` is row-major `[n, shape.numel()]` (images
    /// channel-major, scaled to [−1, 1]), with optional class labels. Refuses a length that is
    /// not a whole number of rows, labels of another count, and non-finite values.
    pub fn from_rows(
        name: &str,
        shape: DataShape,
        x: Vec<f32>,
        labels: Option<Vec<u32>>,
    ) -> Result<Self> {
        let f = shape.numel();
        if f == 0 || x.is_empty() || x.len() % f != 0 {
            return Err(Error::Shape {
                context: format!("rows of `{name}`"),
                expected: format!("a non-empty multiple of {f} values ({shape:?})"),
                got: format!("{} values", x.len()),
            });
        }
        let n = x.len() / f;
        if let Some(l) = &labels
            && l.len() != n
        {
            return Err(Error::Shape {
                context: format!("labels of `{name}`"),
                expected: format!("{n} labels, one per row"),
                got: format!("{}", l.len()),
            });
        }
        let ds = Dataset {
            name: name.into(),
            shape,
            num_classes: labels
                .as_ref()
                .and_then(|l| l.iter().max())
                .map(|&m| m as usize + 1),
            x,
            labels,
            toy: None,
        };
        ds.check_finite()?;
        Ok(ds)
    }

    /// A dataset of the rows of a `[n, features]` tensor (see [`Dataset::from_rows`]).
    pub fn from_tensor(
        name: &str,
        shape: DataShape,
        x: burn::tensor::Tensor<2>,
        labels: Option<Vec<u32>>,
    ) -> Result<Self> {
        let values = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Config(format!("reading the tensor: {e:?}")))?;
        Self::from_rows(name, shape, values, labels)
    }

    /// A dataset of the rows an iterator yields, each of `shape.numel()` values.
    pub fn from_row_iter<I, R>(name: &str, shape: DataShape, rows: I) -> Result<Self>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[f32]>,
    {
        let mut x = Vec::new();
        for (i, r) in rows.into_iter().enumerate() {
            let r = r.as_ref();
            if r.len() != shape.numel() {
                return Err(Error::Shape {
                    context: format!("row {i} of `{name}`"),
                    expected: format!("{} values", shape.numel()),
                    got: format!("{}", r.len()),
                });
            }
            x.extend_from_slice(r);
        }
        Self::from_rows(name, shape, x, None)
    }

    /// The rows at `idx` as a `[idx.len(), features]` tensor on `device`.
    pub fn batch(&self, idx: &[usize], device: &burn::tensor::Device) -> burn::tensor::Tensor<2> {
        let f = self.shape.numel();
        let rows = self.rows(idx);
        burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(rows, [idx.len(), f]), device)
    }

    /// The rows `idx`, one after another, on the host (what [`Dataset::batch`] uploads).
    pub fn rows(&self, idx: &[usize]) -> Vec<f32> {
        let mut rows = Vec::with_capacity(idx.len() * self.shape.numel());
        for &i in idx {
            rows.extend_from_slice(self.row(i));
        }
        rows
    }

    /// Refuses a split that leaves fewer than `min` validation rows (a file or image dataset
    /// whose report needs held-out data); built-in 2D distributions draw fresh points instead.
    pub fn check_val_split(&self, val_fraction: f64, min: usize) -> Result<()> {
        if self.toy.is_some() {
            return Ok(());
        }
        let n_val = ((self.len() as f64) * val_fraction).round() as usize;
        if n_val < min {
            return Err(Error::Config(format!(
                "`{}` has no validation split big enough for the report: val_fraction {} of {} rows gives {n_val}, at least {min} are needed; raise val_fraction (or skip the report)",
                self.name,
                val_fraction,
                self.len()
            )));
        }
        Ok(())
    }

    /// The training rows and, except for a built-in 2D distribution (whose held-out points are
    /// fresh draws), the validation rows of [`Dataset::split`].
    pub fn train_val(&self, val_fraction: f64, seed: u64) -> (Dataset, Option<Dataset>) {
        match self.toy {
            Some(_) => (self.clone(), None),
            None => {
                let (t, v) = self.split(val_fraction, seed);
                (t, Some(v))
            }
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x.len() / self.shape.numel()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let n = self.shape.numel();
        &self.x[i * n..(i + 1) * n]
    }

    /// Fails with [`Error::NonFinite`] on the first NaN or infinity.
    pub fn check_finite(&self) -> Result<()> {
        match self.x.iter().position(|v| !v.is_finite()) {
            Some(index) => Err(Error::NonFinite {
                context: format!("dataset `{}`", self.name),
                index,
            }),
            None => Ok(()),
        }
    }

    /// The rows at `idx`, as a new dataset.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut x = Vec::with_capacity(idx.len() * self.shape.numel());
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Dataset {
            name: self.name.clone(),
            shape: self.shape,
            x,
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            num_classes: self.num_classes,
            toy: self.toy,
        }
    }

    /// A deterministic split into (train, validation), `val_fraction` of the rows going to
    /// validation, shuffled by `seed`.
    pub fn split(&self, val_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5b1_17));
        let n_val = ((self.len() as f64) * val_fraction).round() as usize;
        let (val, train) = idx.split_at(n_val.min(self.len()));
        (self.subset(train), self.subset(val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_scaled_and_labelled() {
        let d = digits8();
        assert_eq!(d.len(), 1797);
        assert!(d.x.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_eq!(d.labels.as_ref().unwrap().iter().max(), Some(&9));
    }

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let d = digits8();
        let (a, b) = d.split(0.1, 3);
        let (c, _) = d.split(0.1, 3);
        assert_eq!(a.x, c.x);
        assert_eq!(a.len() + b.len(), 1797);
        assert_eq!(b.len(), 180);
    }

    #[test]
    fn unknown_name_is_a_typed_error() {
        let e = load("mnistt", 0, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, Error::UnknownDataset { .. }), "{e}");
        assert!(e.to_string().contains("digits8"));
        let e = load("/no/such/file.csv", 0, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
    }
}
