//! What the report reads: one [`Run`] per training run, with its params, its final and per-
//! iteration metrics, its spectral-collapse verdict, and where its spectra and sample grids are.
//!
//! Everything here is read leniently on purpose. A run whose `metrics.json` or `spectral.json`
//! is absent or unreadable is still a run: the gap is kept as a [`Missing`] entry that the
//! Markdown lists, so a report never looks complete when it is not. Only a run without
//! `params.json` cannot be placed in any setting; in the `runs_root` form such a directory is
//! not a run at all, and in the explicit `runs:` form it is an error.
//!
//! What must never change silently:
//! - the method labels ([`Method::label`]): they are the column values users grep the CSV for;
//! - which params define a *setting* ([`NEVER_SETTING`], [`ALWAYS_SETTING`]): everything that
//!   varies between runs except the seed and the method, so two runs that differ in anything
//!   else are never averaged together;
//! - which metrics row counts as "final" (the `final` row, else the highest iteration).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ReportError;
use repro_engine::fsutil::fs_err;

/// Params keys that never define a setting: the seed and the method (they are what a setting
/// compares), and keys that change where or how often things are written, not what is trained.
pub const NEVER_SETTING: &[&str] = &[
    "seed",
    "sn",
    "sr",
    "out",
    "device",
    "log_every",
    "spectra_every",
    "checkpoint_every",
    "sample_every",
    "eval_samples",
    "stop_after",
];

/// Params keys (or key prefixes before a `.`) that are always part of the setting's label, even
/// when every run shares them, because a reader needs them to know what was trained.
pub const ALWAYS_SETTING: &[&str] = &["dataset", "model", "batch_size"];

/// How the discriminator was regularized, from `sn` and `sr` in `params.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// `sn: true`, `sr: none`.
    Sn,
    /// `sr: {mode: static, i}`.
    SrStatic(Option<f64>),
    /// `sr: {mode: dynamic}`.
    SrDynamic,
    /// `sr: {mode: graph, i}`.
    SrGraph(Option<f64>),
    /// `sn: false`, `sr: none`.
    None,
    /// Anything else (an SR mode without SN, an unknown mode), labelled as given.
    Other(String),
}

impl Method {
    /// Reads the method from a run's params (`sn` defaults to true, as in `train-gan`).
    pub fn from_params(params: &Value) -> Method {
        let sn = params.get("sn").and_then(Value::as_bool).unwrap_or(true);
        let sr = params.get("sr");
        let mode = match sr {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "none" => None,
            Some(Value::String(s)) => Some((s.clone(), None)),
            Some(Value::Object(m)) => {
                let mode = m.get("mode").and_then(Value::as_str).unwrap_or("?");
                (mode != "none").then(|| (mode.to_string(), m.get("i").and_then(Value::as_f64)))
            }
            Some(other) => Some((other.to_string(), None)),
        };
        match (sn, mode) {
            (true, None) => Method::Sn,
            (false, None) => Method::None,
            (true, Some((m, i))) if m == "static" => Method::SrStatic(i),
            (true, Some((m, _))) if m == "dynamic" => Method::SrDynamic,
            (true, Some((m, i))) if m == "graph" => Method::SrGraph(i),
            (sn, Some((m, i))) => {
                let i = i
                    .map(|i| format!(" ({})", fmt_param(i)))
                    .unwrap_or_default();
                let sn = if sn { "" } else { ", no SN" };
                Method::Other(format!("SR {m}{i}{sn}"))
            }
        }
    }

    /// The label used in every table: `SN`, `SR static (0.5)`, `SR dynamic`, `SR graph (0.5)`,
    /// `none`.
    pub fn label(&self) -> String {
        let with_i = |name: &str, i: &Option<f64>| match i {
            Some(i) => format!("SR {name} ({})", fmt_param(*i)),
            None => format!("SR {name}"),
        };
        match self {
            Method::Sn => "SN".to_string(),
            Method::SrStatic(i) => with_i("static", i),
            Method::SrDynamic => "SR dynamic".to_string(),
            Method::SrGraph(i) => with_i("graph", i),
            Method::None => "none".to_string(),
            Method::Other(s) => s.clone(),
        }
    }

