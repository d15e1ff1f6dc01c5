//! The prepared dataset format: the one on-disk shape every stage after `fetch` reads.
//!
//! A prepared dataset is **one safetensors file** holding exactly one sample tensor and an
//! optional label tensor:
//!
//! | tensor   | dtype           | shape          | meaning                                  |
//! |----------|-----------------|----------------|------------------------------------------|
//! | `images` | u8              | `[N, C, H, W]` | pixels, channel-first, 0..=255           |
//! | `points` | f32             | `[N, D]`       | coordinates of low-dimensional samples    |
//! | `labels` | u32 (or i64)    | `[N]`          | class / mode index of each sample         |
//!
//! The safetensors `__metadata__` map carries `name` (always) and free-form string keys (the
//! source, the seed, sigma, ...), which [`Dataset::metadata`] exposes without `name`.
//!
//! What must never change silently:
//! - The tensor names and dtypes above. Training, metrics and the report read them by name;
//!   a rename would make every prepared file in every cache unreadable.
//! - Channel-first layout and u8 pixels. Scaling to `[-1, 1]` (or to Inception's range) is the
//!   consumer's job, so the file stays the exact raw data and its hash means "the same pixels".
//! - Labels are written as u32. Files written by other tools with i64 labels (PyTorch's default
//!   integer type) are accepted on load and narrowed, rejecting negative or too-large values
//!   instead of wrapping.
//! - [`save`] writes atomically and deterministically: the same [`Dataset`] always gives the
//!   same bytes (safetensors sorts tensors; the metadata map is built from a `BTreeMap`, and the
//!   header is serialized with sorted keys), so a stage that re-prepares the same data produces
//!   the same content hash and downstream stages stay fresh.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::DataError;
use repro_engine::fsutil;

/// The tensor holding image samples.
pub const IMAGES: &str = "images";
/// The tensor holding point samples.
pub const POINTS: &str = "points";
/// The tensor holding labels.
pub const LABELS: &str = "labels";
/// The metadata key holding the dataset name.
pub const NAME_KEY: &str = "name";

/// The samples of a dataset: images or points, flat buffers in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// u8 pixels, `shape` = `[N, C, H, W]`.
    Images { pixels: Vec<u8>, shape: [usize; 4] },
    /// f32 coordinates, `shape` = `[N, D]`.
    Points { coords: Vec<f32>, shape: [usize; 2] },
}

