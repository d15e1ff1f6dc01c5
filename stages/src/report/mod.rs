//! The `report` builtin: every run's params, metrics and spectral verdict joined into
//! comparison tables (plain Rust, [`tables`]), written as Markdown, a self-contained HTML page
//! and CSV, with figures (plotters, PNG + SVG).
//!
//! # Params (`with:`)
//!
//! ```yaml
//! with:
//!   runs_root: runs            # every subdirectory with a params.json is a run ...
//!   evals_root: evals          # ... joined by name with evals/<name>/metrics.json
//!   spectral_root: spectral    # ... and spectral/<name>/spectral.json
//!   pipeline: meta/pipeline.json  # optional: `repro dag --json` of the pipeline that runs
//!                              # the report; then only the folders under `runs_root` that one
//!                              # of its stages makes are runs (the others are named, not counted)
//!   # or, instead of the three roots, an explicit list:
//!   # runs: [{run: runs/ring-sn-1, eval: evals/ring-sn-1/metrics.json,
//!   #         spectral: spectral/ring-sn-1/spectral.json}, ...]
//!   dag: meta/dag.mmd          # optional: a Mermaid flowchart (`repro dag --mermaid`),
//!                              # copied to `dag.mmd` beside report.md and linked from it
//!   run_records: runs.json     # optional: stage-run records, as `repro runs --json` prints them
//!   classifier: models/classifier.json  # optional: `train-classifier`'s metrics.json; the
//!                              # report states the test accuracy of the Stacked MNIST counter
//!   paper: false               # put the papers' numbers beside ours
//!   spectra_layer: 9           # optional: the layer drawn and summarized (default: the last
//!                              # with two or more singular values)
//!   figures: true              # draw figures (false: tables only)
//!   out: reports               # the report directory
//!   verdict:                   # optional: the verdict's thresholds and baseline gate
//!     baseline: {model.d_hidden: 128}  # the control's setting; without it, no gate
//!     min_modes: 7             # defaults: the ring of 8's (see `verdict.rs`)
//!     min_hq: 0.5
//!     gate_share: "2/3"
//!     lag: 500
//! ```
//!
//! # Outputs (under `out`)
//!
//! `report.md` (the verdict first: the baseline gate, one headline per setting, the verdict and
//! co-occurrence tables; then the details); `report.html` (the same content as one
//! self-contained page for a browser: figures inlined, sortable tables, the verdict first, no
//! external URL; [`html`]); `verdict.json` (the verdict, [`verdict`]);
//! `runs.csv` (one row per run), `summary.csv` (setting x method, mean/std/count per metric,
//! collapse counts), `deltas.csv` (SR minus SN per setting), `stages.csv` (with
//! `run_records`); `dag.mmd` (with `dag`); `figures/spectra/<run>.{png,svg}`,
//! `figures/curves/<setting>-<metric>.{png,svg}`, `figures/samples/<run>.png`,
//! `figures/real/<dataset>.png`.
//!
//! # Changes in version 7
//!
//! - The verdict's means and 95% intervals (`verdict.json`, the headlines) are computed with
//!   the same mean and standard deviation as the tables ([`crate::stats::mean`], Kahan; and
//!   [`crate::stats::sample_std`], Welford) instead of a second, plain sum: some values change
//!   in their last bits (`0.7000000000000001` is now `0.7`). Bumped so reports are made again.
//!
//! # Changes in version 6 (issue 14)
//!
//! - `pipeline`: with it, a run folder under `runs_root` that no stage of the current pipeline
//!   makes (a pilot's runs, a grid since changed) is left out and named in the introduction,
//!   instead of counting as one more seed of its setting. Without it, every folder counts, as
//!   before. The version is bumped so that a report that counted such folders is made again.
//!
//! # Changes in version 5 (issue 17)
//!
//! - `report.html` is a new output. The version, which enters the stage's fingerprint, is
//!   bumped so that a report made by version 4 goes stale and is made again with the page,
//!   instead of staying fresh (or being restored from the run cache) without it. Every other file is unchanged except the version number in
//!   `report.md` and `verdict.json` (`report_version`).
//! - What the report says is built once as a [`page::Page`]; [`markdown`] and [`html`] write
//!   it. `report.md` is byte-for-byte what version 4 wrote (apart from the version number).
//!
//! # Changes in version 3 (issue 14)
//!
//! - The verdict is statistical ([`verdict`]) and written to `verdict.json`. The old rule
//!   (SR "avoided" collapse when SN collapsed in some seed and SR in none, by spectral counts
//!   alone) and its `verdicts.csv` are **removed**: two verdicts that can disagree are worse
//!   than one. The spectral counts stay in the summary table and `summary.csv`.
//! - The Mermaid DAG is no longer inlined in `report.md`; it is `dag.mmd`, linked.
//! - `deltas.csv` keeps its columns, but `<metric>_delta_pct` is now null when either arm has
//!   3 or fewer values of the metric: a percentage of a mean over so few seeds reads as a
//!   finding it is not. The absolute delta stays.
//! - Curves over training are the mean over seeds with a min–max band per method, with each
//!   run's largest mode drop and first spectral fall marked; mode counts on integer ticks.
//!
//! # Design
//!
//! - A run's *method* comes from its params (`SN`, `SR static (i)`, `SR dynamic`,
//!   `SR graph (i)`, `none`) and its *setting* is everything else that varies between runs,
//!   except the seed (`inputs.rs`). Seeds of one setting and method are aggregated.
//! - Missing pieces (no metrics, no spectral analysis, no spectra, no samples) are listed in the
//!   report, never silently dropped; only a run without `params.json` is an error in the
//!   explicit form, since it cannot be placed in a setting.
//! - **Byte-identical output for equal inputs**: all files are produced in memory first, every
//!   table is explicitly sorted, figures use a committed font and no timestamps, paths in the
//!   report are the relative paths of the params, `report.html` embeds the figures' bytes and
//!   nothing else. Then each file is written atomically.
//! - What must never change silently: the CSV column names and the verdict wording (users and
//!   the published `reports/` read them). Bump [`VERSION`] when the meaning of any output
//!   changes.

