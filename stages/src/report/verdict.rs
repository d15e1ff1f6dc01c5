//! The verdict: whether the control trained, and what the seeds say about SR against SN, as
//! statistics tied to mode loss (issue 14, DESIGN.md §5). It is computed from the loaded
//! [`Run`]s only, written to `verdict.json`, and opens `report.md`.
//!
//! # Why it looks like this
//!
//! A count such as "SN collapsed 1/3, SR 0/3" decides nothing, and a spectral measure alone
//! says nothing about the samples. So the verdict
//! - judges **mode loss**, the thing the papers claim SR prevents, on the final mode counts of
//!   every seed, and compares SR with SN by a **one-sided Mann–Whitney U test**;
//! - ties the spectral detector to mode loss **over all SN runs** (a 2x2 table with **Fisher's
//!   exact test**) and by **when** the two events happen (the lag in iterations);
//! - states first whether the **control is healthy** (the gate): a comparison between methods
//!   that both failed to train shows nothing, so a failed gate is printed above everything;
//! - words every outcome from the numbers, whatever they are: a p-value at or above
//!   [`ALPHA`] is "no significant difference", a negative result stated as such. No sentence
//!   says that SR "avoided" or "prevented" anything; "more modes than SN" is written only
//!   when the test rejects at [`ALPHA`].
//!
//! Only settings whose runs have mode metrics (`modes` in `metrics.json`: the ring, the grid,
//! Stacked MNIST) are judged; the others (FID-only image runs) are listed as not judged.
//!
//! # Definitions (what must never change silently)
//!
//! Thresholds are the `verdict:` params ([`VerdictParams`]); their defaults are the **ring of
//! 8**'s (the healthy control of DESIGN.md §5: at least 7 of 8 modes with at least half the
//! samples high quality). Other mixtures need their own `min_modes` (there is one set of
//! thresholds per report).
//!
//! Per run (its final row is the `final` metrics row, else the highest iteration, as in every
//! table of the report):
//! - `final_modes`, `modes_total`, `final_hq`: the final row's modes captured, modes in the
//!   mixture, and high-quality share.
//! - `mode_collapsed`: `final_modes < min_modes` (the run *lost modes*, whatever it had
//!   before). Unknown (null) without mode metrics.
//! - `healthy`: `final_modes >= min_modes` and, when the run's metrics have a high-quality share
//!   (Stacked MNIST's do not), `final_hq >= min_hq`. Unknown without mode metrics.
//! - `spectral_collapsed`: some layer of D is `collapsed` at the end of the run (the
//!   `spectral` stage's verdict: a sharp fall of the tail that did not recover). Unknown without
//!   a spectral analysis.
//! - `spectral_iteration`: the earliest `collapse_iteration` over all layers, **whether or not
//!   that layer recovered**: the first sharp fall the detector saw. A run can thus have a
//!   `spectral_iteration` without being `spectral_collapsed`.
//! - `mode_drop_iteration` ([`mode_drop`]): on the run's mode trajectory (the rows with an
//!   iteration, by iteration; the `final` row, which repeats the last, is left out), the first
//!   logged iteration `t_k` that maximizes `max_{j<k} modes_j - modes_k`, the fall below the
//!   best count so far, provided that fall is at least 1 mode; else none. `mode_drop` is its
//!   size.
//!
//! Per setting x method (settings as [`super::inputs::settings`] makes them, methods by
//! [`super::inputs::Method::label`]): `seeds` (runs), `evaluated` (runs with mode metrics),
//! `healthy`, `mode_collapsed`, `spectral_analyzed`, `spectral_collapsed` (counts), the mean of
//! final modes and of final high-quality share with their 95% t-intervals
//! ([`stats::mean_ci`]), and for an SR method `p_vs_sn`: the one-sided Mann–Whitney U p-value
//! of "the SR method's final mode counts tend to be larger than SN's"
//! ([`stats::mann_whitney_u`]`(sr, sn, Greater)`: exact without ties, the tie- and
//! continuity-corrected normal approximation with ties). The p-values are per comparison, not
//! corrected for the several SR methods and settings; the report says so.
//!
//! Over **all SN runs** of the judged settings that have both mode metrics and a spectral
//! analysis: the 2x2 table spectral collapse x mode collapse (`both`, `spectral_only`,
//! `mode_only`, `neither`) with **two-sided** Fisher's exact p ([`stats::fisher_exact`] on
//! `[[both, spectral_only], [mode_only, neither]]`), and for each run with both events the lag
//! `|spectral_iteration - mode_drop_iteration|`; `within_lag` counts the runs with both whose
//! lag is at most `lag` iterations (a run with both but without a mode drop, one that never had
//! more modes than it ended with, has no lag and does not count as within).
//!
//! The healthy-baseline gate: `baseline` selects one setting by flattened param values (every
//! run of it must match every pair); none or several matching settings is a params error naming
//! `verdict.baseline`. Its SN runs are the control. The gate passes when at least
//! `ceil(gate_share x seeds)` of them are healthy (a seed without mode metrics counts as not
//! healthy). The default `gate_share` 2/3 is the issue's "at least 4 of 6".
//!
//! `verdict.json` holds all of the above with its keys sorted, floats in serde_json's shortest
//! round-trip form, runs sorted by setting, method rank and name: byte-identical for equal
//! inputs. Its key names are read by users and scripts: renaming one means bumping
//! [`super::VERSION`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::inputs::Run;
use super::page::{code, lit, Inline, Span};
use super::ReportError;
use crate::stats::{self, Alternative, MeanCi};

/// The significance level: a one-sided p below it is "more modes than SN", at or above it "no
/// significant difference". Fixed, not a param, so it cannot be tuned to a result.
pub const ALPHA: f64 = 0.05;

fn d_min_modes() -> f64 {
    7.0
}
fn d_min_hq() -> f64 {
    0.5
}
fn d_lag() -> u64 {
    500
}

/// A share of seeds, written as a number (`0.75`) or an exact fraction (`"2/3"`), so that the
/// default "at least 4 of 6" is exact and not at the mercy of `0.6667 x 6 = 4.0002`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub num: u64,
    pub den: u64,
}

impl Share {
    /// The least count out of `n` that reaches the share: `ceil(num n / den)`, in integers.
    pub fn required(&self, n: u64) -> u64 {
        (self.num * n).div_ceil(self.den)
    }

    /// `2/3`, or the decimal it was given as.
    pub fn text(&self) -> String {
        if self.den == 1_000_000 {
            super::inputs::fmt_param(self.num as f64 / 1e6)
        } else {
            format!("{}/{}", self.num, self.den)
        }
    }