    /// Table order: SN first (the baseline), then the SR modes, then the rest.
    pub fn rank(&self) -> u32 {
        match self {
            Method::Sn => 0,
            Method::SrStatic(_) => 1,
            Method::SrDynamic => 2,
            Method::SrGraph(_) => 3,
            Method::None => 4,
            Method::Other(_) => 5,
        }
    }

    /// Whether this is one of the spectral-regularization methods compared against SN.
    pub fn is_sr(&self) -> bool {
        matches!(
            self,
            Method::SrStatic(_) | Method::SrDynamic | Method::SrGraph(_)
        ) || matches!(self, Method::Other(s) if s.starts_with("SR "))
    }
}

/// A param value as written in labels: shortest round-trip form (`0.5`, `128`).
pub fn fmt_param(x: f64) -> String {
    format!("{x}")
}

/// The scalar metrics the report knows, in table order: (column name, heading).
pub const METRICS: &[(&str, &str)] = &[
    ("fid", "FID"),
    ("kid", "KID"),
    ("is", "IS"),
    ("modes", "modes"),
    ("modes_total", "modes total"),
    ("hq_share", "high-quality share"),
    ("reverse_kl", "reverse KL"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("density", "density"),
    ("coverage", "coverage"),
    ("share_above", "σ share above threshold"),
    ("auc", "spectrum AUC"),
    ("effective_rank", "effective rank"),
];

/// The metrics that come from `spectral.json` (the last logged value of the report's layer),
/// not from `metrics.json`.
pub const SPECTRAL_SUMMARIES: &[&str] = &["share_above", "auc", "effective_rank"];

/// One row of `metrics.json`, reduced to the scalars in [`METRICS`] (absent or null = `None`).
#[derive(Debug, Clone)]
pub struct MetricRow {
    pub label: String,
    pub iteration: Option<u64>,
    pub values: BTreeMap<&'static str, Option<f64>>,
}

/// The spectral verdict of one layer, from `spectral.json`.
#[derive(Debug, Clone)]
pub struct LayerCollapse {
    pub layer: Option<u64>,
    pub name: String,
    pub collapsed: bool,
    pub collapse_iteration: Option<u64>,
    /// How many singular values the layer has (`None` when the file does not say).
    pub rank: Option<u64>,
    /// The last logged value of each summary in [`SPECTRAL_SUMMARIES`] that the file has.
    pub last: BTreeMap<&'static str, f64>,
}

/// An input of a run that the report could not use.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    /// The run's name.
    pub run: String,
    /// `metrics`, `spectral`, `spectra`, `samples`.
    pub what: &'static str,
    /// The path as the params name it (never made absolute, so reports do not depend on where
    /// the workspace lives).
    pub path: String,
    /// `missing`, or `unreadable: ...`.
    pub reason: String,
}

/// One training run and everything the report knows about it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run directory's name.
    pub name: String,
    /// The run directory, as given (relative to the stage's directory).
    pub dir: PathBuf,
    pub method: Method,
    pub seed: Option<u64>,
    /// `params.json` flattened to dotted keys, values as compact text (`dataset` as its file
    /// stem, the label tables show).
    pub params: BTreeMap<String, String>,
    /// The training set's path as `params.json` gives it (relative to the stage's directory).
    pub dataset: Option<PathBuf>,
    /// The rows of `metrics.json`, in file order; empty when missing.
    pub metrics: Vec<MetricRow>,
    /// Per layer; `None` when `spectral.json` is missing or unreadable.
    pub spectral: Option<Vec<LayerCollapse>>,
}

impl Run {
    /// The row the tables use: the `final` row, else the one with the highest iteration.
    pub fn final_metrics(&self) -> Option<&MetricRow> {
        self.metrics
            .iter()
            .find(|r| r.label == "final")
            .or_else(|| self.metrics.iter().max_by_key(|r| r.iteration))
    }

    /// Whether any layer collapsed, and the earliest collapse with its layer name.
    pub fn collapse(&self) -> Option<(bool, Option<(u64, String)>)> {
        let layers = self.spectral.as_ref()?;
        let collapsed = layers.iter().any(|l| l.collapsed);
        let first = layers
            .iter()
            .filter(|l| l.collapsed)
            .filter_map(|l| l.collapse_iteration.map(|it| (it, l.name.clone())))
            .min();
        Some((collapsed, first))
    }