pub mod csv_out;
pub mod figures;
pub mod html;
pub mod inputs;
pub mod markdown;
pub mod number;
pub mod page;
pub mod paper;
pub mod tables;
pub mod verdict;

use repro_engine::runrecord::RunRecord;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use inputs::{Missing, Run, RunPaths};
use repro_engine::builtin::{Builtin, Context, Kind, StageError};

/// The `report` builtin's version: enters the fingerprint of every report stage.
pub const VERSION: u32 = 7;

/// The registry entry.
pub const BUILTIN: &dyn Builtin = &Kind::<ReportParams> {
    kind: "report",
    version: VERSION,
    summary: "tables (Markdown, CSV) and figures comparing SN and SR runs",
    run,
};

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid report params: {0}")]
    Params(String),
    #[error("run `{run}` has no `{}`; every run needs the params it was trained with", .path.display())]
    MissingParams { run: String, path: PathBuf },
    #[error("cannot use `{}`: {message}", .path.display())]
    BadInput { path: PathBuf, message: String },
    #[error(transparent)]
    Io(#[from] repro_engine::fsutil::FsError),
    #[error(transparent)]
    Write(#[from] crate::data::DataError),
    #[error("building the tables failed: {0}")]
    Table(String),
    #[error("drawing a figure failed: {0}")]
    Figure(String),
    #[error("the verdict's statistics failed for {what}: {source}")]
    Stats {
        what: String,
        #[source]
        source: crate::stats::StatsError,
    },
}

/// One explicitly listed run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The run directory (holds `params.json`).
    pub run: PathBuf,
    /// Its `metrics.json`.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Its `spectral.json`.
    #[serde(default)]
    pub spectral: Option<PathBuf>,
}

fn d_true() -> bool {
    true
}
fn d_out() -> PathBuf {
    PathBuf::from("reports")
}