    fn parse(v: &Value) -> Result<Share, String> {
        let bad = || {
            format!(
                "`verdict.gate_share` is {v}; give a share in (0, 1] as a number (0.75) or a fraction (\"2/3\")"
            )
        };
        let share = match v {
            Value::Number(n) => {
                let x = n.as_f64().ok_or_else(bad)?;
                // Six decimals: shares are coarse, and this keeps the ceiling exact.
                Share {
                    num: (x * 1e6).round().max(0.0) as u64,
                    den: 1_000_000,
                }
            }
            Value::String(s) => {
                let (a, b) = s.split_once('/').ok_or_else(bad)?;
                Share {
                    num: a.trim().parse().map_err(|_| bad())?,
                    den: b.trim().parse().map_err(|_| bad())?,
                }
            }
            _ => return Err(bad()),
        };
        if share.den == 0 || share.num == 0 || share.num > share.den {
            return Err(bad());
        }
        Ok(share)
    }
}

impl Default for Share {
    fn default() -> Self {
        Share { num: 2, den: 3 }
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Share::parse(&v).map_err(serde::de::Error::custom)
    }
}

/// The `verdict:` map of the report's `with:` (see the module docs).
///
/// ```yaml
/// verdict:
///   baseline: {model.d_hidden: 128}  # the control's setting (flattened param -> value)
///   min_modes: 7                     # a healthy run keeps at least this many modes ...
///   min_hq: 0.5                      # ... with at least this high-quality share
///   gate_share: "2/3"                # the share of control seeds that must be healthy
///   lag: 500                         # "spectral collapse within `lag` iterations of mode loss"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerdictParams {
    /// Flattened param key -> value (text, number or boolean); `None`: no gate.
    #[serde(default)]
    pub baseline: Option<BTreeMap<String, Value>>,
    #[serde(default = "d_min_modes")]
    pub min_modes: f64,
    #[serde(default = "d_min_hq")]
    pub min_hq: f64,
    #[serde(default)]
    pub gate_share: Share,
    #[serde(default = "d_lag")]
    pub lag: u64,
}

impl Default for VerdictParams {
    fn default() -> Self {
        VerdictParams {
            baseline: None,
            min_modes: d_min_modes(),
            min_hq: d_min_hq(),
            gate_share: Share::default(),
            lag: d_lag(),
        }
    }
}

impl VerdictParams {
    /// Why these params cannot work, naming the key.
    fn check(&self) -> Result<(), ReportError> {
        let bad = |m: String| Err(ReportError::Params(m));
        if !(self.min_modes.is_finite() && self.min_modes >= 0.0) {
            return bad(format!(
                "`verdict.min_modes` is {}; it must be a mode count >= 0",
                self.min_modes
            ));
        }
        if !(self.min_hq.is_finite() && (0.0..=1.0).contains(&self.min_hq)) {
            return bad(format!(
                "`verdict.min_hq` is {}; it must be a share in [0, 1]",
                self.min_hq
            ));
        }
        if let Some(sel) = &self.baseline {
            if sel.is_empty() {
                return bad("`verdict.baseline` is empty; name the control's setting by at least one param (e.g. `model.d_hidden: 128`)".into());
            }
            for (k, v) in sel {
                if selector_text(v).is_none() {
                    return bad(format!(
                        "`verdict.baseline.{k}` is {v}; give the param's value as text, a number or a boolean"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A selector value as the flattened params write it: strings without quotes, numbers and
/// booleans as compact JSON.
fn selector_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// The largest fall of a mode trajectory below its best count so far: `(iteration, size)` (see
/// the module docs). `points` are `(iteration, modes)` in ascending iteration order.
pub fn mode_drop(points: &[(u64, f64)]) -> Option<(u64, f64)> {
    let mut best_before = f64::NEG_INFINITY;
    let mut found: Option<(u64, f64)> = None;
    for (k, &(it, m)) in points.iter().enumerate() {
        if k > 0 {
            let fall = best_before - m;
            // Strictly greater: the first iteration wins ties.
            if fall >= 1.0 && found.is_none_or(|(_, f)| fall > f) {
                found = Some((it, fall));
            }
        }
        best_before = best_before.max(m);
    }
    found
}

/// [`mode_drop`] of a run's mode trajectory: its rows with an iteration and a mode count, by
/// iteration (the `final` row, which repeats the last, has no iteration).
pub fn run_mode_drop(run: &Run) -> Option<(u64, f64)> {
    let mut trajectory: Vec<(u64, f64)> = run
        .metrics
        .iter()
        .filter_map(|r| Some((r.iteration?, r.values.get("modes").copied()??)))
        .collect();
    trajectory.sort_by_key(|x| x.0);
    mode_drop(&trajectory)
}

/// The first sharp spectral fall of a run: the earliest `collapse_iteration` over its layers,
/// whether or not the layer recovered.
pub fn spectral_iteration(run: &Run) -> Option<u64> {
    run.spectral
        .as_ref()
        .and_then(|layers| layers.iter().filter_map(|l| l.collapse_iteration).min())
}

/// What the verdict knows of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunVerdict {
    pub name: String,
    pub setting: String,
    pub method: String,
    pub rank: u32,
    pub is_sr: bool,
    pub seed: Option<u64>,
    pub final_modes: Option<f64>,
    pub modes_total: Option<f64>,
    pub final_hq: Option<f64>,
    pub healthy: Option<bool>,
    pub mode_collapsed: Option<bool>,
    pub spectral_collapsed: Option<bool>,
    pub spectral_iteration: Option<u64>,
    pub mode_drop_iteration: Option<u64>,
    pub mode_drop: Option<f64>,
}

impl RunVerdict {
    fn of(run: &Run, setting: &str, p: &VerdictParams) -> RunVerdict {
        let final_modes = run.final_value("modes", None);
        let final_hq = run.final_value("hq_share", None);
        let drop = run_mode_drop(run);
        RunVerdict {
            name: run.name.clone(),
            setting: setting.to_string(),
            method: run.method.label(),
            rank: run.method.rank(),
            is_sr: run.method.is_sr(),
            seed: run.seed,
            final_modes,
            modes_total: run.final_value("modes_total", None),
            final_hq,
            healthy: final_modes
                .map(|m| m >= p.min_modes && final_hq.is_none_or(|hq| hq >= p.min_hq)),
            mode_collapsed: final_modes.map(|m| m < p.min_modes),
            spectral_collapsed: run
                .spectral
                .as_ref()
                .map(|layers| layers.iter().any(|l| l.collapsed)),
            spectral_iteration: spectral_iteration(run),
            mode_drop_iteration: drop.map(|d| d.0),
            mode_drop: drop.map(|d| d.1),
        }
    }
}

/// One method's numbers in one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodStats {
    pub method: String,
    pub rank: u32,
    pub is_sr: bool,
    pub seeds: u64,
    pub evaluated: u64,
    pub healthy: u64,
    pub mode_collapsed: u64,
    pub spectral_analyzed: u64,
    pub spectral_collapsed: u64,
    pub modes: Option<MeanCi>,
    pub hq: Option<MeanCi>,
    /// SR methods with SN runs to compare with: the one-sided Mann–Whitney p.
    pub p_vs_sn: Option<f64>,
}

/// Spectral collapse x mode collapse over a set of SN runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cooccurrence {
    pub both: u64,
    pub spectral_only: u64,
    pub mode_only: u64,
    pub neither: u64,
    /// SN runs left out: no mode metrics or no spectral analysis.
    pub excluded: u64,
    /// Two-sided Fisher's exact p; `None` when no run is in the table.
    pub fisher_p: Option<f64>,
    /// One per run with both events.
    pub lags: Vec<Lag>,
}

impl Cooccurrence {
    fn of<'a>(runs: impl Iterator<Item = &'a RunVerdict>, lag: u64) -> Cooccurrence {
        let mut c = Cooccurrence::default();
        for r in runs {
            match (r.spectral_collapsed, r.mode_collapsed) {
                (Some(true), Some(true)) => {
                    c.both += 1;
                    let apart = match (r.spectral_iteration, r.mode_drop_iteration) {
                        (Some(s), Some(d)) => Some(s.abs_diff(d)),
                        _ => None,
                    };
                    c.lags.push(Lag {
                        run: r.name.clone(),
                        setting: r.setting.clone(),
                        spectral_iteration: r.spectral_iteration,
                        mode_drop_iteration: r.mode_drop_iteration,
                        lag: apart,
                        within: apart.is_some_and(|x| x <= lag),
                    });
                }
                (Some(true), Some(false)) => c.spectral_only += 1,
                (Some(false), Some(true)) => c.mode_only += 1,
                (Some(false), Some(false)) => c.neither += 1,
                _ => c.excluded += 1,
            }
        }
        let n = c.both + c.spectral_only + c.mode_only + c.neither;
        c.fisher_p = (n > 0).then(|| {
            stats::fisher_exact(
                [[c.both, c.spectral_only], [c.mode_only, c.neither]],
                Alternative::TwoSided,
            )
        });
        c
    }

    /// Runs with both events whose lag is at most the `lag` param.
    pub fn within_lag(&self) -> u64 {
        self.lags.iter().filter(|l| l.within).count() as u64
    }
}

/// How far apart the two events of one SN run with both are.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub run: String,
    pub setting: String,
    pub spectral_iteration: Option<u64>,
    pub mode_drop_iteration: Option<u64>,
    /// `|spectral_iteration - mode_drop_iteration|`; `None` when either is missing.
    pub lag: Option<u64>,
    /// `lag <= ` the `lag` param.
    pub within: bool,
}

/// One judged setting.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingVerdict {
    pub setting: String,
    pub is_baseline: bool,
    /// In method-rank order.
    pub methods: Vec<MethodStats>,
    /// The setting's own SN runs (the headline's lag clause).
    pub sn_events: Cooccurrence,
    pub headline: String,
}

/// The healthy-baseline gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub setting: String,
    /// The selector as the params gave it, values as text.
    pub selector: BTreeMap<String, String>,
    pub seeds: u64,
    pub evaluated: u64,
    pub healthy_seeds: u64,
    pub required: u64,
    /// The mixture's mode count, from the control's metrics.
    pub modes_total: Option<f64>,
    pub modes: Option<MeanCi>,
    pub hq: Option<MeanCi>,
    pub passed: bool,
}

