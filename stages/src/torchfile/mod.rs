//! Reading PyTorch files without Python: `.pth` checkpoints (zip or legacy) and TorchScript zips.
//!
//! Three on-disk formats share one pickle vocabulary, so one reader covers them:
//! - **zip** (`torch.save` since 1.6): `<prefix>/data.pkl` plus one raw little-endian file per
//!   storage at `<prefix>/data/<key>`;
//! - **TorchScript** (`torch.jit.save`): the same zip layout, where `data.pkl` is a tree of
//!   module objects whose `BUILD` states hold the parameters and the int attributes (stride,
//!   padding) we read as well;
//! - **legacy** (`torch.save` before 1.6, `_use_new_zipfile_serialization=False`): back-to-back
//!   pickles (magic number, protocol 1001, sys info, the object, the storage key list), then each
//!   storage as an 8-byte element count and its raw bytes, in key-list order.
//!
//! The object tree is flattened into dotted names the way `state_dict()` names things
//! (`layers.mixed_9.tower_conv.weight`), so callers never walk pickles. Nothing in a pickle is
//! executed (see [`pickle`]); only the tensor-storage subset is understood, and anything else is
//! an error naming the opcode rather than a silent guess. Tensors are read as f32 whatever their
//! stored float type, honouring offset and strides, because every consumer here wants f32.
//!
//! Why not candle's `candle_core::pickle` (0.11), which also reads `.pth` files: it reads the
//! zip format only, and there only a flat dict of tensors (at most one `__torch__.Module`
//! level deep), so it cannot read the two files the FID weights come as: fid-helper's
//! TorchScript archive (the pipeline's `fid-inception` fetch), whose parameters sit in nested
//! module objects beside the int attributes (stride, padding) that the conversion checks, and
//! pytorch-fid's weights saved in the legacy (pre-1.6) stream. It also prints the entries it
//! skips to stderr, where this crate's library code never prints. All three formats share one
//! pickle vocabulary here ([`pickle`]), so handing the zip case to candle would add a second
//! reader without removing this one.

pub mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use pickle::{unpickle, TensorRef, Value};

/// Why a PyTorch file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error(transparent)]
    Io(#[from] repro_engine::fsutil::FsError),
    #[error("`{path}` is not a PyTorch file this reader understands: {message}")]
    Format { path: PathBuf, message: String },
    #[error("malformed pickle: {0}")]
    Pickle(String),
    #[error("tensor `{name}`: {message}")]
    Tensor { name: String, message: String },
}

/// One named item of a flattened PyTorch file.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Tensor(TensorRef),
    Int(i64),
    Ints(Vec<i64>),
}

/// Which of the three formats a file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchFormat {
    /// A `torch.save` zip whose root is a state dict (or any non-TorchScript object).
    Zip,
    /// A `torch.jit.save` archive (has `code/` and `constants.pkl`).
    TorchScript,
    /// Pre-1.6 `torch.save` stream.
    Legacy,
}

/// A PyTorch file, opened and flattened; storages are kept in memory.
pub struct TorchFile {
    pub format: TorchFormat,
    /// In the order the pickle lists them.
    pub entries: Vec<(String, Entry)>,
    storages: HashMap<String, Vec<u8>>,
}

const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

impl TorchFile {
    /// Opens `path`, detecting the format from its first bytes.
    pub fn open(path: &Path) -> Result<Self, TorchFileError> {
        let bytes = std::fs::read(path).map_err(repro_engine::fsutil::fs_err("read", path))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses an in-memory file; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, TorchFileError> {
        let format_err = |message: String| TorchFileError::Format {
            path: path.to_path_buf(),
            message,
        };
        if bytes.starts_with(b"PK\x03\x04") {
            read_zip(bytes).map_err(|e| match e {
                ZipOrPickle::Zip(m) => format_err(m),
                ZipOrPickle::Other(e) => e,
            })
        } else if bytes.starts_with(&[0x80, 0x02]) {
            read_legacy(bytes).map_err(|e| match e {
                ZipOrPickle::Zip(m) => format_err(m),
                ZipOrPickle::Other(e) => e,
            })
        } else {
            Err(format_err(
                "neither a zip archive nor a legacy pickle stream".into(),
            ))
        }
    }

    /// The tensor entries, by name.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &TensorRef)> {
        self.entries.iter().filter_map(|(n, e)| match e {
            Entry::Tensor(t) => Some((n.as_str(), t)),
            _ => None,
        })
    }