/// The `with:` params of `report` (see the module doc).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    #[serde(default)]
    pub runs: Option<Vec<RunSpec>>,
    #[serde(default)]
    pub runs_root: Option<PathBuf>,
    #[serde(default)]
    pub evals_root: Option<PathBuf>,
    #[serde(default)]
    pub spectral_root: Option<PathBuf>,
    /// `repro dag --json` of the running pipeline: which folders under `runs_root` are runs.
    #[serde(default)]
    pub pipeline: Option<PathBuf>,
    #[serde(default)]
    pub dag: Option<PathBuf>,
    #[serde(default)]
    pub run_records: Option<PathBuf>,
    #[serde(default)]
    pub classifier: Option<PathBuf>,
    #[serde(default)]
    pub paper: bool,
    #[serde(default)]
    pub spectra_layer: Option<u64>,
    #[serde(default = "d_true")]
    pub figures: bool,
    #[serde(default = "d_out")]
    pub out: PathBuf,
    /// The verdict's thresholds and the healthy-baseline gate (see [`verdict`]).
    #[serde(default)]
    pub verdict: verdict::VerdictParams,
}

/// The latest record of one pipeline stage, for the stage-run table.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRun {
    pub stage: String,
    pub outcome: String,
    pub wall_seconds: f64,
    pub peak_rss_kib: u64,
    pub cache_hit: bool,
}

/// What `train-classifier` measured of the classifier that counts Stacked MNIST modes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierInfo {
    /// The metrics file, as the params name it.
    pub path: String,
    pub test_accuracy: f64,
    pub n_test: u64,
    pub n_train: u64,
    pub epochs: Option<u64>,
    pub architecture: Option<String>,
}

/// The report's files, by path relative to `out`.
pub type Files = BTreeMap<PathBuf, Vec<u8>>;

fn run(ctx: &Context, params: ReportParams) -> Result<(), StageError> {
    let progress = |step, total, msg: &str| ctx.progress(step, total, msg);
    let files = generate(&params, Path::new("."), &progress).map_err(|e| match e {
        ReportError::Params(message) => StageError::Params {
            kind: "report".into(),
            message,
        },
        other => StageError::domain(other),
    })?;
    write_files(&params.out, &files).map_err(StageError::domain)
}

/// Writes every file under `out`, each atomically (temp file, fsync, rename; mode 0644).
pub fn write_files(out: &Path, files: &Files) -> Result<(), ReportError> {
    for (rel, bytes) in files {
        let path = out.join(rel);
        repro_engine::fsutil::write_atomic(&path, bytes)
            .map_err(|e| crate::data::DataError::io("write", &path, e))?;
    }
    Ok(())
}

