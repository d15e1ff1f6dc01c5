//! Reader of the STL-10 binary version (`stl10_binary.tar.gz`).
//!
//! `*_X.bin` holds 96×96 RGB images, 27,648 bytes each, channel-first, and **each channel is
//! stored column-major** (the set was written from MATLAB). Read naively as `[3, 96, 96]` the
//! images come out transposed; the reader swaps H and W so the prepared file is the usual
//! row-major `[N, 3, 96, 96]` (torchvision and the authors' python loader do the same
//! transpose). `*_y.bin` holds one byte per image, classes **1..=10**, stored here as 0..=9.
//! `unlabeled_X.bin` has no labels.
//!
//! A file that is not a whole number of images, or a label outside 1..=10, is an error.

use std::path::{Path, PathBuf};

use super::DataError;

/// Pixels `[N,3,96,96]` flat, their shape, and labels (none for `unlabeled`).
pub type Split = (Vec<u8>, [usize; 4], Option<Vec<u32>>);

const FORMAT: &str = "STL-10 binary";
/// Side of an STL-10 image.
pub const SIDE: usize = 96;
/// Bytes of one image.
pub const IMAGE: usize = 3 * SIDE * SIDE;

/// Reads `*_X.bin`: pixels `[N, 3, 96, 96]` row-major.
pub fn read_images(path: &Path) -> Result<(Vec<u8>, [usize; 4]), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io("read", path, e))?;
    if bytes.is_empty() || bytes.len() % IMAGE != 0 {
        return Err(DataError::raw(
            path,
            FORMAT,
            format!(
                "{} bytes is not a whole number of {IMAGE}-byte images",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / IMAGE;
    let mut out = vec![0u8; bytes.len()];
    for img in 0..n {
        for c in 0..3 {
            let base = img * IMAGE + c * SIDE * SIDE;
            for x in 0..SIDE {
                for y in 0..SIDE {
                    // Source is column-major: (x = column) outer, (y = row) inner.
                    out[base + y * SIDE + x] = bytes[base + x * SIDE + y];
                }
            }
        }
    }
    Ok((out, [n, 3, SIDE, SIDE]))
}

/// Reads `*_y.bin`: labels 1..=10 mapped to 0..=9.
pub fn read_labels(path: &Path) -> Result<Vec<u32>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io("read", path, e))?;
    bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (1..=10).contains(&b) {
                Ok(b as u32 - 1)
            } else {
                Err(DataError::raw(
                    path,
                    FORMAT,
                    format!("label {i} is {b}, expected 1..=10"),
                ))
            }
        })
        .collect()
}

/// The directory holding the `.bin` files: `dir` itself or its `stl10_binary/`.
fn bin_dir(dir: &Path) -> PathBuf {
    let inner = dir.join("stl10_binary");
    if inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// Reads a split: `train`, `test` (labelled) or `unlabeled`.
pub fn read_split(dir: &Path, split: &str) -> Result<Split, DataError> {
    let dir = bin_dir(dir);
    let x = dir.join(format!("{split}_X.bin"));
    if !x.is_file() {
        return Err(DataError::Unknown(format!(
            "no `{split}_X.bin` in `{}`; fetch STL-10 first (`builtin: fetch` with `name: stl10`)",
            dir.display()
        )));
    }
    let (pixels, shape) = read_images(&x)?;
    let labels = if split == "unlabeled" {
        None
    } else {
        let y = dir.join(format!("{split}_y.bin"));
        let labels = read_labels(&y)?;
        if labels.len() != shape[0] {
            return Err(DataError::raw(
                &y,
                FORMAT,
                format!("{} labels for {} images", labels.len(), shape[0]),
            ));
        }
        Some(labels)
    };
    Ok((pixels, shape, labels))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::data::convert::{convert, ConvertParams};
    use crate::data::prepared::{self, Samples};

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/data")
            .join(name)
    }

    fn resize(side: usize) -> ConvertParams {
        ConvertParams {
            resize: Some(side),
            ..ConvertParams::default()
        }
    }

    #[test]
    fn converter_downscales_96_to_48_like_the_reference() {
        // The two-image STL binary of `scripts/fixtures/data_readers.py`, decoded and box-
        // downscaled by torch (`avg_pool2d` + `round`) in `scripts/fixtures/stl_resize.py`.
        let ds = convert("stl10-train", &fixture("stl"), &resize(48)).unwrap();
        let want = prepared::load(&fixture("expected_stl10_train_48.safetensors")).unwrap();
        assert_eq!(ds.samples, want.samples);
        assert_eq!(ds.labels, want.labels);
        assert_eq!(ds.metadata["resize"], "48");
        assert_eq!(ds.metadata["resized_from"], "96x96");
        // Without `resize` the file is what it always was (no resize metadata).
        let plain = convert("stl10-train", &fixture("stl"), &ConvertParams::default()).unwrap();
        assert!(!plain.metadata.contains_key("resize"));
        assert!(matches!(
            plain.samples,
            Samples::Images {
                shape: [2, 3, 96, 96],
                ..
            }
        ));
    }

    #[test]
    fn unlabeled_split_resizes_then_pads() {
        // A synthetic unlabeled binary: image i, channel c is the constant 10 i + c, stored
        // column-major like the real set (a constant plane is the same either way).
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("stl10_binary");
        std::fs::create_dir(&bin).unwrap();
        let bytes: Vec<u8> = (0..3u8)
            .flat_map(|i| (0..3u8).flat_map(move |c| vec![10 * i + c; super::SIDE * super::SIDE]))
            .collect();
        std::fs::write(bin.join("unlabeled_X.bin"), &bytes).unwrap();
        let params = ConvertParams {
            resize: Some(32),
            pad: 1,
            ..ConvertParams::default()
        };
        let ds = convert("stl10-unlabeled", dir.path(), &params).unwrap();
        let Samples::Images { pixels, shape } = &ds.samples else {
            panic!("images expected")
        };
        assert_eq!(
            *shape,
            [3, 3, 34, 34],
            "96 / 3 = 32, then 1 pixel of padding"
        );
        let plane = |i: usize, c: usize| &pixels[(i * 3 + c) * 34 * 34..][..34 * 34];
        assert_eq!(plane(2, 1)[0], 0, "the padding is zero");
        assert_eq!(plane(2, 1)[34 + 1], 21);
        assert_eq!(plane(2, 1)[34 * 33 - 2], 21);
        assert!(ds.labels.is_none());

        let err = convert("stl10-unlabeled", dir.path(), &resize(40)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`stl10-unlabeled`")
                && msg.contains("`resize: 40`")
                && msg.contains("96x96"),
            "{msg}"
        );
        let err = convert("stl10-unlabeled", dir.path(), &resize(192)).unwrap_err();
        assert!(err.to_string().contains("upscale"), "{err}");
    }
}