    /// The entry called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// The tensor's elements as f32, in row-major order of its shape.
    pub fn read_f32(&self, name: &str, t: &TensorRef) -> Result<Vec<f32>, TorchFileError> {
        let terr = |message: String| TorchFileError::Tensor {
            name: name.to_string(),
            message,
        };
        let raw = self
            .storages
            .get(&t.key)
            .ok_or_else(|| terr(format!("storage `{}` is missing from the file", t.key)))?;
        let (size, decode): (usize, fn(&[u8]) -> f32) = match t.storage_type.as_str() {
            "FloatStorage" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            "DoubleStorage" => (8, |b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }),
            "HalfStorage" => (2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            "BFloat16Storage" => (2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            other => return Err(terr(format!("storage type `{other}` is not a float type"))),
        };
        if raw.len() < t.storage_numel * size {
            return Err(terr(format!(
                "storage `{}` has {} bytes, the pickle says {} elements",
                t.key,
                raw.len(),
                t.storage_numel
            )));
        }
        let numel: usize = t.shape.iter().product();
        let mut out = Vec::with_capacity(numel);
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            if off >= t.storage_numel {
                return Err(terr("a view reaches past the end of its storage".into()));
            }
            out.push(decode(&raw[off * size..(off + 1) * size]));
            // Row-major increment of the multi-index.
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}

enum ZipOrPickle {
    Zip(String),
    Other(TorchFileError),
}

impl From<TorchFileError> for ZipOrPickle {
    fn from(e: TorchFileError) -> Self {
        ZipOrPickle::Other(e)
    }
}

fn read_zip(bytes: &[u8]) -> Result<TorchFile, ZipOrPickle> {
    let zerr = |e: zip::result::ZipError| ZipOrPickle::Zip(e.to_string());
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zerr)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or_else(|| ZipOrPickle::Zip("no `data.pkl` in the archive".into()))?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
    let is_script = names.iter().any(|n| *n == format!("{prefix}constants.pkl"))
        || names
            .iter()
            .any(|n| n.starts_with(&format!("{prefix}code/")));
    let mut read = |name: &str| -> Result<Vec<u8>, ZipOrPickle> {
        let mut f = zip.by_name(name).map_err(zerr)?;
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| ZipOrPickle::Zip(e.to_string()))?;
        Ok(buf)
    };
    let (root, _) = unpickle(&read(pkl)?)?;
    let mut entries = Vec::new();
    flatten(&root, "", &mut entries);
    let mut storages = HashMap::new();
    for (_, e) in &entries {
        if let Entry::Tensor(t) = e {
            if !storages.contains_key(&t.key) {
                let data = read(&format!("{prefix}data/{}", t.key))?;
                storages.insert(t.key.clone(), data);
            }
        }
    }
    let format = if is_script {
        TorchFormat::TorchScript
    } else {
        TorchFormat::Zip
    };
    Ok(TorchFile {
        format,
        entries,
        storages,
    })
}

fn read_legacy(bytes: &[u8]) -> Result<TorchFile, ZipOrPickle> {
    let mut pos = 0;
    let next = |pos: &mut usize| -> Result<Value, ZipOrPickle> {
        let (v, used) = unpickle(&bytes[*pos..])?;
        *pos += used;
        Ok(v)
    };
    if next(&mut pos)? != Value::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err(ZipOrPickle::Zip("no legacy torch.save magic number".into()));
    }
    if next(&mut pos)? != Value::Int(1001) {
        return Err(ZipOrPickle::Zip("unknown legacy protocol version".into()));
    }
    let _sys_info = next(&mut pos)?;
    let root = next(&mut pos)?;
    let keys = match next(&mut pos)? {
        Value::List(k) => k,
        _ => {
            return Err(ZipOrPickle::Zip(
                "the storage key list is not a list".into(),
            ))
        }
    };
    let mut entries = Vec::new();
    flatten(&root, "", &mut entries);
    let mut sizes: HashMap<String, usize> = HashMap::new();
    for (_, e) in &entries {
        if let Entry::Tensor(t) = e {
            sizes.insert(t.key.clone(), element_size(&t.storage_type));
        }
    }
    let mut storages = HashMap::new();
    for k in keys {
        let key = k
            .as_str()
            .ok_or_else(|| ZipOrPickle::Zip("a storage key is not a string".into()))?;
        let head = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| ZipOrPickle::Zip(format!("storage `{key}` is truncated")))?;
        let numel = u64::from_le_bytes(head.try_into().unwrap_or([0; 8])) as usize;
        pos += 8;
        let len = numel * sizes.get(key).copied().unwrap_or(4);
        let data = bytes
            .get(pos..pos + len)
            .ok_or_else(|| ZipOrPickle::Zip(format!("storage `{key}` is truncated")))?;
        pos += len;
        storages.insert(key.to_string(), data.to_vec());
    }
    Ok(TorchFile {
        format: TorchFormat::Legacy,
        entries,
        storages,
    })
}

fn element_size(storage_type: &str) -> usize {
    match storage_type {
        "DoubleStorage" | "LongStorage" => 8,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "ByteStorage" | "CharStorage" | "BoolStorage" => 1,
        _ => 4,
    }
}

/// Walks dicts and module states, naming leaves by their dotted path.
fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, Entry)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Dict(items) => {
            for (k, v) in items {
                if let Some(k) = k.as_str() {
                    flatten(v, &join(k), out);
                }
            }
        }
        Value::Object {
            state: Some(state), ..
        } => flatten(state, prefix, out),
        Value::Tensor(t) => out.push((prefix.to_string(), Entry::Tensor(t.clone()))),
        Value::Int(i) => out.push((prefix.to_string(), Entry::Int(*i))),
        Value::List(items) | Value::Tuple(items) => {
            let ints: Option<Vec<i64>> = items.iter().map(Value::as_int).collect();
            if let Some(ints) = ints.filter(|i| !i.is_empty()) {
                out.push((prefix.to_string(), Entry::Ints(ints)));
            }
        }
        _ => {}
    }
}
