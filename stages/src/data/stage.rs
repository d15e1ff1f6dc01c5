//! The data builtins: `fetch`, `prepare` and `synthetic`.
//!
//! ```yaml
//! # A known dataset: default sources and pin from `known::`.
//! - builtin: fetch
//!   with: {name: mnist, out: data/mnist, prepare: mnist-train, prepared: data/mnist_train.safetensors}
//! # Explicit sources (tried in order) and pin.
//! - builtin: fetch
//!   with:
//!     name: toy
//!     sources: [{url: "https://example.org/toy.tar.gz", member: toy}, {path: /mnt/mirror/toy}]
//!     sha256: 0123...
//!     out: data/toy
//! # Raw -> prepared as its own stage; synthetic sets in-process.
//! - builtin: prepare
//!   with: {from: data/mnist, as: stacked-mnist, n: 128000, seed: 0, out: data/stacked.safetensors}
//! # STL-10 at the papers' 48x48: an exact 2x2 box average of the stored 96x96 (`downscale`).
//! - builtin: prepare
//!   with: {from: data/stl10, as: stl10-unlabeled, resize: 48, out: data/stl10.safetensors}
//! - builtin: synthetic
//!   with: {set: ring, n: 100000, seed: 0, out: data/ring.safetensors}
//! ```
//!
//! Params are checked with `deny_unknown_fields`, so a misspelled key fails the stage before any
//! download. The image transforms (`pad`, `resize`) default to "off", and the fingerprint hashes
//! the `with:` map as written, so stages that do not name them keep their hashes. Transfer knobs
//! (`retries`, `timeout_secs`, `backoff_ms`) and the bounds on unpacking an archive
//! (`max_bytes`, default 4 GiB; `max_entries`, 100 000; `max_ratio`, 200; `min_free`, bytes to
//! keep free on the filesystem, default 1 GiB or 5 % of it; see [`super::unpack`]) do not change
//! what is fetched, only how or whether; they still enter the fingerprint as params, which is
//! harmless. An archive that breaks a bound fails the stage with [`DataError::ArchiveLimit`],
//! which names the param to raise.
//!
//! Versions (enter the fingerprint; bump when the output's meaning changes): `fetch` 1,
//! `prepare` 1, `synthetic` 1.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::convert::{convert, ConvertParams};
use super::download::HttpOptions;
use super::fetch::{fetch, FetchSpec, Source};
use super::unpack::Limits;
use super::{known, prepared, synthetic, DataError};
use repro_engine::builtin::{Builtin, Context, Kind, StageError};

/// The `fetch` builtin.
pub const FETCH: &dyn Builtin = &Kind::<FetchParams> {
    kind: "fetch",
    version: 1,
    summary: "fetch a dataset or weights from ordered sources, verified against a sha256 pin",
    run: run_fetch,
};

/// The `prepare` builtin.
pub const PREPARE: &dyn Builtin = &Kind::<PrepareParams> {
    kind: "prepare",
    version: 1,
    summary: "convert a fetched raw dataset into the prepared safetensors format",
    run: run_prepare,
};