/// The whole verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub params: VerdictParams,
    pub gate: Option<Gate>,
    /// Settings with mode metrics, sorted by label.
    pub settings: Vec<SettingVerdict>,
    /// Settings without mode metrics, sorted.
    pub not_judged: Vec<String>,
    /// Over every SN run of the judged settings.
    pub cooccurrence: Cooccurrence,
    /// The runs of the judged settings, by setting, method rank, method, name.
    pub runs: Vec<RunVerdict>,
}

fn stats_error(what: String) -> impl FnOnce(stats::StatsError) -> ReportError {
    move |source| ReportError::Stats { what, source }
}

/// The mean and interval of some values, `None` for none.
fn mean_of(values: &[f64], what: impl FnOnce() -> String) -> Result<Option<MeanCi>, ReportError> {
    if values.is_empty() {
        return Ok(None);
    }
    stats::mean_ci(values)
        .map(Some)
        .map_err(stats_error(what()))
}

/// Computes the verdict of `runs`, whose setting labels are `settings` (same order).
pub fn judge(runs: &[Run], settings: &[String], p: &VerdictParams) -> Result<Verdict, ReportError> {
    p.check()?;
    let mut by_setting: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for (r, s) in runs.iter().zip(settings) {
        by_setting.entry(s.as_str()).or_default().push(r);
    }
    let gate_setting = match &p.baseline {
        None => None,
        Some(sel) => Some(select_baseline(&by_setting, sel)?),
    };

    let mut all: Vec<RunVerdict> = Vec::new();
    let mut judged = Vec::new();
    let mut not_judged = Vec::new();
    for (setting, group) in &by_setting {
        let mut rows: Vec<RunVerdict> = group
            .iter()
            .map(|r| RunVerdict::of(r, setting, p))
            .collect();
        rows.sort_by(|a, b| (a.rank, &a.method, &a.name).cmp(&(b.rank, &b.method, &b.name)));
        if rows.iter().all(|r| r.final_modes.is_none()) {
            not_judged.push(setting.to_string());
            // The baseline's rows still count for the gate (as unevaluated seeds).
            if gate_setting.as_deref() == Some(*setting) {
                all.extend(rows);
            }
            continue;
        }
        judged.push(setting.to_string());
        all.extend(rows);
    }

    let gate = match (&gate_setting, &p.baseline) {
        (Some(setting), Some(sel)) => Some(gate(setting, sel, &all, p)?),
        _ => None,
    };

    let mut out_settings = Vec::new();
    for setting in &judged {
        let rows: Vec<&RunVerdict> = all.iter().filter(|r| &r.setting == setting).collect();
        out_settings.push(setting_verdict(setting, &rows, gate.as_ref(), p)?);
    }
    let cooccurrence = Cooccurrence::of(
        all.iter()
            .filter(|r| r.method == "SN" && judged.contains(&r.setting)),
        p.lag,
    );
    all.retain(|r| judged.contains(&r.setting));
    Ok(Verdict {
        params: p.clone(),
        gate,
        settings: out_settings,
        not_judged,
        cooccurrence,
        runs: all,
    })
}