impl Samples {
    /// Number of samples `N`.
    pub fn len(&self) -> usize {
        match self {
            Samples::Images { shape, .. } => shape[0],
            Samples::Points { shape, .. } => shape[0],
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the buffer length against the shape.
    fn check(&self, name: &str) -> Result<(), DataError> {
        let (len, want, shape) = match self {
            Samples::Images { pixels, shape } => {
                (pixels.len(), checked_product(shape), format!("{shape:?}"))
            }
            Samples::Points { coords, shape } => {
                (coords.len(), checked_product(shape), format!("{shape:?}"))
            }
        };
        match want {
            Some(w) if w == len => Ok(()),
            _ => Err(DataError::Invalid {
                name: name.to_string(),
                message: format!("shape {shape} does not match a buffer of {len} values"),
            }),
        }
    }
}

fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A dataset in memory: samples, optional labels, a name and free-form metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub samples: Samples,
    pub labels: Option<Vec<u32>>,
    /// Extra metadata (never contains `name`, which has its own field).
    pub metadata: BTreeMap<String, String>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Checks shapes and label count; [`save`] and [`load`] both call it.
    pub fn validate(&self) -> Result<(), DataError> {
        self.samples.check(&self.name)?;
        if let Some(labels) = &self.labels {
            if labels.len() != self.len() {
                return Err(DataError::Invalid {
                    name: self.name.clone(),
                    message: format!("{} labels for {} samples", labels.len(), self.len()),
                });
            }
        }
        Ok(())
    }
}

/// Reads a prepared dataset.
///
/// The pixels are cut out of the file buffer in place rather than copied, so loading a
/// multi-gigabyte image set (STL-10 unlabeled is 2.7 GB) needs its size in memory, not twice.
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    let mut bytes = std::fs::read(path).map_err(|e| DataError::io("read", path, e))?;
    let (mut ds, pixel_range) = parse(path, &bytes, false)?;
    if let (Some(range), Samples::Images { pixels, .. }) = (pixel_range, &mut ds.samples) {
        bytes.truncate(range.end);
        bytes.drain(..range.start);
        *pixels = bytes;
    }
    ds.validate().map_err(|e| DataError::Prepared {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(ds)
}

/// Parses a prepared dataset from the bytes of a file (`path` only names it in errors).
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Dataset, DataError> {
    let (ds, _) = parse(path, bytes, true)?;
    ds.validate().map_err(|e| DataError::Prepared {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(ds)
}

/// Parses everything; image pixels are copied only when `copy_pixels`, otherwise left empty
/// and their byte range in `bytes` returned. The caller validates.
fn parse(
    path: &Path,
    bytes: &[u8],
    copy_pixels: bool,
) -> Result<(Dataset, Option<std::ops::Range<usize>>), DataError> {
    let mut pixel_range = None;
    let bad = |message: String| DataError::Prepared {
        path: path.to_path_buf(),
        message,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| DataError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| DataError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let name = metadata
        .remove(NAME_KEY)
        .ok_or_else(|| bad(format!("the metadata has no `{NAME_KEY}` key")))?;

    for n in st.names() {
        if ![IMAGES, POINTS, LABELS].contains(&n) {
            return Err(bad(format!(
                "unexpected tensor `{n}` (allowed: `{IMAGES}`, `{POINTS}`, `{LABELS}`)"
            )));
        }
    }
    let images = st.tensor(IMAGES).ok();
    let points = st.tensor(POINTS).ok();
    let samples = match (images, points) {
        (Some(t), None) => {
            if t.dtype() != Dtype::U8 {
                return Err(bad(format!("`{IMAGES}` must be u8, found {:?}", t.dtype())));
            }
            let shape: [usize; 4] = t.shape().try_into().map_err(|_| {
                bad(format!(
                    "`{IMAGES}` must have shape [N, C, H, W], found {:?}",
                    t.shape()
                ))
            })?;
            let pixels = if copy_pixels {
                t.data().to_vec()
            } else {
                // The view borrows `bytes`, so its offset is a plain pointer difference.
                let start = t.data().as_ptr() as usize - bytes.as_ptr() as usize;
                pixel_range = Some(start..start + t.data().len());
                Vec::new()
            };
            Samples::Images { pixels, shape }
        }
        (None, Some(t)) => {
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "`{POINTS}` must be f32, found {:?}",
                    t.dtype()
                )));
            }
            let shape: [usize; 2] = t.shape().try_into().map_err(|_| {
                bad(format!(
                    "`{POINTS}` must have shape [N, D], found {:?}",
                    t.shape()
                ))
            })?;
            let coords = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Samples::Points { coords, shape }
        }
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "it holds both `{IMAGES}` and `{POINTS}`; keep one"
            )))
        }
        (None, None) => return Err(bad(format!("it holds neither `{IMAGES}` nor `{POINTS}`"))),
    };
    let labels = match st.tensor(LABELS) {
        Ok(t) => Some(read_labels(&t).map_err(bad)?),
        Err(_) => None,
    };
    let ds = Dataset {
        name,
        samples,
        labels,
        metadata,
    };
    Ok((ds, pixel_range))
}

/// Reads labels stored as any integer type, refusing values that do not fit u32.
fn read_labels(t: &TensorView<'_>) -> Result<Vec<u32>, String> {
    if t.shape().len() != 1 {
        return Err(format!(
            "`{LABELS}` must have shape [N], found {:?}",
            t.shape()
        ));
    }
    let d = t.data();
    let wide: Vec<i128> = match t.dtype() {
        Dtype::U8 => d.iter().map(|&b| b as i128).collect(),
        Dtype::U16 => d
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i128)
            .collect(),
        Dtype::U32 => d
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i128)
            .collect(),
        Dtype::I32 => d
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i128)
            .collect(),
        Dtype::I64 => d
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as i128)
            .collect(),
        Dtype::U64 => d
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as i128)
            .collect(),
        other => {
            return Err(format!(
                "`{LABELS}` must be an integer tensor (u32 or i64), found {other:?}"
            ))
        }
    };
    wide.into_iter()
        .enumerate()
        .map(|(i, v)| {
            u32::try_from(v).map_err(|_| format!("label {i} is {v}, outside 0..=4294967295"))
        })
        .collect()
}

