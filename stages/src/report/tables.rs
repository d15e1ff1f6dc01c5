//! The comparison tables: one row per run, then setting x method aggregates (mean ± std over
//! seeds), then SN -> SR deltas, pairing each SR method's row with the SN row of the same
//! setting. Plain structs and plain Rust: the tables have at most a few hundred rows.
//!
//! What is decided here and must not change silently:
//! - a run's numbers are its *final* metrics row (see `inputs::Run::final_metrics`) and the
//!   last logged spectral summaries of the report's layer (`inputs::Run::final_value`);
//! - std is the sample standard deviation (ddof = 1), null for a single seed, as in the SN
//!   paper's "mean ± sd over seeds";
//! - a metric's mean ignores runs where it is null, and `<metric>_n` says how many runs it
//!   averaged, so a missing seed is visible;
//! - a delta is `SR mean - SN mean`, and its percentage is relative to `|SN mean|` (null when
//!   the SN mean is 0 or missing, and when either arm averaged [`MIN_SEEDS_FOR_PCT`] or fewer
//!   values: "+302%" on n = 3 reads as a finding it is not, so only the absolute delta is
//!   given);
//! - every table is sorted explicitly (runs by setting, method rank, method, run; the others by
//!   setting, method rank, method or by setting, method), so equal inputs give equal bytes;
//! - the arithmetic is, to the bit, what polars computed when these tables were polars frames
//!   (report versions 1–3), so the CSV files did not change when polars went: a mean is a
//!   Kahan-compensated sum over the group's runs in table order divided by the count (a
//!   one-run group's value as it is), a variance is Welford's online update
//!   ([`crate::stats::mean`], [`crate::stats::sample_std`], which the verdict's means use too).

use super::csv_out::{to_csv, Cell};
use super::inputs::{Run, METRICS};
use super::ReportError;
use crate::stats::{mean, sample_std};

/// A delta's percentage needs more than this many values in each arm (see the module docs).
pub const MIN_SEEDS_FOR_PCT: u32 = 3;

/// One run (a row of `runs.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run: String,
    pub setting: String,
    pub method: String,
    pub method_rank: u32,
    pub is_sr: bool,
    pub seed: Option<u64>,
    /// The run's final value of each of [`Tables::metrics`], in that order.
    pub values: Vec<Option<f64>>,
    /// Whether some layer collapsed; `None` without a spectral analysis.
    pub collapsed: Option<bool>,
    /// The earliest collapse and its layer.
    pub collapse_iteration: Option<u64>,
    pub collapse_layer: Option<String>,
}

/// One metric over the runs of a setting x method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// The mean of the runs that have the metric; `None` when none has it.
    pub mean: Option<f64>,
    /// The sample standard deviation; `None` for fewer than two values.
    pub std: Option<f64>,
    /// How many runs have the metric.
    pub n: u32,
}

/// One setting x method (a row of `summary.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub setting: String,
    pub method: String,
    pub method_rank: u32,
    pub is_sr: bool,
    /// Runs.
    pub n: u32,
    /// One per [`Tables::metrics`], in that order.
    pub stats: Vec<Stat>,
    /// Runs with a spectral analysis, and how many of them collapsed.
    pub n_spectral: u32,
    pub n_collapsed: u32,
    /// The mean of the collapsed runs' first collapse iterations.
    pub collapse_iteration_mean: Option<f64>,
}

/// One metric of an SR method against SN in the same setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delta {
    /// The SN and SR means.
    pub sn: Option<f64>,
    pub sr: Option<f64>,
    /// `sr - sn`.
    pub delta: Option<f64>,
    /// `delta` in percent of `|sn|`, where the module docs allow one.
    pub pct: Option<f64>,
}

/// One setting x SR method with an SN baseline (a row of `deltas.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaRow {
    pub setting: String,
    pub method: String,
    /// One per [`Tables::metrics`], in that order.
    pub deltas: Vec<Delta>,
}

/// The tables behind the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    pub runs: Vec<RunRow>,
    pub summary: Vec<SummaryRow>,
    pub deltas: Vec<DeltaRow>,
    /// The metrics that at least one run has, in [`METRICS`] order.
    pub metrics: Vec<&'static str>,
}