/// The `synthetic` builtin.
pub const SYNTHETIC: &dyn Builtin = &Kind::<SyntheticParams> {
    kind: "synthetic",
    version: 1,
    summary: "generate a seeded 2-D Gaussian mixture (ring of 8, grid of 25)",
    run: run_synthetic,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchParams {
    name: String,
    #[serde(default)]
    sources: Option<Vec<Source>>,
    #[serde(default)]
    sha256: Option<String>,
    out: PathBuf,
    #[serde(default)]
    prepare: Option<String>,
    #[serde(default)]
    prepared: Option<PathBuf>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    /// With `prepare:`: zero pixels added on every side of every image.
    #[serde(default)]
    pad: usize,
    /// With `prepare:`: box-downscale every image to this side (before `pad`).
    #[serde(default)]
    resize: Option<usize>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    backoff_ms: Option<u64>,
    /// Bounds on unpacking an archive ([`Limits`]); unset, the defaults.
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    max_entries: Option<u64>,
    #[serde(default)]
    max_ratio: Option<u64>,
    #[serde(default)]
    min_free: Option<u64>,
}

fn params_error(ctx: &Context, message: String) -> StageError {
    StageError::Params {
        kind: ctx.kind().to_string(),
        message,
    }
}

/// A conversion's error as the stage reports it: a parameter the data cannot take
/// ([`DataError::Param`]) is a params error of the stage, anything else a domain error.
fn convert_error(ctx: &Context, e: DataError) -> StageError {
    match e {
        e @ DataError::Param { .. } => params_error(ctx, e.to_string()),
        e => StageError::domain(e),
    }
}

fn run_fetch(ctx: &Context, p: FetchParams) -> Result<(), StageError> {
    let (sources, pin) = match p.sources {
        Some(s) => (s, p.sha256.clone()),
        None => {
            let k = known::lookup(&p.name).ok_or_else(|| {
                params_error(
                    ctx,
                    format!(
                        "`{}` is not a known dataset ({}); give `sources:` and `sha256:`",
                        p.name,
                        known::NAMES.join(", ")
                    ),
                )
            })?;
            (k.sources, p.sha256.clone().or(k.sha256.map(str::to_string)))
        }
    };
    if p.prepare.is_some() != p.prepared.is_some() {
        return Err(params_error(
            ctx,
            "`prepare:` (a converter) and `prepared:` (its output file) go together".into(),
        ));
    }
    if p.prepare.is_none() && (p.resize.is_some() || p.pad > 0) {
        return Err(params_error(
            ctx,
            "`resize:` and `pad:` transform the prepared images; give `prepare:` and `prepared:` too"
                .into(),
        ));
    }
    let mut http = HttpOptions::default();
    if let Some(r) = p.retries {
        http.retries = r;
    }
    if let Some(t) = p.timeout_secs {
        http.timeout = Duration::from_secs(t);
    }
    if let Some(b) = p.backoff_ms {
        http.backoff = Duration::from_millis(b);
    }
    let defaults = Limits::default();
    let limits = Limits {
        max_bytes: p.max_bytes.unwrap_or(defaults.max_bytes),
        max_entries: p.max_entries.unwrap_or(defaults.max_entries),
        max_ratio: p.max_ratio.unwrap_or(defaults.max_ratio),
        min_free: p.min_free.or(defaults.min_free),
    };
    let spec = FetchSpec {
        name: p.name.clone(),
        sources,
        sha256: pin,
        out: p.out.clone(),
        http,
        limits,
    };
    let report = |done: u64, total: u64, msg: &str| ctx.progress(done, total, msg);
    fetch(&spec, &report).map_err(StageError::domain)?;
    if let (Some(conv), Some(dest)) = (p.prepare, p.prepared) {
        ctx.progress(
            0,
            0,
            &format!("{}: preparing `{}` with `{conv}`", p.name, dest.display()),
        );
        let ds = convert(
            &conv,
            &p.out,
            &ConvertParams {
                n: p.n,
                seed: p.seed,
                pad: p.pad,
                resize: p.resize,
            },
        )
        .map_err(|e| convert_error(ctx, e))?;
        prepared::save(&dest, &ds).map_err(StageError::domain)?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareParams {
    from: PathBuf,
    #[serde(rename = "as")]
    converter: String,
    out: PathBuf,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    /// Zero pixels added on every side of every image.
    #[serde(default)]
    pad: usize,
    /// Box-downscale every image to `resize x resize` (an integer factor; before `pad`).
    #[serde(default)]
    resize: Option<usize>,
}

fn run_prepare(ctx: &Context, p: PrepareParams) -> Result<(), StageError> {
    ctx.progress(
        0,
        1,
        &format!(
            "preparing `{}` from `{}` with `{}`",
            p.out.display(),
            p.from.display(),
            p.converter
        ),
    );
    let ds = convert(
        &p.converter,
        &p.from,
        &ConvertParams {
            n: p.n,
            seed: p.seed,
            pad: p.pad,
            resize: p.resize,
        },
    )
    .map_err(|e| match e {
        DataError::Unknown(m) => params_error(ctx, m),
        e => convert_error(ctx, e),
    })?;
    prepared::save(&p.out, &ds).map_err(StageError::domain)?;
    ctx.progress(1, 1, &format!("prepared {} samples", ds.len()));
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyntheticParams {
    set: String,
    n: usize,
    seed: u64,
    out: PathBuf,
}

fn run_synthetic(ctx: &Context, p: SyntheticParams) -> Result<(), StageError> {
    let ds = synthetic::by_name(&p.set, p.n, p.seed).ok_or_else(|| {
        params_error(
            ctx,
            format!("unknown synthetic set `{}`; use `ring` or `grid`", p.set),
        )
    })?;
    prepared::save(&p.out, &ds).map_err(StageError::domain)?;
    ctx.progress(1, 1, &format!("{}: {} points", p.set, p.n));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prepared::Samples;

    fn stl_fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/stl")
    }

    fn run_prepare_with(params: serde_json::Value) -> Result<(), StageError> {
        PREPARE.run(&Context::new(
            "prepare",
            params.as_object().cloned().unwrap_or_default(),
        ))
    }

    #[test]
    fn prepare_takes_resize_and_still_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stl10.safetensors");
        run_prepare_with(serde_json::json!({
            "from": stl_fixture(), "as": "stl10-train", "resize": 48, "out": out
        }))
        .unwrap();
        let ds = prepared::load(&out).unwrap();
        assert!(matches!(
            ds.samples,
            Samples::Images {
                shape: [2, 3, 48, 48],
                ..
            }
        ));

        let err = run_prepare_with(serde_json::json!({
            "from": stl_fixture(), "as": "stl10-train", "resize": 40, "out": out
        }))
        .unwrap_err();
        assert!(
            err.is_params() && err.to_string().contains("`resize: 40`"),
            "{err}"
        );
        let err = run_prepare_with(serde_json::json!({
            "from": stl_fixture(), "as": "stl10-train", "resise": 48, "out": out
        }))
        .unwrap_err();
        assert!(
            err.is_params() && err.to_string().contains("resise"),
            "{err}"
        );
    }

    #[test]
    fn fetch_takes_resize_and_still_refuses_unknown_keys() {
        let ok: FetchParams = serde_json::from_value(serde_json::json!({
            "name": "stl10", "out": "data/stl10", "prepare": "stl10-unlabeled",
            "prepared": "data/stl10.safetensors", "resize": 48
        }))
        .unwrap();
        assert_eq!(ok.resize, Some(48));
        let absent: FetchParams =
            serde_json::from_value(serde_json::json!({"name": "mnist", "out": "data/mnist"}))
                .unwrap();
        assert_eq!(absent.resize, None);
        let err = serde_json::from_value::<FetchParams>(serde_json::json!({
            "name": "stl10", "out": "data/stl10", "size": 48
        }))
        .unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
    }

    #[test]
    fn fetch_refuses_resize_without_a_converter() {
        let params = serde_json::json!({"name": "stl10", "out": "data/stl10", "resize": 48});
        let err = FETCH
            .run(&Context::new(
                "fetch",
                params.as_object().cloned().unwrap_or_default(),
            ))
            .unwrap_err();
        assert!(
            err.is_params() && err.to_string().contains("`prepare:`"),
            "{err}"
        );
    }
}