/// One tensor of a file being written: name, dtype tag, shape, little-endian bytes.
type Part<'a> = (&'static str, &'static str, Vec<usize>, Cow<'a, [u8]>);

/// Serializes a dataset to the bytes [`save`] writes.
///
/// The header is written here rather than by `safetensors::serialize`, whose metadata is a
/// `HashMap` serialized in random iteration order: the same dataset would hash differently from
/// run to run. Layout follows the safetensors spec (u64 LE header length, JSON header padded
/// with spaces to 8 bytes, then the data); tensors are ordered as safetensors orders them
/// (wider dtype first, then by name), so `labels` (u32) precedes `images` (u8) and stays aligned.
pub fn to_bytes(ds: &Dataset) -> Result<Vec<u8>, DataError> {
    let (head, parts) = encode(ds)?;
    let mut out = Vec::with_capacity(head.len() + parts.iter().map(|p| p.3.len()).sum::<usize>());
    out.extend_from_slice(&head);
    for (_, _, _, bytes) in parts {
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// The length prefix and header, and the tensors' bytes in file order.
fn encode(ds: &Dataset) -> Result<(Vec<u8>, Vec<Part<'_>>), DataError> {
    ds.validate()?;
    if ds.metadata.contains_key(NAME_KEY) {
        return Err(DataError::Invalid {
            name: ds.name.clone(),
            message: format!("metadata must not contain `{NAME_KEY}` (it is the `name` field)"),
        });
    }
    let mut parts: Vec<Part<'_>> = Vec::new();
    if let Some(labels) = &ds.labels {
        let bytes = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        parts.push((LABELS, "U32", vec![labels.len()], Cow::Owned(bytes)));
    }
    match &ds.samples {
        Samples::Images { pixels, shape } => {
            parts.push((IMAGES, "U8", shape.to_vec(), Cow::Borrowed(pixels)));
        }
        Samples::Points { coords, shape } => {
            let bytes = coords.iter().flat_map(|v| v.to_le_bytes()).collect();
            parts.push((POINTS, "F32", shape.to_vec(), Cow::Owned(bytes)));
        }
    }
    let mut meta = serde_json::Map::new();
    let mut all: BTreeMap<&str, &str> = ds
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.insert(NAME_KEY, &ds.name);
    for (k, v) in all {
        meta.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".to_string(), serde_json::Value::Object(meta));
    let mut entries: Vec<(&str, serde_json::Value)> = Vec::new();
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in &parts {
        let end = offset + bytes.len();
        entries.push((
            name,
            serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [offset, end] }),
        ));
        offset = end;
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, v) in entries {
        header.insert(name.to_string(), v);
    }
    let mut header =
        serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| DataError::Invalid {
            name: ds.name.clone(),
            message: e.to_string(),
        })?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut head = Vec::with_capacity(8 + header.len());
    head.extend((header.len() as u64).to_le_bytes());
    head.extend(header);
    Ok((head, parts))
}

/// Writes a prepared dataset atomically (temp file in the same directory, fsync, rename).
///
/// The pixels are streamed to the file from the dataset's own buffer, never copied into a
/// second in-memory file image.
pub fn save(path: &Path, ds: &Dataset) -> Result<(), DataError> {
    let (head, parts) = encode(ds)?;
    fsutil::write_atomic_with(path, |w| {
        w.write_all(&head)?;
        for (_, _, _, bytes) in &parts {
            w.write_all(bytes)?;
        }
        Ok(())
    })
    .map_err(|e| DataError::io("write", path, e))
}