/// The one setting whose runs all match every pair of the selector.
fn select_baseline(
    by_setting: &BTreeMap<&str, Vec<&Run>>,
    sel: &BTreeMap<String, Value>,
) -> Result<String, ReportError> {
    let want: Vec<(&String, String)> = sel
        .iter()
        .filter_map(|(k, v)| Some((k, selector_text(v)?)))
        .collect();
    let matching: Vec<&str> = by_setting
        .iter()
        .filter(|(_, group)| {
            group.iter().all(|r| {
                want.iter()
                    .all(|(k, v)| r.params.get(k.as_str()) == Some(v))
            })
        })
        .map(|(s, _)| *s)
        .collect();
    let shown = want
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(ReportError::Params(format!(
            "`verdict.baseline` ({shown}) matches no setting; the settings are: {}",
            by_setting.keys().copied().collect::<Vec<_>>().join("; ")
        ))),
        many => Err(ReportError::Params(format!(
            "`verdict.baseline` ({shown}) matches {} settings ({}); add params until it names one",
            many.len(),
            many.join("; ")
        ))),
    }
}

fn gate(
    setting: &str,
    sel: &BTreeMap<String, Value>,
    all: &[RunVerdict],
    p: &VerdictParams,
) -> Result<Gate, ReportError> {
    let sn: Vec<&RunVerdict> = all
        .iter()
        .filter(|r| r.setting == setting && r.method == "SN")
        .collect();
    if sn.is_empty() {
        return Err(ReportError::Params(format!(
            "`verdict.baseline` selects `{setting}`, which has no SN runs: the control is SN"
        )));
    }
    let seeds = sn.len() as u64;
    let modes: Vec<f64> = sn.iter().filter_map(|r| r.final_modes).collect();
    let hq: Vec<f64> = sn.iter().filter_map(|r| r.final_hq).collect();
    let healthy_seeds = sn.iter().filter(|r| r.healthy == Some(true)).count() as u64;
    let required = p.gate_share.required(seeds);
    Ok(Gate {
        setting: setting.to_string(),
        selector: sel
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), selector_text(v)?)))
            .collect(),
        seeds,
        evaluated: modes.len() as u64,
        healthy_seeds,
        required,
        modes_total: sn.iter().find_map(|r| r.modes_total),
        modes: mean_of(&modes, || format!("the baseline's final modes ({setting})"))?,
        hq: mean_of(&hq, || {
            format!("the baseline's final high-quality share ({setting})")
        })?,
        passed: healthy_seeds >= required,
    })
}

fn setting_verdict(
    setting: &str,
    rows: &[&RunVerdict],
    gate: Option<&Gate>,
    p: &VerdictParams,
) -> Result<SettingVerdict, ReportError> {
    // Methods in rank order (rows are sorted so).
    let mut labels: Vec<(u32, &str, bool)> = Vec::new();
    for r in rows {
        if !labels.iter().any(|l| l.1 == r.method) {
            labels.push((r.rank, &r.method, r.is_sr));
        }
    }
    let finals = |label: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.method == label)
            .filter_map(|r| r.final_modes)
            .collect()
    };
    let sn_modes = finals("SN");
    let mut methods = Vec::new();
    for (rank, label, is_sr) in labels {
        let mine: Vec<&&RunVerdict> = rows.iter().filter(|r| r.method == label).collect();
        let count = |f: &dyn Fn(&RunVerdict) -> bool| mine.iter().filter(|r| f(r)).count() as u64;
        let modes = finals(label);
        let hq: Vec<f64> = mine.iter().filter_map(|r| r.final_hq).collect();
        let p_vs_sn = if is_sr && !modes.is_empty() && !sn_modes.is_empty() {
            Some(
                stats::mann_whitney_u(&modes, &sn_modes, Alternative::Greater)
                    .map_err(stats_error(format!(
                        "{label} against SN in `{setting}` (final modes)"
                    )))?
                    .p,
            )
        } else {
            None
        };
        methods.push(MethodStats {
            method: label.to_string(),
            rank,
            is_sr,
            seeds: mine.len() as u64,
            evaluated: modes.len() as u64,
            healthy: count(&|r| r.healthy == Some(true)),
            mode_collapsed: count(&|r| r.mode_collapsed == Some(true)),
            spectral_analyzed: count(&|r| r.spectral_collapsed.is_some()),
            spectral_collapsed: count(&|r| r.spectral_collapsed == Some(true)),
            modes: mean_of(&modes, || format!("final modes of {label} in `{setting}`"))?,
            hq: mean_of(&hq, || {
                format!("final high-quality share of {label} in `{setting}`")
            })?,
            p_vs_sn,
        });
    }
    let sn_events = Cooccurrence::of(rows.iter().copied().filter(|r| r.method == "SN"), p.lag);
    let is_baseline = gate.is_some_and(|g| g.setting == setting);
    let modes_total = rows.iter().find_map(|r| r.modes_total);
    let headline = headline(setting, is_baseline, &methods, &sn_events, modes_total, p);
    Ok(SettingVerdict {
        setting: setting.to_string(),
        is_baseline,
        methods,
        sn_events,
        headline,
    })
}

/// A p-value as the report prints it: two significant digits, `< 0.001` below that.
pub fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else if p < 0.01 {
        format!("{p:.4}")
    } else if p < 0.1 {
        format!("{p:.3}")
    } else {
        format!("{p:.2}")
    }
}

/// `p = 0.041` or `p < 0.001`.
pub fn p_clause(p: f64) -> String {
    let s = fmt_p(p);
    if s.starts_with('<') {
        format!("p {s}")
    } else {
        format!("p = {s}")
    }
}