    /// The final value of one metric: a spectral summary of `layer` ([`default_layer`] when
    /// `None`) from `spectral.json`, else the final `metrics.json` row's value.
    pub fn final_value(&self, metric: &str, layer: Option<u64>) -> Option<f64> {
        if SPECTRAL_SUMMARIES.contains(&metric) {
            let layers = self.spectral.as_ref()?;
            let chosen = match layer {
                Some(l) => layers.iter().find(|x| x.layer == Some(l)),
                None => default_layer(layers.iter().map(|x| (x.layer, x.rank.unwrap_or(2))))
                    .and_then(|l| layers.iter().find(|x| x.layer == l)),
            }?;
            return chosen.last.get(metric).copied();
        }
        self.final_metrics()?.values.get(metric).copied().flatten()
    }
}

/// The layer summarized and drawn when the params name none: the highest-numbered layer with
/// at least two singular values, else the highest. A weight with one row (the final dense layer
/// to one logit) has the single normalized singular value 1 at every step: no spectrum to show.
pub fn default_layer<L: Ord + Copy>(layers: impl Iterator<Item = (L, u64)>) -> Option<L> {
    let all: Vec<(L, u64)> = layers.collect();
    all.iter()
        .filter(|(_, rank)| *rank >= 2)
        .map(|(l, _)| *l)
        .max()
        .or_else(|| all.iter().map(|(l, _)| *l).max())
}

/// Where one run's pieces are, before reading.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub name: String,
    pub run: PathBuf,
    pub eval: Option<PathBuf>,
    pub spectral: Option<PathBuf>,
}

/// The run directories under `runs_root`, found by listing it.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Every directory with a `params.json` (that the pipeline makes, when it is known), sorted
    /// by name, joined by name with `evals_root/<name>/metrics.json` and
    /// `spectral_root/<name>/spectral.json`.
    pub runs: Vec<RunPaths>,
    /// Directories with a `params.json` that no stage of the pipeline makes: a pilot's run, a
    /// run of a grid since changed. Never counted; the report names them.
    pub left_out: Vec<String>,
}

/// Lists `runs_root`. With `made` (every out of the pipeline's stages, workspace-relative), a
/// directory is a run only if it is one of them: the folder also holds whatever earlier
/// pipelines left there, and a run the current pipeline did not make must not count as a seed.
pub fn discover(
    base: &Path,
    runs_root: &Path,
    evals_root: Option<&Path>,
    spectral_root: Option<&Path>,
    made: Option<&BTreeSet<PathBuf>>,
) -> Result<Discovered, ReportError> {
    let dir = base.join(runs_root);
    let entries = std::fs::read_dir(&dir).map_err(fs_err("list runs in", runs_root))?;
    let mut names = Vec::new();
    let mut left_out = Vec::new();
    // The outs are in the engine's canonical form; `runs_root` may be written `./runs/`. A root
    // outside the workspace is no stage's out, so nothing under it is made by the pipeline.
    let made_root = runs_root
        .to_str()
        .and_then(repro_engine::spec::canonical_path)
        .map(PathBuf::from);
    for entry in entries {
        let entry = entry.map_err(fs_err("list runs in", runs_root))?;
        if !entry.path().join("params.json").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        match made {
            Some(outs)
                if !made_root
                    .as_ref()
                    .is_some_and(|root| outs.contains(&root.join(&name))) =>
            {
                left_out.push(name)
            }
            _ => names.push(name),
        }
    }
    names.sort();
    left_out.sort();
    let runs = names
        .into_iter()
        .map(|name| RunPaths {
            run: runs_root.join(&name),
            eval: evals_root.map(|r| r.join(&name).join("metrics.json")),
            spectral: spectral_root.map(|r| r.join(&name).join("spectral.json")),
            name,
        })
        .collect();
    Ok(Discovered { runs, left_out })
}

