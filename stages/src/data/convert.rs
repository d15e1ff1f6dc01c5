//! Converters from a raw fetched dataset to the prepared format, by name.
//!
//! A converter name is what `prepare:` says in pipeline.yaml (`prepare: mnist-train`). The name
//! fixes the reader and the split, so the prepared file's meaning is in the pipeline text:
//!
//! | converter                         | raw input (a fetched directory)                 | output            |
//! |-----------------------------------|-------------------------------------------------|-------------------|
//! | `mnist-{train,test,all}`          | MNIST IDX files (any mirror's spelling, .gz ok) | `[N,1,28,28]`     |
//! | `fashion-mnist-{train,test,all}`  | Fashion-MNIST IDX files                         | `[N,1,28,28]`     |
//! | `cifar10-{train,test}`            | `cifar-10-batches-bin/`                         | `[N,3,32,32]`     |
//! | `stl10-{train,test,unlabeled}`    | `stl10_binary/`                                 | `[N,3,96,96]`     |
//! | `stacked-mnist` (`n`, `seed`)     | MNIST IDX files; train+test pooled              | `[n,3,28,28]`     |
//!
//! `all` is train followed by test. The metadata records the converter and the split so a
//! prepared file says where it came from.

use std::collections::BTreeMap;
use std::path::Path;

use super::prepared::{Dataset, Samples};
use super::{cifar, idx, stacked, stl, DataError};

/// Every converter name, for error messages and `--list`.
pub const CONVERTERS: [&str; 15] = [
    "mnist-train",
    "mnist-test",
    "mnist-all",
    "fashion-mnist-train",
    "fashion-mnist-test",
    "fashion-mnist-all",
    "cifar10-train",
    "cifar10-test",
    "stl10-train",
    "stl10-test",
    "stl10-unlabeled",
    "stacked-mnist",
    // Aliases people type.
    "fashion-train",
    "fashion-test",
    "fashion-all",
];

/// Extra parameters some converters take.
#[derive(Debug, Clone, Default)]
pub struct ConvertParams {
    /// `stacked-mnist`: number of samples (default 128,000 as in PacGAN's VEEGAN setting).
    pub n: Option<usize>,
    /// `stacked-mnist`: seed.
    pub seed: Option<u64>,
}

/// Runs converter `name` on the raw dataset at `raw`.
pub fn convert(name: &str, raw: &Path, params: &ConvertParams) -> Result<Dataset, DataError> {
    let (family, split) = match name.rsplit_once('-') {
        Some((f, s)) => (f, s),
        None => (name, ""),
    };
    let ds = match (family, split) {
        ("mnist" | "fashion-mnist" | "fashion", "train" | "test" | "all") => {
            let set = if family == "mnist" {
                "mnist"
            } else {
                "fashion-mnist"
            };
            mnist_like(raw, set, split)?
        }
        ("stacked", "mnist") => {
            let pool = mnist_like(raw, "mnist", "all")?;
            stacked::stack(&pool, params.n.unwrap_or(128_000), params.seed.unwrap_or(0))?
        }
        ("cifar10", "train" | "test") => {
            let files: &[&str] = if split == "train" {
                &cifar::TRAIN_FILES
            } else {
                &cifar::TEST_FILES
            };
            let (pixels, shape, labels) = cifar::read_files(raw, files)?;
            images("cifar10", split, pixels, shape, Some(labels))
        }
        ("stl10", "train" | "test" | "unlabeled") => {
            let (pixels, shape, labels) = stl::read_split(raw, split)?;
            images("stl10", split, pixels, shape, labels)
        }
        _ => {
            return Err(DataError::Unknown(format!(
                "unknown converter `{name}`; use one of: {}",
                CONVERTERS[..12].join(", ")
            )))
        }
    };
    let mut ds = ds;
    ds.metadata
        .insert("converter".to_string(), name.to_string());
    ds.validate()?;
    Ok(ds)
}

fn images(
    set: &str,
    split: &str,
    pixels: Vec<u8>,
    shape: [usize; 4],
    labels: Option<Vec<u32>>,
) -> Dataset {
    let mut metadata = BTreeMap::new();
    metadata.insert("split".to_string(), split.to_string());
    Dataset {
        name: format!("{set}-{split}"),
        samples: Samples::Images { pixels, shape },
        labels,
        metadata,
    }
}

fn mnist_like(raw: &Path, set: &str, split: &str) -> Result<Dataset, DataError> {
    let parts: &[&str] = match split {
        "train" => &["train"],
        "test" => &["t10k"],
        _ => &["train", "t10k"],
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut shape = [0usize, 1, 28, 28];
    for (i, part) in parts.iter().enumerate() {
        let (p, s, l) = idx::read_split(raw, part)?;
        if i > 0 && s[1..] != shape[1..] {
            return Err(DataError::Invalid {
                name: set.to_string(),
                message: format!(
                    "train images are {:?} but test images are {:?}",
                    &shape[1..],
                    &s[1..]
                ),
            });
        }
        shape = [shape[0] + s[0], s[1], s[2], s[3]];
        pixels.extend(p);
        labels.extend(l);
    }
    Ok(images(set, split, pixels, shape, Some(labels)))
}
