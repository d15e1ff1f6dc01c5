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
//!
//! Two image transforms follow the reader, in this order: `resize` (an exact integer-factor box
//! downscale, [`super::downscale`]; STL-10's 96x96 becomes the papers' 48x48 with
//! `resize: 48`), then `pad` (so `pad` is in pixels of the final size). Each is recorded in the
//! metadata when used; absent, the file is byte-for-byte what it was before either existed.

use std::collections::BTreeMap;
use std::path::Path;

use super::prepared::{Dataset, Samples};
use super::{cifar, downscale, idx, stacked, stl, DataError};

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
    /// Any image converter: zero pixels added on every side (MNIST's 28x28 becomes 32x32 with
    /// `pad: 2`, the size the SN paper's standard CNN takes). MNIST's background is 0, so the
    /// padded digits are the same digits.
    pub pad: usize,
    /// Any image converter: box-downscale every image to `resize x resize` first (an integer
    /// factor of the stored size, else an error naming both sizes).
    pub resize: Option<usize>,
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
    if let Some(side) = params.resize {
        downscale::downscale_dataset(&mut ds, side).map_err(|e| DataError::Param {
            converter: name.to_string(),
            message: e.to_string(),
        })?;
    }
    if params.pad > 0 {
        pad_images(&mut ds, params.pad).map_err(|message| DataError::Param {
            converter: name.to_string(),
            message,
        })?;
        ds.metadata
            .insert("pad".to_string(), params.pad.to_string());
    }
    ds.metadata
        .insert("converter".to_string(), name.to_string());
    ds.validate()?;
    Ok(ds)
}

/// Adds `pad` zero pixels on every side of every image; the error says why it cannot.
fn pad_images(ds: &mut Dataset, pad: usize) -> Result<(), String> {
    let Samples::Images { pixels, shape } = &mut ds.samples else {
        return Err(format!(
            "`pad` applies to images, and `{}` holds points",
            ds.name
        ));
    };
    let [n, c, h, w] = *shape;
    let (ph, pw) = (h + 2 * pad, w + 2 * pad);
    let mut out = vec![0u8; n * c * ph * pw];
    for plane in 0..n * c {
        for y in 0..h {
            let src = &pixels[(plane * h + y) * w..][..w];
            out[(plane * ph + y + pad) * pw + pad..][..w].copy_from_slice(src);
        }
    }
    *pixels = out;
    *shape = [n, c, ph, pw];
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_centres_the_image_in_zeros() {
        let mut ds = images(
            "t",
            "train",
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            [2, 1, 2, 2],
            None,
        );
        pad_images(&mut ds, 1).unwrap();
        let Samples::Images { pixels, shape } = &ds.samples else {
            unreachable!()
        };
        assert_eq!(*shape, [2, 1, 4, 4]);
        #[rustfmt::skip]
        let first = [0, 0, 0, 0,
                     0, 1, 2, 0,
                     0, 3, 4, 0,
                     0, 0, 0, 0];
        assert_eq!(&pixels[..16], &first);
        assert_eq!(&pixels[16 + 5..16 + 7], &[5, 6]);
    }
}