/// Every out of every stage in `pipeline`, a `repro dag --json` file: what the pipeline makes.
pub fn pipeline_outs(base: &Path, pipeline: &Path) -> Result<BTreeSet<PathBuf>, ReportError> {
    let bad = |message: String| ReportError::BadInput {
        path: pipeline.to_path_buf(),
        message,
    };
    let value = read_json(base, pipeline).map_err(|e| bad(e.to_string()))?;
    let stages = value
        .get("stages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `stages` list (expected `repro dag --json` output)".into()))?;
    let mut outs = BTreeSet::new();
    for stage in stages {
        let list = stage
            .get("outs")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("a stage without an `outs` list".into()))?;
        for out in list {
            let out = out
                .as_str()
                .ok_or_else(|| bad("an out that is not a string".into()))?;
            outs.insert(PathBuf::from(out));
        }
    }
    Ok(outs)
}

/// Reads one run. `params.json` must exist; the other pieces become [`Missing`] entries.
pub fn load_run(
    base: &Path,
    paths: &RunPaths,
    missing: &mut Vec<Missing>,
) -> Result<Run, ReportError> {
    let params_path = paths.run.join("params.json");
    let params: Value = read_json(base, &params_path).map_err(|e| match e {
        ReadFailure::Missing => ReportError::MissingParams {
            run: paths.name.clone(),
            path: params_path.clone(),
        },
        ReadFailure::Unreadable(message) => ReportError::BadInput {
            path: params_path.clone(),
            message,
        },
    })?;
    let mut flat = flatten_text(&params);
    let dataset = flat.get("dataset").map(PathBuf::from);
    if let Some(ds) = flat.get_mut("dataset") {
        *ds = dataset_label(ds);
    }
    let mut note = |what: &'static str, path: &Path, reason: String| {
        missing.push(Missing {
            run: paths.name.clone(),
            what,
            path: show(path),
            reason,
        })
    };
    let metrics = match &paths.eval {
        None => {
            note(
                "metrics",
                Path::new("-"),
                "missing (no `evals_root` or `eval` given)".into(),
            );
            Vec::new()
        }
        Some(p) => match read_json(base, p).and_then(|v| parse_metrics(&v)) {
            Ok(rows) => rows,
            Err(e) => {
                note("metrics", p, e.to_string());
                Vec::new()
            }
        },
    };
    let spectral = match &paths.spectral {
        None => {
            note(
                "spectral",
                Path::new("-"),
                "missing (no `spectral_root` or `spectral` given)".into(),
            );
            None
        }
        Some(p) => match read_json(base, p).and_then(|v| parse_spectral(&v)) {
            Ok(layers) => Some(layers),
            Err(e) => {
                note("spectral", p, e.to_string());
                None
            }
        },
    };
    Ok(Run {
        name: paths.name.clone(),
        dir: paths.run.clone(),
        method: Method::from_params(&params),
        seed: params.get("seed").and_then(Value::as_u64),
        params: flat,
        dataset,
        metrics,
        spectral,
    })
}

/// Why a JSON input could not be used.
#[derive(Debug)]
enum ReadFailure {
    Missing,
    Unreadable(String),
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Missing => write!(f, "missing"),
            ReadFailure::Unreadable(m) => write!(f, "unreadable: {m}"),
        }
    }
}

fn read_json(base: &Path, path: &Path) -> Result<Value, ReadFailure> {
    let bytes = match std::fs::read(base.join(path)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadFailure::Missing),
        Err(e) => return Err(ReadFailure::Unreadable(e.to_string())),
    };
    serde_json::from_slice(&bytes).map_err(|e| ReadFailure::Unreadable(e.to_string()))
}