/// The sentence that states one setting's outcome, whatever it is (see the module docs).
fn headline(
    setting: &str,
    is_baseline: bool,
    methods: &[MethodStats],
    sn_events: &Cooccurrence,
    modes_total: Option<f64>,
    p: &VerdictParams,
) -> String {
    let num = super::inputs::fmt_param;
    let of_total = modes_total
        .map(|t| format!(" of {}", num(t)))
        .unwrap_or_default();
    let lost = |m: &MethodStats| {
        let mut s = format!("{}/{}", m.mode_collapsed, m.evaluated);
        if m.evaluated < m.seeds {
            s.push_str(&format!(
                " ({} of {} without mode metrics)",
                m.seeds - m.evaluated,
                m.seeds
            ));
        }
        s
    };
    let mut s = format!(
        "{setting}{}: ",
        if is_baseline { " (the baseline)" } else { "" }
    );
    let Some(sn) = methods.iter().find(|m| m.method == "SN") else {
        s.push_str("no SN runs, so no comparison; ");
        let parts: Vec<String> = methods
            .iter()
            .map(|m| format!("{} lost modes in {}", m.method, lost(m)))
            .collect();
        s.push_str(&parts.join(", "));
        s.push('.');
        return s;
    };
    if sn.evaluated == 0 {
        s.push_str("the SN runs have no mode metrics, so no comparison.");
        return s;
    }
    s.push_str(&format!(
        "SN lost modes (final < {}{of_total}) in {} seeds",
        num(p.min_modes),
        lost(sn)
    ));
    for m in methods.iter().filter(|m| m.is_sr) {
        if m.evaluated == 0 {
            s.push_str(&format!(
                ", {}: no mode metrics ({} run(s))",
                m.method, m.seeds
            ));
            continue;
        }
        s.push_str(&format!(", {} in {}", m.method, lost(m)));
        match m.p_vs_sn {
            Some(pv) if pv < ALPHA => s.push_str(&format!(
                " (more final modes than SN: one-sided Mann–Whitney {})",
                p_clause(pv)
            )),
            Some(pv) => s.push_str(&format!(
                " (no significant difference in final modes: one-sided Mann–Whitney {})",
                p_clause(pv)
            )),
            None => s.push_str(" (no mode metrics to compare)"),
        }
    }
    s.push_str("; ");
    let c = sn_events;
    let in_table = c.both + c.spectral_only + c.mode_only + c.neither;
    if in_table == 0 {
        s.push_str("SN spectral collapse unknown (no spectral analysis of its evaluated runs).");
    } else if c.both == 0 {
        s.push_str(&format!(
            "no SN run had both a spectral collapse and lost modes ({} spectral collapse only, {} lost modes only, of {in_table}).",
            c.spectral_only, c.mode_only
        ));
    } else {
        s.push_str(&format!(
            "spectral collapse came within {} iterations of the largest mode drop in {}/{} SN runs with both ({} spectral collapse only, {} lost modes only, of {in_table}).",
            p.lag,
            c.within_lag(),
            c.both,
            c.spectral_only,
            c.mode_only
        ));
    }
    s
}

impl Verdict {
    /// The gate line at the top of the report, as Markdown.
    pub fn gate_line(&self) -> String {
        super::markdown::inline(&self.gate())
    }

    /// The gate line at the top of the report ([`super::page`] lays it out).
    pub fn gate(&self) -> Span {
        let Some(g) = &self.gate else {
            return vec![
                Inline::Strong("Healthy-baseline gate: not set.".into()),
                lit(" No "),
                code("verdict.baseline"),
                lit(
                    " param names the control, so whether it trained is not checked; read the \
                     comparisons below with that in mind.",
                ),
            ];
        };
        let p = &self.params;
        let hq_clause = if g.hq.is_some() {
            format!(
                " and high-quality share ≥ {}",
                super::inputs::fmt_param(p.min_hq)
            )
        } else {
            String::new()
        };
        let mean = |m: &Option<MeanCi>| match m {
            Some(m) => ci_text(m),
            None => "–".into(),
        };
        let of_total = g
            .modes_total
            .map(|t| format!(" of {}", super::inputs::fmt_param(t)))
            .unwrap_or_default();
        let mut rest = format!(
            ": {}/{} seeds healthy (final modes ≥ {}{of_total}{hq_clause}); \
             the gate needs {} (⌈{} × {}⌉). Final modes {}, high-quality share {}.",
            g.healthy_seeds,
            g.seeds,
            super::inputs::fmt_param(p.min_modes),
            g.required,
            p.gate_share.text(),
            g.seeds,
            mean(&g.modes),
            mean(&g.hq),
        );
        if g.evaluated < g.seeds {
            rest.push_str(&format!(
                " {} seed(s) have no mode metrics and count as not healthy.",
                g.seeds - g.evaluated
            ));
        }
        let mut span = vec![
            Inline::Strong(format!(
                "Healthy-baseline gate: {}.",
                if g.passed { "PASS" } else { "FAIL" }
            )),
            lit(" SN in "),
            code(&g.setting),
            lit(rest),
        ];
        if !g.passed {
            span.extend([
                lit(" "),
                Inline::Strong(
                    "The control did not train, so no conclusion is drawn from the comparisons \
                     below"
                        .into(),
                ),
                lit(": they are reported, not judged."),
            ]);
        }
        span
    }