/// Makes every report file in memory. Paths in `params` are relative to `base`.
pub fn generate(
    params: &ReportParams,
    base: &Path,
    progress: &dyn Fn(u64, u64, &str),
) -> Result<Files, ReportError> {
    let mut left_out = Vec::new();
    let paths: Vec<RunPaths> = match (&params.runs, &params.runs_root) {
        (Some(_), Some(_)) => {
            return Err(ReportError::Params(
                "give either `runs` or `runs_root`, not both".into(),
            ))
        }
        (None, None) => {
            return Err(ReportError::Params(
                "give `runs_root` (with `evals_root`, `spectral_root`) or a `runs` list".into(),
            ))
        }
        (Some(list), None) => list
            .iter()
            .map(|r| RunPaths {
                name: r
                    .run
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| inputs::show(&r.run)),
                run: r.run.clone(),
                eval: r.eval.clone(),
                spectral: r.spectral.clone(),
            })
            .collect(),
        (None, Some(root)) => {
            let made = match &params.pipeline {
                Some(p) => Some(inputs::pipeline_outs(base, p)?),
                None => None,
            };
            let found = inputs::discover(
                base,
                root,
                params.evals_root.as_deref(),
                params.spectral_root.as_deref(),
                made.as_ref(),
            )?;
            left_out = found.left_out;
            found.runs
        }
    };
    if paths.is_empty() {
        let also = if left_out.is_empty() {
            String::new()
        } else {
            format!(
                " that a stage of the pipeline makes ({} other(s): {})",
                left_out.len(),
                left_out.join(", ")
            )
        };
        return Err(ReportError::Params(format!(
            "no runs: no directory under `runs_root` holds a `params.json`{also}"
        )));
    }
    let total = paths.len() as u64 + 2;
    let mut missing = Vec::new();
    let mut runs: Vec<Run> = Vec::new();
    for (k, p) in paths.iter().enumerate() {
        progress(k as u64, total, &format!("reading run `{}`", p.name));
        runs.push(inputs::load_run(base, p, &mut missing)?);
    }
    let settings = inputs::settings(&runs);
    let tables = tables::build(&runs, &settings, params.spectra_layer);
    let verdict = verdict::judge(&runs, &settings, &params.verdict)?;
    // Each setting once, in label order (the order of every table).
    let mut setting_labels: Vec<&String> = settings.iter().collect();
    setting_labels.sort();
    setting_labels.dedup();

    let mut files = Files::new();
    let mut run_figures = vec![figures::RunFigures::default(); runs.len()];
    let mut curves = Vec::new();
    if params.figures {
        progress(paths.len() as u64, total, "drawing figures");
        for (run, slot) in runs.iter().zip(run_figures.iter_mut()) {
            *slot =
                figures::run_figures(base, run, params.spectra_layer, &mut files, &mut missing)?;
        }
        let metric_heads: Vec<(&str, &str)> = inputs::METRICS
            .iter()
            .copied()
            .filter(|(m, _)| tables.metrics.contains(m) && *m != "modes_total")
            .collect();
        for setting in &setting_labels {
            let group: Vec<&Run> = runs
                .iter()
                .zip(&settings)
                .filter(|(_, s)| s == setting)
                .map(|(r, _)| r)
                .collect();
            for (metric, chart) in figures::curve_charts(setting, &group, &metric_heads) {
                let stem = PathBuf::from("figures/curves")
                    .join(format!("{}-{metric}", figures::slug(setting)));
                chart.render_into(&stem, &mut files)?;
                let heading = chart.y_label.clone();
                curves.push((
                    (*setting).clone(),
                    heading,
                    stem.with_extension("png").to_string_lossy().into_owned(),
                ));
            }
        }
    }

    let dag = optional_input(params.dag.as_deref(), "dag", &mut missing, |p| {
        std::fs::read_to_string(base.join(p)).map_err(|e| reason(&e))
    });
    let stage_runs = optional_input(
        params.run_records.as_deref(),
        "run records",
        &mut missing,
        |p| read_stage_runs(base, p),
    );
    let classifier = optional_input(
        params.classifier.as_deref(),
        "classifier",
        &mut missing,
        |p| read_classifier(base, p),
    );

    progress(paths.len() as u64 + 1, total, "writing tables");
    if let Some(dag) = &dag {
        files.insert(DAG_FILE.into(), mermaid_file(dag).into_bytes());
    }
    let doc = page::Document {
        runs: &runs,
        settings: &settings,
        tables: &tables,
        verdict: &verdict,
        missing: &missing,
        left_out: &left_out,
        run_figures: &run_figures,
        curves: &curves,
        paper: params.paper,
        dag: dag.as_ref().map(|_| DAG_FILE),
        stage_runs: stage_runs.as_deref(),
        classifier: classifier.as_ref(),
    };
    let page = page::build(&doc);
    files.insert("report.md".into(), markdown::render(&page).into_bytes());
    let html = html::render(&page, &files);
    files.insert("report.html".into(), html.into_bytes());
    files.insert("verdict.json".into(), verdict.to_json()?);
    files.insert("runs.csv".into(), tables.runs_csv()?);
    files.insert("summary.csv".into(), tables.summary_csv()?);
    files.insert("deltas.csv".into(), tables.deltas_csv()?);
    if let Some(stages) = &stage_runs {
        files.insert("stages.csv".into(), stages_csv(stages)?);
    }
    progress(total, total, "report done");
    Ok(files)
}