/// `data/ring.safetensors` -> `ring`: the dataset is named by its file stem.
fn dataset_label(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// Flattens nested objects to dotted keys ([`repro_engine::metrics::flatten`]); leaves are
/// compact JSON (strings without quotes).
fn flatten_text(v: &Value) -> BTreeMap<String, String> {
    repro_engine::metrics::flatten(v)
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// A number at a JSON pointer, `None` when absent or null (an unavailable metric).
fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

fn parse_metrics(v: &Value) -> Result<Vec<MetricRow>, ReadFailure> {
    let rows = v
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| ReadFailure::Unreadable("no `rows` array".into()))?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let label = r
                .get("label")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("row {k}"));
            let mut values = BTreeMap::new();
            let pick = |a: &str, b: &str| num(r, a).or_else(|| num(r, b));
            values.insert("fid", num(r, "/fid/value"));
            values.insert("kid", num(r, "/kid/value"));
            values.insert("is", num(r, "/inception_score/mean"));
            values.insert(
                "modes",
                pick("/modes/modes_captured", "/stacked_mnist/modes_captured"),
            );
            values.insert(
                "modes_total",
                pick("/modes/modes_total", "/stacked_mnist/modes_total"),
            );
            values.insert("hq_share", num(r, "/modes/high_quality_share"));
            values.insert(
                "reverse_kl",
                pick("/modes/reverse_kl", "/stacked_mnist/reverse_kl"),
            );
            values.insert("precision", num(r, "/prdc/improved/precision"));
            values.insert("recall", num(r, "/prdc/improved/recall"));
            values.insert("density", num(r, "/prdc/prdc/density"));
            values.insert("coverage", num(r, "/prdc/prdc/coverage"));
            MetricRow {
                label,
                iteration: r.get("iteration").and_then(Value::as_u64),
                values,
            }
        })
        .collect())
}

/// Accepts `{"layers": [...]}` or `{"layers": {"name": {...}}}`; each layer has `collapsed`
/// and `collapse_iteration` (null when it never collapsed), and optionally `layer` and `name`.
fn parse_spectral(v: &Value) -> Result<Vec<LayerCollapse>, ReadFailure> {
    let layers: Vec<(String, &Value)> = match v.get("layers") {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(k, l)| (format!("layer_{k}"), l))
            .collect(),
        Some(Value::Object(m)) => m.iter().map(|(k, l)| (k.clone(), l)).collect(),
        _ => return Err(ReadFailure::Unreadable("no `layers` array or map".into())),
    };
    layers
        .into_iter()
        .map(|(fallback, l)| {
            let collapsed = l.get("collapsed").and_then(Value::as_bool).ok_or_else(|| {
                ReadFailure::Unreadable(format!("layer `{fallback}` has no boolean `collapsed`"))
            })?;
            Ok(LayerCollapse {
                layer: l.get("layer").and_then(Value::as_u64),
                name: l
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or(fallback),
                collapsed,
                collapse_iteration: l.get("collapse_iteration").and_then(Value::as_u64),
                rank: l.get("rank").and_then(Value::as_u64),
                last: SPECTRAL_SUMMARIES
                    .iter()
                    .filter_map(|k| {
                        let v = l.get(*k)?.as_array()?.last()?.as_f64()?;
                        Some((*k, v))
                    })
                    .collect(),
            })
        })
        .collect()
}

/// A path for messages and reports: as given, with `/` separators.
pub fn show(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// The settings of a set of runs: one label per run. Runs on different datasets are different
/// settings already, so the params that make a label are chosen per dataset: every param in
/// [`ALWAYS_SETTING`] plus every other param whose value differs between the runs *on that
/// dataset*, except those in [`NEVER_SETTING`]. A param a run does not have is left out of its
/// label (a CNN run has no MLP `hidden`), never shown as a placeholder.
pub fn settings(runs: &[Run]) -> Vec<String> {
    let mut by_dataset: BTreeMap<Option<&String>, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        by_dataset
            .entry(r.params.get("dataset"))
            .or_default()
            .push(r);
    }
    let keys_of: BTreeMap<Option<&String>, Vec<&str>> = by_dataset
        .iter()
        .map(|(ds, group)| (*ds, label_keys(group)))
        .collect();
    runs.iter()
        .map(|r| {
            let keys = &keys_of[&r.params.get("dataset")];
            let mut parts: Vec<String> = Vec::new();
            if let Some(ds) = r.params.get("dataset") {
                parts.push(ds.clone());
            }
            let model: Vec<String> = keys
                .iter()
                .filter_map(|k| k.strip_prefix("model."))
                .filter_map(|k| {
                    let v = r.params.get(&format!("model.{k}"))?;
                    Some(if k == "arch" || k == "kind" {
                        v.clone()
                    } else {
                        format!("{k}={v}")
                    })
                })
                .collect();
            if !model.is_empty() {
                parts.push(model.join(" "));
            }
            if let Some(b) = r.params.get("batch_size") {
                parts.push(format!("batch {b}"));
            }
            for k in keys {
                if *k == "dataset" || *k == "batch_size" || k.starts_with("model.") {
                    continue;
                }
                if let Some(v) = r.params.get(*k) {
                    parts.push(format!("{k}={v}"));
                }
            }
            parts.join(" · ")
        })
        .collect()
}

