//! The `spectral` builtin: a training run's logged spectra in, the collapse analysis out.
//!
//! Params (`with:`):
//! ```yaml
//! run: runs/sn_c8_32        # a train-gan run directory; its spectra/ is read
//! out: analysis/sn_c8_32    # a directory (gets spectral.json and spectral.csv), or a path
//!                           # ending in .json (the CSV goes beside it, same stem, .csv)
//! layers: [9, block4.c2]    # optional: SR layer numbers or layer names; default every layer
//! threshold: 0.5            # detector thresholds, defaults on `Detector::default`
//! tail: 0.5                 # tail_mean averages the sorted indices >= floor(tail r)
//! drop: 0.5
//! min_drop: 0.05
//! window: 1
//! recover: 0.8
//! from: 1                   # iterations before this are reported, not judged
//! ```
//!
//! The detector decides on `tail_mean` (see [`super::detect`] for why: static SR pins the head,
//! so version 1's `share_above` rule could never flag it). When the run directory has the
//! training stage's `params.json` and its `sr` is static or graph with `i` above `tail`, SR
//! pins part of the tail too and the stage refuses with a params error rather than judge a
//! pinned measure.
//!
//! Version 2 (was 1): the verdict is on `tail_mean` instead of `share_above`, new params `tail`
//! and `from`, `min_drop` now in tail-mean units (default 0.05 instead of 0.15), `tail_mean`
//! added to both outputs.
//!
//! Outputs, both byte-identical for the same spectra and params (no timestamps, no absolute
//! paths, layers by number and iterations ascending, JSON object keys sorted, floats in one
//! fixed format per file):
//! - `spectral.json`: the detector's params, the collapsed layers, and per layer its number,
//!   name, `r`, the logged iterations, each summary (`share_above`, `auc`, `effective_rank`,
//!   `sigma1`, `tail_mean`) as an array over them, `collapse_iteration`
//!   (or null) and the `collapsed` verdict. Floats are serde_json's shortest round-trip form, so
//!   a reader gets the exact f64.
//! - `spectral.csv`: the long table
//!   `layer,iteration,share_above,auc,effective_rank,sigma1,tail_mean` for the report, floats
//!   with 6 decimals (the new column last, so readers by position keep working).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::detect::Detector;
use super::history::{read_history, LayerHistory};
use super::SpectralError;
use repro_engine::builtin::{Builtin, Context, Kind, StageError};

/// The registry entry.
pub const BUILTIN: &dyn Builtin = &Kind::<Params> {
    kind: "spectral",
    version: 2,
    summary: "spectral-collapse summaries and the collapse iteration per layer of a run's spectra/",
    run,
};

/// The header of `spectral.csv`.
pub const CSV_HEADER: &str = "layer,iteration,share_above,auc,effective_rank,sigma1,tail_mean";

/// A layer picked by the SR paper's number or by its name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum LayerRef {
    Number(u32),
    Name(String),
}