    /// `verdict.json`: keys sorted, two-space indent, a final newline.
    pub fn to_json(&self) -> Result<Vec<u8>, ReportError> {
        let mut v = self.to_value();
        sort_keys(&mut v);
        let mut bytes = serde_json::to_vec_pretty(&v)
            .map_err(|e| ReportError::Table(format!("verdict.json: {e}")))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    fn to_value(&self) -> Value {
        let p = &self.params;
        let ci = |m: &Option<MeanCi>| {
            m.and_then(|m| m.ci95)
                .map(|(lo, hi)| json!([lo, hi]))
                .unwrap_or(Value::Null)
        };
        let mean = |m: &Option<MeanCi>| m.map(|m| json!(m.mean)).unwrap_or(Value::Null);
        let baseline = match &self.gate {
            None => Value::Null,
            Some(g) => json!({
                "setting": g.setting,
                "selector": g.selector,
                "seeds": g.seeds,
                "evaluated": g.evaluated,
                "healthy_seeds": g.healthy_seeds,
                "required": g.required,
                "modes_mean": mean(&g.modes),
                "modes_ci95": ci(&g.modes),
                "hq_mean": mean(&g.hq),
                "hq_ci95": ci(&g.hq),
                "passed": g.passed,
            }),
        };
        let settings: Vec<Value> = self
            .settings
            .iter()
            .map(|s| {
                let methods: serde_json::Map<String, Value> = s
                    .methods
                    .iter()
                    .map(|m| {
                        (
                            m.method.clone(),
                            json!({
                                "seeds": m.seeds,
                                "evaluated": m.evaluated,
                                "healthy": m.healthy,
                                "mode_collapsed": m.mode_collapsed,
                                "spectral_analyzed": m.spectral_analyzed,
                                "spectral_collapsed": m.spectral_collapsed,
                                "modes_mean": mean(&m.modes),
                                "modes_ci95": ci(&m.modes),
                                "hq_mean": mean(&m.hq),
                                "hq_ci95": ci(&m.hq),
                            }),
                        )
                    })
                    .collect();
                let p_sr: serde_json::Map<String, Value> = s
                    .methods
                    .iter()
                    .filter(|m| m.is_sr)
                    .map(|m| (m.method.clone(), json!(m.p_vs_sn)))
                    .collect();
                json!({
                    "setting": s.setting,
                    "baseline": s.is_baseline,
                    "headline": s.headline,
                    "methods": methods,
                    "p_sr_vs_sn": p_sr,
                })
            })
            .collect();
        let c = &self.cooccurrence;
        let cooccurrence = json!({
            "both": c.both,
            "spectral_only": c.spectral_only,
            "mode_only": c.mode_only,
            "neither": c.neither,
            "excluded": c.excluded,
            "fisher_p": c.fisher_p,
            "within_lag": c.within_lag(),
            "lags": c.lags.iter().map(|l| json!({
                "run": l.run,
                "setting": l.setting,
                "spectral_iteration": l.spectral_iteration,
                "mode_drop_iteration": l.mode_drop_iteration,
                "lag": l.lag,
                "within": l.within,
            })).collect::<Vec<_>>(),
        });
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "setting": r.setting,
                    "method": r.method,
                    "seed": r.seed,
                    "final_modes": r.final_modes,
                    "modes_total": r.modes_total,
                    "final_hq": r.final_hq,
                    "healthy": r.healthy,
                    "mode_collapsed": r.mode_collapsed,
                    "spectral_collapsed": r.spectral_collapsed,
                    "spectral_iteration": r.spectral_iteration,
                    "mode_drop_iteration": r.mode_drop_iteration,
                    "mode_drop": r.mode_drop,
                })
            })
            .collect();
        json!({
            "report_version": super::VERSION,
            "baseline": baseline,
            "settings": settings,
            "not_judged": self.not_judged,
            "cooccurrence": cooccurrence,
            "runs": runs,
            "definitions": {
                "min_modes": p.min_modes,
                "min_hq": p.min_hq,
                "gate_share": p.gate_share.text(),
                "lag": p.lag,
                "alpha": ALPHA,
                "healthy": "final modes >= min_modes and (when the run has a high-quality share) final high-quality share >= min_hq",
                "mode_collapsed": "final modes < min_modes",
                "spectral_collapsed": "some layer of D is `collapsed` at the end of the run (the spectral stage's verdict)",
                "spectral_iteration": "earliest collapse_iteration over the layers, whether or not the layer recovered",
                "mode_drop_iteration": "first logged iteration t_k maximizing max_{j<k} modes_j - modes_k over the rows with an iteration, if that drop is >= 1",
                "p_sr_vs_sn": "one-sided Mann-Whitney U on final modes, alternative: SR greater than SN (exact without ties, normal approximation with tie and continuity correction with ties); not corrected for multiple comparisons",
                "fisher_p": "two-sided Fisher's exact test on [[both, spectral_only], [mode_only, neither]] over the SN runs of the judged settings",
                "lag": "|spectral_iteration - mode_drop_iteration| of an SN run with both events; within_lag counts lags <= lag",
                "ci95": "mean +- t_{0.975, n-1} s / sqrt(n), s with ddof 1; null for one value",
            },
        })
    }
}

/// `7.3 [6.9, 7.7]`, or the bare mean for one value.
pub fn ci_text(m: &MeanCi) -> String {
    let f = super::number::fmt_num;
    match m.ci95 {
        Some((lo, hi)) => format!("{} [{}, {}]", f(m.mean), f(lo), f(hi)),
        None => f(m.mean),
    }
}

