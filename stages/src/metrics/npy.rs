//! NumPy `.npy` arrays and `.npz` archives, the subset FID statistics and KID features need.
//!
//! Written: format version 1.0, little-endian f64 (`<f8`) or f32 (`<f4`, for feature matrices),
//! C order, members stored uncompressed (what `np.savez` writes), the header padded to 64 bytes
//! as NumPy does. Read: `<f8` and `<f4` (converted to f64), C order only, members stored or
//! deflated (so `np.savez_compressed` files load too); a reader may ask for some members only,
//! so a large one it does not need is never inflated. Anything else is an error naming the
//! member, never a silent reinterpretation.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use super::MetricsError;

/// A dense f64 array.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// An array to write, borrowed: f64 or f32 values in C order.
#[derive(Debug, Clone, Copy)]
pub enum NpyRef<'a> {
    /// Written as `<f8`.
    F64 { shape: &'a [usize], data: &'a [f64] },
    /// Written as `<f4`.
    F32 { shape: &'a [usize], data: &'a [f32] },
}

impl NpyArray {
    /// The array as a member to write (`<f8`).
    pub fn as_npy_ref(&self) -> NpyRef<'_> {
        NpyRef::F64 {
            shape: &self.shape,
            data: &self.data,
        }
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Serializes `a` as a version 1.0 `.npy` file.
pub fn to_npy(a: &NpyArray) -> Vec<u8> {
    npy_bytes(a.as_npy_ref())
}

/// Serializes `a` as a version 1.0 `.npy` file, `<f8` or `<f4` by its variant.
pub fn npy_bytes(a: NpyRef<'_>) -> Vec<u8> {
    let (descr, shape, width) = match a {
        NpyRef::F64 { shape, data } => ("<f8", shape, data.len() * 8),
        NpyRef::F32 { shape, data } => ("<f4", shape, data.len() * 4),
    };
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + width);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match a {
        NpyRef::F64 { data, .. } => data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyRef::F32 { data, .. } => data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
    out
}

/// Parses a `.npy` file of `<f8` or `<f4` in C order.
pub fn from_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err("not an .npy array".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!(".npy version {v} is not supported")),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or("truncated .npy header")?;
    let header = String::from_utf8_lossy(header);
    let field = |key: &str| -> Option<String> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') {
            rest.find(')')? + 1
        } else {
            rest.find([',', '}'])?
        };
        Some(rest[..end].trim().to_string())
    };
    let descr = field("descr").ok_or("no `descr` in the .npy header")?;
    if field("fortran_order").as_deref() != Some("False") {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape_s = field("shape").ok_or("no `shape` in the .npy header")?;
    let shape: Vec<usize> = shape_s
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_s}"))
        })
        .collect::<Result<_, _>>()?;
    let numel: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    let data: Vec<f64> = match descr.trim_matches('\'') {
        "<f8" if body.len() >= numel * 8 => body
            .chunks_exact(8)
            .take(numel)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        "<f4" if body.len() >= numel * 4 => body
            .chunks_exact(4)
            .take(numel)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        "<f8" | "<f4" => return Err("truncated .npy data".into()),
        other => return Err(format!("dtype {other} is not supported (need <f8 or <f4)")),
    };
    Ok(NpyArray { shape, data })
}

/// Writes `arrays` as `NAME.npy` members of an npz (atomically), in the order given.
pub fn write_npz(path: &Path, arrays: &[(&str, NpyRef<'_>)]) -> Result<(), MetricsError> {
    let npz_err = |e: String| MetricsError::Npz {
        path: path.to_path_buf(),
        message: e,
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // A fixed timestamp keeps the bytes (and so the file hash) a function of the data.
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    for (name, a) in arrays {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(|e| npz_err(e.to_string()))?;
        zip.write_all(&npy_bytes(*a))
            .map_err(|e| npz_err(e.to_string()))?;
    }
    let bytes = zip
        .finish()
        .map_err(|e| npz_err(e.to_string()))?
        .into_inner();
    super::write_atomic(path, &bytes)
}

/// Reads every `.npy` member of an npz, keyed by name without the extension.
pub fn read_npz(path: &Path) -> Result<HashMap<String, NpyArray>, MetricsError> {
    read_npz_members(path, &|_| true)
}

/// Reads the `.npy` members of an npz whose name (without the extension) `wanted` accepts; the
/// others are neither inflated nor parsed.
pub fn read_npz_members(
    path: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<HashMap<String, NpyArray>, MetricsError> {
    let npz_err = |e: String| MetricsError::Npz {
        path: path.to_path_buf(),
        message: e,
    };
    let file = std::fs::File::open(path).map_err(|e| MetricsError::io("open", path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| npz_err(e.to_string()))?;
    let mut out = HashMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| npz_err(e.to_string()))?;
        let Some(name) = f.name().strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        if !wanted(&name) {
            continue;
        }
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| npz_err(e.to_string()))?;
        let a = from_npy(&buf).map_err(|e| npz_err(format!("member `{name}`: {e}")))?;
        out.insert(name, a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_numpy_header_alignment() {
        let a = NpyArray {
            shape: vec![2, 3],
            data: vec![1.0, -2.5, 3.0, 4.0, 5.0, 6.25],
        };
        let b = to_npy(&a);
        let hlen = usize::from(u16::from_le_bytes([b[8], b[9]]));
        assert_eq!((10 + hlen) % 64, 0);
        assert!(String::from_utf8_lossy(&b[10..10 + hlen]).contains("'shape': (2, 3)"));
        assert_eq!(from_npy(&b).unwrap(), a);
        let v = NpyArray {
            shape: vec![4],
            data: vec![0.0; 4],
        };
        assert!(String::from_utf8_lossy(&to_npy(&v)).contains("(4,)"));
        assert_eq!(from_npy(&to_npy(&v)).unwrap(), v);
    }

    #[test]
    fn f32_members_are_written_as_f4() {
        let data = [0.1f32, -2.5, 3.0e-8, 7.0, 1.0, f32::MAX];
        let b = npy_bytes(NpyRef::F32 {
            shape: &[3, 2],
            data: &data,
        });
        let hlen = usize::from(u16::from_le_bytes([b[8], b[9]]));
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(b.len(), 10 + hlen + 6 * 4);
        assert!(String::from_utf8_lossy(&b[10..10 + hlen]).contains("'descr': '<f4'"));
        let back = from_npy(&b).unwrap();
        assert_eq!(back.shape, vec![3, 2]);
        let narrowed: Vec<f32> = back.data.iter().map(|&v| v as f32).collect();
        assert_eq!(narrowed, data);
    }
}