/// Builds every table from the runs and their setting labels (same order).
/// `layer` picks the layer whose spectral summaries are shown (the highest when `None`).
pub fn build(runs: &[Run], settings: &[String], layer: Option<u64>) -> Tables {
    let metrics: Vec<&'static str> = METRICS
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| runs.iter().any(|r| r.final_value(m, layer).is_some()))
        .collect();

    let mut rows: Vec<RunRow> = runs
        .iter()
        .zip(settings)
        .map(|(r, setting)| {
            let collapse = r.collapse();
            let first = collapse.as_ref().and_then(|c| c.1.as_ref());
            RunRow {
                run: r.name.clone(),
                setting: setting.clone(),
                method: r.method.label(),
                method_rank: r.method.rank(),
                is_sr: r.method.is_sr(),
                seed: r.seed,
                values: metrics.iter().map(|m| r.final_value(m, layer)).collect(),
                collapsed: collapse.as_ref().map(|c| c.0),
                collapse_iteration: first.map(|x| x.0),
                collapse_layer: first.map(|x| x.1.clone()),
            }
        })
        .collect();
    // Stable, so equal keys keep the input order.
    rows.sort_by(|a, b| run_order(a).cmp(&run_order(b)));

    let summary = summarize(&rows, metrics.len());
    let deltas = compare(&summary);
    Tables {
        runs: rows,
        summary,
        deltas,
        metrics,
    }
}

/// The run table's order: setting, method rank, method, run.
fn run_order(r: &RunRow) -> (&str, u32, &str, &str) {
    (&r.setting, r.method_rank, &r.method, &r.run)
}

/// One row per setting x method, in run-table order. The runs of one group are adjacent there,
/// since that table is sorted by setting, method rank and method first.
fn summarize(rows: &[RunRow], n_metrics: usize) -> Vec<SummaryRow> {
    rows.chunk_by(|a, b| {
        (&a.setting, a.method_rank, &a.method, a.is_sr)
            == (&b.setting, b.method_rank, &b.method, b.is_sr)
    })
    .map(|group| {
        let first = &group[0];
        let stats = (0..n_metrics)
            .map(|k| {
                let values: Vec<Option<f64>> = group.iter().map(|r| r.values[k]).collect();
                Stat {
                    mean: mean(&values),
                    std: sample_std(&values),
                    n: count(values.iter().flatten()),
                }
            })
            .collect();
        let iterations: Vec<Option<f64>> = group
            .iter()
            .map(|r| r.collapse_iteration.map(|it| it as f64))
            .collect();
        SummaryRow {
            setting: first.setting.clone(),
            method: first.method.clone(),
            method_rank: first.method_rank,
            is_sr: first.is_sr,
            n: count(group.iter()),
            stats,
            n_spectral: count(group.iter().filter_map(|r| r.collapsed)),
            n_collapsed: count(group.iter().filter(|r| r.collapsed == Some(true))),
            collapse_iteration_mean: mean(&iterations),
        }
    })
    .collect()
}