/// Sorts every object's keys, recursively (serde_json keeps insertion order in this workspace).
fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.sort_keys();
            for x in m.values_mut() {
                sort_keys(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::inputs::{LayerCollapse, Method, MetricRow};
    use super::*;
    use std::path::PathBuf;

    /// A ring run: `modes` at iterations 0, 250, 500, ..., then `final` (= the last), a fixed
    /// high-quality share, and per-layer `(collapse_iteration, collapsed)` when analysed.
    fn run(
        name: &str,
        d_hidden: u64,
        sr: Value,
        seed: u64,
        modes: &[f64],
        hq: f64,
        spectral: Option<&[(Option<u64>, bool)]>,
    ) -> Run {
        let params = json!({"dataset": "data/ring.safetensors",
            "model": {"arch": "mlp", "hidden": 128, "d_hidden": d_hidden, "layers": 2},
            "sr": sr, "seed": seed});
        let mut flat = BTreeMap::new();
        for (k, v) in [
            ("dataset", "ring".to_string()),
            ("model.arch", "mlp".into()),
            ("model.hidden", "128".into()),
            ("model.d_hidden", d_hidden.to_string()),
            ("model.layers", "2".into()),
        ] {
            flat.insert(k.to_string(), v);
        }
        let row = |label: String, iteration: Option<u64>, m: f64| {
            let mut values = BTreeMap::new();
            values.insert("modes", Some(m));
            values.insert("modes_total", Some(8.0));
            values.insert("hq_share", Some(hq));
            MetricRow {
                label,
                iteration,
                values,
            }
        };
        let mut metrics: Vec<MetricRow> = modes
            .iter()
            .enumerate()
            .map(|(k, m)| row((250 * k).to_string(), Some(250 * k as u64), *m))
            .collect();
        if let Some(last) = modes.last() {
            metrics.push(row("final".into(), None, *last));
        }
        Run {
            name: name.into(),
            dir: PathBuf::from(name),
            method: Method::from_params(&params),
            seed: Some(seed),
            params: flat,
            dataset: None,
            metrics,
            spectral: spectral.map(|layers| {
                layers
                    .iter()
                    .enumerate()
                    .map(|(k, (it, collapsed))| LayerCollapse {
                        layer: Some(k as u64),
                        name: format!("d.fc{k}"),
                        collapsed: *collapsed,
                        collapse_iteration: *it,
                        rank: Some(32),
                        last: BTreeMap::new(),
                    })
                    .collect()
            }),
        }
    }

    fn sn() -> Value {
        json!("none")
    }
    fn sr_static() -> Value {
        json!({"mode": "static", "i": 0.5})
    }

    fn judge_all(runs: &[Run], p: &VerdictParams) -> Result<Verdict, ReportError> {
        let settings = super::super::inputs::settings(runs);
        judge(runs, &settings, p)
    }

    fn baseline(d_hidden: &str) -> VerdictParams {
        let mut sel = BTreeMap::new();
        sel.insert("model.d_hidden".to_string(), json!(d_hidden));
        VerdictParams {
            baseline: Some(sel),
            ..VerdictParams::default()
        }
    }

    #[test]
    fn the_largest_mode_drop_is_below_the_best_so_far_and_the_first_wins() {
        // Best so far 8 at 250; the fall to 3 at 1000 (5) beats the fall to 6 at 500 (2).
        let pts = [(0, 2.0), (250, 8.0), (500, 6.0), (750, 8.0), (1000, 3.0)];
        assert_eq!(mode_drop(&pts), Some((1000, 5.0)));
        // Two equal falls: the first is the iteration.
        let pts = [(0, 8.0), (250, 5.0), (500, 8.0), (750, 5.0)];
        assert_eq!(mode_drop(&pts), Some((250, 3.0)));
        // Rising or flat: no drop. A fall below 1 mode (a fractional count) is none.
        assert_eq!(mode_drop(&[(0, 1.0), (250, 4.0), (500, 8.0)]), None);
        assert_eq!(mode_drop(&[(0, 8.0), (250, 8.0)]), None);
        assert_eq!(mode_drop(&[(0, 8.0), (250, 7.5)]), None);
        assert_eq!(mode_drop(&[(0, 8.0)]), None);
        assert_eq!(mode_drop(&[]), None);
        // Not the largest single step: the fall from the running maximum (8 -> 6 -> 4 is 4).
        assert_eq!(
            mode_drop(&[(0, 8.0), (250, 6.0), (500, 4.0)]),
            Some((500, 4.0))
        );
    }

    #[test]
    fn a_run_is_read_from_its_final_row_trajectory_and_layers() {
        // Final row repeats the last: ignored by the trajectory; layer 0 fell and recovered at
        // 250, layer 1 collapsed at 750.
        let r = run(
            "a",
            32,
            sn(),
            1,
            &[5.0, 8.0, 8.0, 4.0],
            0.7,
            Some(&[(Some(250), false), (Some(750), true), (None, false)]),
        );
        let v = RunVerdict::of(&r, "s", &VerdictParams::default());
        assert_eq!(v.final_modes, Some(4.0));
        assert_eq!(v.mode_collapsed, Some(true));
        assert_eq!(v.healthy, Some(false));
        assert_eq!(v.spectral_collapsed, Some(true));
        assert_eq!(
            v.spectral_iteration,
            Some(250),
            "earliest fall, recovered or not"
        );
        assert_eq!(v.mode_drop_iteration, Some(750));
        assert_eq!(v.mode_drop, Some(4.0));
        // 8 modes but a low high-quality share is not healthy, and not mode-collapsed.
        let r = run("b", 32, sn(), 2, &[8.0], 0.3, None);
        let v = RunVerdict::of(&r, "s", &VerdictParams::default());
        assert_eq!(
            (v.healthy, v.mode_collapsed, v.spectral_collapsed),
            (Some(false), Some(false), None)
        );
    }

    /// Narrow D: SN loses modes in most seeds, SR static keeps them.
    fn clear_difference() -> Vec<Run> {
        let mut runs = Vec::new();
        let sn_finals = [3.0, 4.0, 2.0, 5.0, 8.0, 3.0];
        for (k, f) in sn_finals.iter().enumerate() {
            let collapsed = *f < 7.0;
            runs.push(run(
                &format!("d32-sn-{k}"),
                32,
                sn(),
                k as u64,
                &[2.0, 8.0, 8.0, *f],
                0.6,
                Some(&[(collapsed.then_some(500), collapsed)]),
            ));
        }
        for (k, f) in [8.0, 8.0, 7.0, 8.0, 8.0, 8.0].iter().enumerate() {
            runs.push(run(
                &format!("d32-srs-{k}"),
                32,
                sr_static(),
                k as u64,
                &[2.0, 8.0, 8.0, *f],
                0.8,
                Some(&[(None, false)]),
            ));
        }
        // The wide-D control: healthy in 5 of 6 seeds.
        for (k, f) in [8.0, 8.0, 7.0, 8.0, 6.0, 8.0].iter().enumerate() {
            runs.push(run(
                &format!("d128-sn-{k}"),
                128,
                sn(),
                k as u64,
                &[2.0, 8.0, *f],
                0.75,
                Some(&[(None, false)]),
            ));
        }
        runs
    }

    #[test]
    fn sr_with_clearly_more_modes_gets_a_small_p_and_the_gate_passes() {
        let v = judge_all(&clear_difference(), &baseline("128")).expect("judged");
        let g = v.gate.as_ref().expect("a gate");
        assert_eq!(g.setting, "ring · mlp d_hidden=128 hidden=128 layers=2");
        assert_eq!((g.seeds, g.healthy_seeds, g.required), (6, 5, 4));
        assert!(g.passed);
        assert!(v
            .gate_line()
            .starts_with("**Healthy-baseline gate: PASS.**"));

        let narrow = v
            .settings
            .iter()
            .find(|s| s.setting.contains("d_hidden=32"))
            .expect("narrow setting");
        let sn = &narrow.methods[0];
        let srs = &narrow.methods[1];
        assert_eq!(
            (sn.method.as_str(), srs.method.as_str()),
            ("SN", "SR static (0.5)")
        );
        assert_eq!(
            (sn.seeds, sn.mode_collapsed, sn.spectral_collapsed),
            (6, 5, 5)
        );
        assert_eq!((srs.mode_collapsed, srs.healthy), (0, 6));
        let p = srs.p_vs_sn.expect("a p-value");
        // scipy.stats.mannwhitneyu([8,8,7,8,8,8], [3,4,2,5,8,3], alternative="greater",
        // method="asymptotic") (ties: the normal approximation with continuity correction).
        assert!((p - 0.00824745763520841).abs() < 1e-9, "{p}");
        assert!(
            narrow.headline.contains(
                "SN lost modes (final < 7 of 8) in 5/6 seeds, SR static (0.5) in 0/6 (more final modes than SN: one-sided Mann–Whitney p = "
            ),
            "{}",
            narrow.headline
        );
        // Every SN collapse here came at 500, and the largest mode drop at 750.
        assert!(
            narrow
                .headline
                .contains("spectral collapse came within 500 iterations of the largest mode drop in 5/5 SN runs with both"),
            "{}",
            narrow.headline
        );
        let c = &v.cooccurrence;
        // The control's seed that ended with 6 modes lost modes without a spectral collapse.
        assert_eq!(
            (c.both, c.spectral_only, c.mode_only, c.neither),
            (5, 0, 1, 6)
        );
        assert_eq!(c.within_lag(), 5);
        // scipy.stats.fisher_exact([[5, 0], [1, 6]]) (two-sided) = 12/792.
        assert!((c.fisher_p.expect("p") - 12.0 / 792.0).abs() < 1e-12);
        assert!(!narrow.headline.contains("avoid"));
    }

    #[test]
    fn no_difference_gives_a_large_p_and_says_so() {
        let mut runs = Vec::new();
        for (k, f) in [5.0, 8.0, 6.0, 8.0].iter().enumerate() {
            runs.push(run(
                &format!("sn-{k}"),
                32,
                sn(),
                k as u64,
                &[8.0, *f],
                0.6,
                None,
            ));
        }
        for (k, f) in [6.0, 8.0, 5.0, 8.0].iter().enumerate() {
            runs.push(run(
                &format!("srs-{k}"),
                32,
                sr_static(),
                k as u64,
                &[8.0, *f],
                0.6,
                None,
            ));
        }
        let v = judge_all(&runs, &VerdictParams::default()).expect("judged");
        assert!(v.gate.is_none());
        assert!(v.gate_line().contains("gate: not set"));
        let s = &v.settings[0];
        let p = s.methods[1].p_vs_sn.expect("p");
        // scipy.stats.mannwhitneyu([6,8,5,8], [5,8,6,8], alternative="greater",
        // method="asymptotic").
        assert!((p - 0.5619450197401966).abs() < 1e-9, "{p}");
        assert!(
            s.headline.contains("SR static (0.5) in 2/4 (no significant difference in final modes: one-sided Mann–Whitney p = "),
            "{}",
            s.headline
        );
        assert!(
            s.headline.ends_with(
                "SN spectral collapse unknown (no spectral analysis of its evaluated runs)."
            ),
            "{}",
            s.headline
        );
        // All tied: p is 1, not NaN.
        let tied: Vec<Run> = (0..3)
            .flat_map(|k| {
                [
                    run(&format!("a{k}"), 32, sn(), k, &[8.0], 0.6, None),
                    run(&format!("b{k}"), 32, sr_static(), k, &[8.0], 0.6, None),
                ]
            })
            .collect();
        let v = judge_all(&tied, &VerdictParams::default()).expect("judged");
        assert_eq!(v.settings[0].methods[1].p_vs_sn, Some(1.0));
    }

    #[test]
    fn the_gate_fails_below_its_share_and_says_no_conclusion() {
        let mut runs = clear_difference();
        // The control now keeps 7+ modes in 3 of 6 seeds: 3 < ceil(2/3 x 6) = 4.
        for (r, f) in runs
            .iter_mut()
            .filter(|r| r.name.starts_with("d128"))
            .zip([8.0, 5.0, 7.0, 4.0, 6.0, 8.0])
        {
            for row in &mut r.metrics {
                if row.label == "final" || row.iteration == Some(500) {
                    row.values.insert("modes", Some(f));
                }
            }
        }
        let v = judge_all(&runs, &baseline("128")).expect("judged");
        let g = v.gate.as_ref().expect("gate");
        assert_eq!((g.healthy_seeds, g.required, g.passed), (3, 4, false));
        let line = v.gate_line();
        assert!(
            line.starts_with("**Healthy-baseline gate: FAIL.**"),
            "{line}"
        );
        assert!(line.contains("3/6 seeds healthy"), "{line}");
        assert!(line.contains("no conclusion is drawn"), "{line}");
        // A number share: 0.5 of 6 is 3, so the same runs pass.
        let mut p = baseline("128");
        p.gate_share = Share::parse(&json!(0.5)).expect("share");
        assert!(
            judge_all(&runs, &p)
                .expect("judged")
                .gate
                .expect("gate")
                .passed
        );
        assert_eq!(Share::default().required(10), 7);
        assert_eq!(Share::default().required(6), 4);
        assert!(Share::parse(&json!("3/2")).is_err());
        assert!(Share::parse(&json!(0)).is_err());
    }

    #[test]
    fn a_baseline_selector_must_name_exactly_one_setting() {
        let runs = clear_difference();
        let err = judge_all(&runs, &baseline("64")).expect_err("no setting has 64");
        let msg = err.to_string();
        assert!(matches!(err, ReportError::Params(_)));
        assert!(
            msg.contains("`verdict.baseline` (model.d_hidden: 64) matches no setting"),
            "{msg}"
        );
        let mut sel = BTreeMap::new();
        sel.insert("dataset".to_string(), json!("ring"));
        let p = VerdictParams {
            baseline: Some(sel),
            ..VerdictParams::default()
        };
        let msg = judge_all(&runs, &p).expect_err("two settings").to_string();
        assert!(msg.contains("matches 2 settings"), "{msg}");
        // A number selects as its text does.
        let mut sel = BTreeMap::new();
        sel.insert("model.d_hidden".to_string(), json!(128));
        let p = VerdictParams {
            baseline: Some(sel),
            ..VerdictParams::default()
        };
        assert!(judge_all(&runs, &p).expect("judged").gate.is_some());
    }

    #[test]
    fn params_deny_unknown_keys_and_bad_values() {
        let e = serde_json::from_value::<VerdictParams>(json!({"min_mode": 7})).expect_err("typo");
        assert!(e.to_string().contains("min_mode"), "{e}");
        let p: VerdictParams =
            serde_json::from_value(json!({"baseline": {"model.d_hidden": "128"},
            "gate_share": "2/3", "min_modes": 20, "lag": 250}))
            .expect("params");
        assert_eq!(
            (p.min_modes, p.lag, p.gate_share.text()),
            (20.0, 250, "2/3".to_string())
        );
        let p = VerdictParams {
            min_hq: 1.5,
            ..VerdictParams::default()
        };
        let msg = judge_all(&clear_difference(), &p)
            .expect_err("bad")
            .to_string();
        assert!(msg.contains("`verdict.min_hq` is 1.5"), "{msg}");
    }

    #[test]
    fn settings_without_mode_metrics_are_not_judged_and_the_json_is_sorted() {
        let mut runs = clear_difference();
        let mut image = run("img-sn-1", 32, sn(), 1, &[], 0.5, None);
        image.params.insert("dataset".into(), "cifar10".into());
        image.metrics.clear();
        runs.push(image);
        let v = judge_all(&runs, &baseline("128")).expect("judged");
        assert_eq!(v.not_judged.len(), 1);
        assert!(v.runs.iter().all(|r| r.name != "img-sn-1"));
        let bytes = v.to_json().expect("json");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.ends_with("}\n"));
        // Top-level keys in sorted order, and equal inputs give equal bytes.
        let keys: Vec<usize> = [
            "\"baseline\"",
            "\"cooccurrence\"",
            "\"definitions\"",
            "\"not_judged\"",
            "\"report_version\"",
            "\"runs\"",
            "\"settings\"",
        ]
        .iter()
        .map(|k| text.find(&format!("\n  {k}:")).expect(k))
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(
            bytes,
            judge_all(&runs, &baseline("128"))
                .expect("judged")
                .to_json()
                .expect("json")
        );
        let back: Value = serde_json::from_slice(&bytes).expect("parses");
        assert_eq!(back["baseline"]["healthy_seeds"], json!(5));
        assert_eq!(back["baseline"]["passed"], json!(true));
        let narrow = &back["settings"][1];
        assert_eq!(narrow["methods"]["SN"]["mode_collapsed"], json!(5));
        assert!(narrow["p_sr_vs_sn"]["SR static (0.5)"].as_f64().expect("p") < 0.01);
        assert_eq!(back["cooccurrence"]["both"], json!(5));
    }
}
