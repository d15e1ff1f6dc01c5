//! Reader of the CIFAR-10 binary version (`cifar-10-binary.tar.gz`).
//!
//! Each batch file (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`, 10,000 records
//! each) is a sequence of 3073-byte records: one label byte (0..=9), then 1024 red, 1024 green
//! and 1024 blue bytes, each plane row-major 32×32. That is already channel-first, so a record
//! maps to the prepared `[3, 32, 32]` layout without reordering.
//!
//! A file whose length is not a whole number of records, or a label above 9, is an error naming
//! the file: both mean a truncated or wrong download.

use std::path::{Path, PathBuf};

use super::DataError;

/// Pixels `[N,C,H,W]` flat, their shape, and labels.
pub type Split = (Vec<u8>, [usize; 4], Vec<u32>);

const FORMAT: &str = "CIFAR-10 binary";
/// Bytes of one record: label + 3×32×32 pixels.
pub const RECORD: usize = 1 + 3 * 32 * 32;
/// The training batches, in the order they are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch.
pub const TEST_FILES: [&str; 1] = ["test_batch.bin"];

/// Reads one batch file: pixels `[N,3,32,32]` flat, and labels.
pub fn read_batch(path: &Path) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io("read", path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::raw(
            path,
            FORMAT,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte records",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut pixels = Vec::with_capacity(n * (RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(DataError::raw(
                path,
                FORMAT,
                format!("record {i} has label {}, expected 0..=9", rec[0]),
            ));
        }
        labels.push(rec[0] as u32);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((pixels, labels))
}

/// The directory holding the batch files: `dir` itself or its `cifar-10-batches-bin/`.
fn batches_dir(dir: &Path) -> PathBuf {
    let inner = dir.join("cifar-10-batches-bin");
    if inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// Reads and concatenates batch files from a CIFAR-10 directory.
pub fn read_files(dir: &Path, files: &[&str]) -> Result<Split, DataError> {
    let dir = batches_dir(dir);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let path = dir.join(f);
        if !path.is_file() {
            return Err(DataError::Unknown(format!(
                "no `{f}` in `{}`; fetch CIFAR-10 first (`builtin: fetch` with `name: cifar10`)",
                dir.display()
            )));
        }
        let (p, l) = read_batch(&path)?;
        pixels.extend(p);
        labels.extend(l);
    }
    let n = labels.len();
    Ok((pixels, [n, 3, 32, 32], labels))
}