/// `stages.csv`: `stage, outcome, wall_seconds, peak_rss_kib, cache_hit`.
fn stages_csv(stages: &[StageRun]) -> Result<Vec<u8>, ReportError> {
    let header = [
        "stage",
        "outcome",
        "wall_seconds",
        "peak_rss_kib",
        "cache_hit",
    ];
    let rows = stages.iter().map(|s| {
        vec![
            s.stage.as_str().into(),
            s.outcome.as_str().into(),
            s.wall_seconds.into(),
            s.peak_rss_kib.into(),
            s.cache_hit.into(),
        ]
    });
    csv_out::to_csv(&header, rows)
}

/// Where the pipeline's Mermaid graph goes, beside `report.md` (which links it): 1,400 lines
/// of graph inside the report pushed everything a reader came for off the screen.
pub const DAG_FILE: &str = "dag.mmd";

/// A Mermaid file's text: the graph without a Markdown code fence (a `.mmd` file is the graph
/// itself), with one final newline.
fn mermaid_file(dag: &str) -> String {
    let body = dag.trim();
    let body = match body
        .strip_prefix("```mermaid")
        .or_else(|| body.strip_prefix("```"))
    {
        Some(rest) => rest.trim_end().strip_suffix("```").unwrap_or(rest).trim(),
        None => body,
    };
    format!("{body}\n")
}

/// A report-wide input the params may name (`dag`, `run_records`, `classifier`), read by `read`.
/// One that cannot be read is listed among the missing inputs as `what`, never fatal.
fn optional_input<T>(
    path: Option<&Path>,
    what: &'static str,
    missing: &mut Vec<Missing>,
    read: impl FnOnce(&Path) -> Result<T, String>,
) -> Option<T> {
    let path = path?;
    read(path)
        .map_err(|reason| {
            missing.push(Missing {
                run: "-".into(),
                what,
                path: inputs::show(path),
                reason,
            })
        })
        .ok()
}

/// The JSON at `base/path`; the error is the missing-input reason.
fn read_json(base: &Path, path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(base.join(path)).map_err(|e| reason(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable: {e}"))
}

fn reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "missing".into()
    } else {
        format!("unreadable: {e}")
    }
}

/// The test accuracy and training size from `train-classifier`'s metrics.json.
fn read_classifier(base: &Path, path: &Path) -> Result<ClassifierInfo, String> {
    let v = read_json(base, path)?;
    let count = |key: &str| {
        v.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("unreadable: no `{key}`; is this `train-classifier`'s metrics?"))
    };
    Ok(ClassifierInfo {
        path: inputs::show(path),
        test_accuracy: v
            .get("test_accuracy")
            .and_then(Value::as_f64)
            .ok_or("unreadable: no `test_accuracy`; is this `train-classifier`'s metrics?")?,
        n_test: count("n_test")?,
        n_train: count("n_train")?,
        epochs: v.pointer("/config/epochs").and_then(Value::as_u64),
        architecture: v
            .get("architecture")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The latest record of each stage (records later in the file win), sorted by stage name. The
/// file is what `repro runs --json` prints: an array of the engine's run records.
fn read_stage_runs(base: &Path, path: &Path) -> Result<Vec<StageRun>, String> {
    let records: Vec<RunRecord> = serde_json::from_value(read_json(base, path)?)
        .map_err(|e| format!("unreadable: not the output of `repro runs --json` ({e})"))?;
    let mut latest: BTreeMap<String, StageRun> = BTreeMap::new();
    for r in records {
        latest.insert(
            r.stage.clone(),
            StageRun {
                stage: r.stage,
                outcome: r.outcome.as_str().to_string(),
                wall_seconds: r.wall_seconds,
                peak_rss_kib: r.peak_rss_kib,
                cache_hit: r.cache_hit,
            },
        );
    }
    Ok(latest.into_values().collect())
}