/// Each SR row of the summary beside the SN row of its setting (there is at most one: only
/// [`super::inputs::Method::Sn`] is labelled `SN`), sorted by setting and method.
fn compare(summary: &[SummaryRow]) -> Vec<DeltaRow> {
    let mut out: Vec<DeltaRow> = summary
        .iter()
        .filter(|s| s.is_sr)
        .filter_map(|sr| {
            let sn = summary
                .iter()
                .find(|s| s.method == "SN" && s.setting == sr.setting)?;
            Some(DeltaRow {
                setting: sr.setting.clone(),
                method: sr.method.clone(),
                deltas: sn
                    .stats
                    .iter()
                    .zip(&sr.stats)
                    .map(|(a, b)| delta(a, b))
                    .collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.setting, &a.method).cmp(&(&b.setting, &b.method)));
    out
}

fn delta(sn: &Stat, sr: &Stat) -> Delta {
    let delta = sr.mean.zip(sn.mean).map(|(r, n)| r - n);
    let enough = sr.n > MIN_SEEDS_FOR_PCT && sn.n > MIN_SEEDS_FOR_PCT;
    let pct = match (delta, sn.mean) {
        (Some(d), Some(base)) if base != 0.0 && enough => Some(d / base.abs() * 100.0),
        _ => None,
    };
    Delta {
        sn: sn.mean,
        sr: sr.mean,
        delta,
        pct,
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).expect("fewer than 2^32 runs")
}

impl Tables {
    /// The summary row of one setting and method.
    pub fn summary_row(&self, setting: &str, method: &str) -> Option<&SummaryRow> {
        self.summary
            .iter()
            .find(|s| s.setting == setting && s.method == method)
    }

    /// Where `metric` is in [`Tables::metrics`] (and in every row's per-metric values).
    pub fn metric_index(&self, metric: &str) -> Option<usize> {
        self.metrics.iter().position(|m| *m == metric)
    }

    /// `runs.csv`: `run, setting, method, method_rank, is_sr, seed, <metrics>, collapsed,
    /// collapse_iteration, collapse_layer`.
    pub fn runs_csv(&self) -> Result<Vec<u8>, ReportError> {
        let mut header: Vec<String> = ["run", "setting", "method", "method_rank", "is_sr", "seed"]
            .map(String::from)
            .into();
        header.extend(self.metrics.iter().map(|m| m.to_string()));
        header.extend(["collapsed", "collapse_iteration", "collapse_layer"].map(String::from));
        let rows = self.runs.iter().map(|r| {
            let mut cells: Vec<Cell> = vec![
                r.run.as_str().into(),
                r.setting.as_str().into(),
                r.method.as_str().into(),
                r.method_rank.into(),
                r.is_sr.into(),
                r.seed.into(),
            ];
            cells.extend(r.values.iter().map(|&v| Cell::from(v)));
            cells.push(r.collapsed.into());
            cells.push(r.collapse_iteration.into());
            cells.push(r.collapse_layer.as_deref().into());
            cells
        });
        to_csv(&header, rows)
    }

    /// `summary.csv`: `setting, method, method_rank, is_sr, n, <m>_mean, <m>_std, <m>_n, ...,
    /// n_spectral, n_collapsed, collapse_iteration_mean`.
    pub fn summary_csv(&self) -> Result<Vec<u8>, ReportError> {
        let mut header: Vec<String> = ["setting", "method", "method_rank", "is_sr", "n"]
            .map(String::from)
            .into();
        for m in &self.metrics {
            header.extend([format!("{m}_mean"), format!("{m}_std"), format!("{m}_n")]);
        }
        header.extend(["n_spectral", "n_collapsed", "collapse_iteration_mean"].map(String::from));
        let rows = self.summary.iter().map(|s| {
            let mut cells: Vec<Cell> = vec![
                s.setting.as_str().into(),
                s.method.as_str().into(),
                s.method_rank.into(),
                s.is_sr.into(),
                s.n.into(),
            ];
            for st in &s.stats {
                cells.extend([Cell::from(st.mean), st.std.into(), st.n.into()]);
            }
            cells.extend([
                Cell::from(s.n_spectral),
                s.n_collapsed.into(),
                s.collapse_iteration_mean.into(),
            ]);
            cells
        });
        to_csv(&header, rows)
    }

    /// `deltas.csv`: `setting, method, <m>_sn, <m>_sr, <m>_delta, <m>_delta_pct, ...`.
    pub fn deltas_csv(&self) -> Result<Vec<u8>, ReportError> {
        let mut header: Vec<String> = vec!["setting".into(), "method".into()];
        for m in &self.metrics {
            header.extend([
                format!("{m}_sn"),
                format!("{m}_sr"),
                format!("{m}_delta"),
                format!("{m}_delta_pct"),
            ]);
        }
        let rows = self.deltas.iter().map(|d| {
            let mut cells: Vec<Cell> = vec![d.setting.as_str().into(), d.method.as_str().into()];
            for x in &d.deltas {
                cells.extend([Cell::from(x.sn), x.sr.into(), x.delta.into(), x.pct.into()]);
            }
            cells
        });
        to_csv(&header, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mean: f64, n: u32) -> Stat {
        Stat {
            mean: Some(mean),
            std: None,
            n,
        }
    }

    #[test]
    fn deltas_give_a_percentage_only_on_enough_seeds() {
        let d = delta(&stat(-4.0, 4), &stat(-3.0, 4));
        assert_eq!((d.delta, d.pct), (Some(1.0), Some(25.0)));
        let d = delta(&stat(4.0, 3), &stat(5.0, 4));
        assert_eq!((d.delta, d.pct), (Some(1.0), None));
        let d = delta(&stat(0.0, 5), &stat(5.0, 5));
        assert_eq!((d.delta, d.pct), (Some(5.0), None));
        let none = Stat {
            mean: None,
            std: None,
            n: 0,
        };
        let d = delta(&none, &stat(5.0, 5));
        assert_eq!((d.sn, d.sr, d.delta, d.pct), (None, Some(5.0), None, None));
    }
}