impl LayerRef {
    fn matches(&self, h: &LayerHistory) -> bool {
        match self {
            LayerRef::Number(n) => h.layer == *n,
            LayerRef::Name(name) => h.name == *name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    run: PathBuf,
    out: PathBuf,
    #[serde(default)]
    layers: Option<Vec<LayerRef>>,
    threshold: Option<f64>,
    tail: Option<f64>,
    drop: Option<f64>,
    min_drop: Option<f64>,
    window: Option<usize>,
    recover: Option<f64>,
    from: Option<u64>,
}

impl Params {
    fn detector(&self) -> Detector {
        let d = Detector::default();
        Detector {
            threshold: self.threshold.unwrap_or(d.threshold),
            tail: self.tail.unwrap_or(d.tail),
            drop: self.drop.unwrap_or(d.drop),
            min_drop: self.min_drop.unwrap_or(d.min_drop),
            window: self.window.unwrap_or(d.window),
            recover: self.recover.unwrap_or(d.recover),
            from: self.from.unwrap_or(d.from),
        }
    }

    /// Where `spectral.json` and `spectral.csv` go.
    fn out_paths(&self) -> (PathBuf, PathBuf) {
        if self.out.extension().is_some_and(|e| e == "json") {
            (self.out.clone(), self.out.with_extension("csv"))
        } else {
            (
                self.out.join("spectral.json"),
                self.out.join("spectral.csv"),
            )
        }
    }
}

fn run(ctx: &Context, params: Params) -> Result<(), StageError> {
    let params_error = |message: String| StageError::Params {
        kind: ctx.kind().to_string(),
        message,
    };
    let detector = params.detector();
    detector.check().map_err(params_error)?;
    if let Some(pinned) = run_sr_fraction(&params.run).map_err(StageError::domain)? {
        if pinned.fraction > detector.tail {
            return Err(params_error(format!(
                "`tail` is {} but the run `{}` has {} SR with `sr.i` {}, which pins the top {}% of each spectrum; set `tail` to at least {} so the measure sees only what SR leaves free",
                detector.tail,
                params.run.display(),
                pinned.mode,
                pinned.fraction,
                pinned.fraction * 100.0,
                pinned.fraction
            )));
        }
    }
    let spectra = params.run.join("spectra");
    let all = read_history(
        &spectra,
        detector.threshold,
        detector.tail,
        |done, total| ctx.progress(done as u64, total as u64, "read spectra"),
    )
    .map_err(StageError::domain)?;
    let layers = select(all, params.layers.as_deref()).map_err(params_error)?;
    let (json_path, csv_path) = params.out_paths();
    write_atomic(&json_path, analysis_json(&layers, &detector).as_bytes())?;
    write_atomic(&csv_path, long_csv(&layers).as_bytes())?;
    Ok(())
}

/// The head a run's SR pins: `mode` (static or graph) and the fraction `i` of the rank.
struct PinnedHead {
    mode: &'static str,
    fraction: f64,
}

/// The head that the SR of the run in `run` pins, from the `params.json` the training stage
/// writes there: `None` for no `params.json` (spectra from elsewhere), no `sr`, plain SN, or
/// dynamic SR (which pins every index to its running max, see [`super::detect`]).
fn run_sr_fraction(run: &Path) -> Result<Option<PinnedHead>, SpectralError> {
    use crate::nn::spectral_reg::SrMode;
    use crate::train::params::SrParam;
    let path = run.join("params.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SpectralError::io("read", &path, e)),
    };
    let bad = |message: String| SpectralError::RunParams {
        path: path.clone(),
        message,
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let Some(sr) = doc.get("sr") else {
        return Ok(None);
    };
    let sr: SrParam = serde_json::from_value(sr.clone()).map_err(|e| bad(format!("`sr`: {e}")))?;
    Ok(match sr.0 {
        SrMode::Static { i, .. } => Some(PinnedHead {
            mode: "static",
            fraction: i,
        }),
        SrMode::Graph { i } => Some(PinnedHead {
            mode: "graph",
            fraction: i,
        }),
        SrMode::None | SrMode::Dynamic { .. } => None,
    })
}

/// The layers `wanted` names (all when `None`), in layer order; an unknown name is an error
/// listing the known ones.
fn select(
    all: Vec<LayerHistory>,
    wanted: Option<&[LayerRef]>,
) -> Result<Vec<LayerHistory>, String> {
    let Some(wanted) = wanted else {
        return Ok(all);
    };
    if let Some(missing) = wanted.iter().find(|w| !all.iter().any(|h| w.matches(h))) {
        let known: Vec<String> = all
            .iter()
            .map(|h| format!("{} (`{}`)", h.layer, h.name))
            .collect();
        let what = match missing {
            LayerRef::Number(n) => format!("layer {n}"),
            LayerRef::Name(name) => format!("layer `{name}`"),
        };
        return Err(format!(
            "`layers`: {what} is not in the run's spectra; the run has {}",
            known.join(", ")
        ));
    }
    Ok(all
        .into_iter()
        .filter(|h| wanted.iter().any(|w| w.matches(h)))
        .collect())
}

/// `spectral.json`'s text (see the module docs).
pub fn analysis_json(layers: &[LayerHistory], detector: &Detector) -> String {
    let points = |h: &LayerHistory| -> Vec<(u64, f64)> {
        h.points.iter().map(|(it, s)| (*it, s.tail_mean)).collect()
    };
    let series = |h: &LayerHistory, f: fn(&super::Summary) -> f64| -> Vec<f64> {
        h.points.iter().map(|(_, s)| f(s)).collect()
    };
    let mut collapsed_layers = Vec::new();
    let mut out_layers = Vec::new();
    for h in layers {
        let found = detector.detect(&points(h));
        if found.collapsed {
            collapsed_layers.push(h.layer);
        }
        out_layers.push(json!({
            "layer": h.layer,
            "name": h.name,
            "rank": h.rank,
            "iterations": h.points.iter().map(|p| p.0).collect::<Vec<_>>(),
            "share_above": series(h, |s| s.share_above),
            "auc": series(h, |s| s.auc),
            "effective_rank": series(h, |s| s.effective_rank),
            "sigma1": series(h, |s| s.sigma1),
            "tail_mean": series(h, |s| s.tail_mean),
            "collapse_iteration": found.collapse_iteration,
            "collapsed": found.collapsed,
        }));
    }
    let doc = json!({
        "detector": {
            "summary": "tail_mean",
            "threshold": detector.threshold,
            "tail": detector.tail,
            "drop": detector.drop,
            "min_drop": detector.min_drop,
            "window": detector.window,
            "recover": detector.recover,
            "from": detector.from,
        },
        "collapsed": !collapsed_layers.is_empty(),
        "collapsed_layers": collapsed_layers,
        "layers": out_layers,
    });
    let mut text = serde_json::to_string_pretty(&repro_engine::fingerprint::canonical(&doc))
        .expect("a JSON value of finite numbers always serializes");
    text.push('\n');
    text
}

/// `spectral.csv`'s text: one row per layer and logged iteration.
pub fn long_csv(layers: &[LayerHistory]) -> String {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for h in layers {
        for (it, s) in &h.points {
            // Writing into a String cannot fail.
            let _ = writeln!(
                text,
                "{},{it},{:.6},{:.6},{:.6},{:.6},{:.6}",
                h.layer, s.share_above, s.auc, s.effective_rank, s.sigma1, s.tail_mean
            );
        }
    }
    text
}

/// Writes through the crate's one atomic writer (temp file, fsync, rename, 0644).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StageError> {
    repro_engine::fsutil::write_atomic(path, bytes).map_err(|e| StageError::io("write", path, e))
}