/// The params that label the settings of `runs` (one dataset's runs; see [`settings`]).
fn label_keys<'r>(runs: &[&'r Run]) -> Vec<&'r str> {
    let all_keys: std::collections::BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.params.keys().map(String::as_str))
        .collect();
    all_keys
        .into_iter()
        .filter(|key| {
            let top = key.split('.').next().unwrap_or(key);
            if NEVER_SETTING.contains(&top) {
                return false;
            }
            let first = runs.first().and_then(|r| r.params.get(*key));
            ALWAYS_SETTING.contains(&top) || runs.iter().any(|r| r.params.get(*key) != first)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layer_skips_one_row_weights() {
        // An MLP D: two hidden layers, then the dense to one logit (one singular value).
        assert_eq!(
            default_layer([(0u64, 2), (1, 64), (2, 1)].into_iter()),
            Some(1)
        );
        assert_eq!(default_layer([(0u64, 1)].into_iter()), Some(0));
        assert_eq!(default_layer(std::iter::empty::<(u64, u64)>()), None);
    }
    use serde_json::json;

    #[test]
    fn methods_are_labelled_from_sn_and_sr() {
        let label = |v: Value| Method::from_params(&v).label();
        assert_eq!(label(json!({"sr": "none"})), "SN");
        assert_eq!(label(json!({})), "SN");
        assert_eq!(label(json!({"sn": false, "sr": "none"})), "none");
        assert_eq!(
            label(json!({"sr": {"mode": "static", "i": 0.5}})),
            "SR static (0.5)"
        );
        assert_eq!(
            label(json!({"sr": {"mode": "dynamic", "every": 5}})),
            "SR dynamic"
        );
        assert_eq!(
            label(json!({"sr": {"mode": "graph", "i": 0.25}})),
            "SR graph (0.25)"
        );
        assert_eq!(
            label(json!({"sn": false, "sr": {"mode": "static", "i": 0.5}})),
            "SR static (0.5), no SN"
        );
        assert!(Method::from_params(&json!({"sr": {"mode": "graph"}})).is_sr());
        assert!(!Method::from_params(&json!({"sn": false})).is_sr());
    }

    fn run(params: Value) -> Run {
        let mut flat = flatten_text(&params);
        if let Some(ds) = flat.get_mut("dataset") {
            *ds = dataset_label(ds);
        }
        Run {
            name: "r".into(),
            dir: PathBuf::from("r"),
            method: Method::from_params(&params),
            seed: params.get("seed").and_then(Value::as_u64),
            params: flat,
            dataset: None,
            metrics: Vec::new(),
            spectral: None,
        }
    }

    #[test]
    fn a_setting_is_what_varies_except_seed_and_method() {
        let base = json!({"dataset": "data/ring.safetensors", "model": {"arch": "mlp", "hidden": 64},
                          "batch_size": 64, "n_dis": 1, "seed": 1, "sr": "none", "out": "a"});
        let mut other_seed = base.clone();
        other_seed["seed"] = json!(2);
        other_seed["sr"] = json!({"mode": "static", "i": 0.5});
        other_seed["out"] = json!("b");
        let mut other_ndis = base.clone();
        other_ndis["n_dis"] = json!(5);
        let s = settings(&[run(base), run(other_seed), run(other_ndis)]);
        assert_eq!(s[0], "ring · mlp hidden=64 · batch 64 · n_dis=1");
        assert_eq!(s[1], s[0]);
        assert_eq!(s[2], "ring · mlp hidden=64 · batch 64 · n_dis=5");
    }
}
