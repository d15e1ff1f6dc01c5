//! The experiment table (`repro exp show`) and the params diff (`repro params diff`).
//!
//! Design decisions:
//! - **One row per stage**, a fan-out member being a stage (`train@16-none-1`). A row's params
//!   are what the stage is run with, under the names `repro status` and `${...}` already use:
//!   `params.KEY` for each tracked key of the top-level `params:`, `with.KEY` for a builtin's
//!   `with:`, and, for a fan-out member, `item.KEY` / `key.KEY` for what `${item}` / `${key}`
//!   were (a `cmd:` stage has no other record of its matrix coordinates, and they are the
//!   coordinates that line up `train@…` with `eval@…` rows of the same grid). Nested maps are
//!   flattened to dotted keys by [`metrics::flatten`], the one flattener of the project; lists
//!   stay one value.
//! - **Only the params that vary are shown.** A param is constant when every row that has it
//!   holds the same value: rows of different kinds (a `train` and its `eval`) have different
//!   keys, and a key one kind lacks must not make the other kind's constant settings show.
//!   Metrics likewise, when two or more rows have them and agree (a version, a dataset's kind);
//!   a metric only one row has is that row's result. The table says how many it hid; `--all`
//!   shows them.
//! - **Metrics come from the workspace**, read by [`metrics::read_stage`] exactly as
//!   `repro metrics show` reads them. A column is the metric's flattened key (`fid`, `is.mean`)
//!   when the stage has one metric file, so the members of a grid, whose files differ only by
//!   path, share columns; with several files it is `FILE:KEY` (the file name, or the whole path
//!   when two of the stage's files share a name).
//! - **Sorting is numeric-aware** (numbers by value, text in natural order, so `train@2` comes
//!   before `train@10`), stable (ties keep pipeline order), and puts missing values last in
//!   either direction: a stage that has not run yet never tops a "best first" table.
//! - **Width**: the terminal table shrinks its widest columns until the table fits, cutting
//!   cells with `…`; Markdown, CSV and JSON are never cut. The renderers are those of
//!   `metrics` ([`metrics::render_table`]), so every table of the CLI looks alike.
//! - **The params diff compares what the lock records**: the `params:` and `with:` of every
//!   stage of the current pipeline against those in the `repro.lock` of a git revision (read by
//!   [`metrics::lock_at`], the reader `metrics diff` uses). `item.*`/`key.*` are not compared:
//!   the lock has no record of them (they act only through the interpolated body, which the
//!   fingerprint hashes), and a changed scalar coordinate renames the member anyway. Stages the
//!   current pipeline lacks are left out, so a lock written under another profile does not
//!   list that profile's stages as removed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::fingerprint::{ActionRecord, Inputs};
use crate::metrics::{self, Format, Metrics};
use crate::spec::keys::{listed, suggestions};
use crate::spec::{Action, Stage};

/// Flattened column name -> value.
pub type Values = BTreeMap<String, Value>;

/// The first column.
pub const STAGE_COLUMN: &str = "stage";

/// Why a table could not be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum ExpError {
    #[error(
        "unknown column `{column}` to sort by; {}",
        column_hint(suggestions, columns)
    )]
    UnknownColumn {
        column: String,
        suggestions: Vec<String>,
        columns: Vec<String>,
    },
    #[error(
        "column `{column}` to sort by is ambiguous: it could be {}; give the whole name",
        listed(candidates, "more")
    )]
    AmbiguousColumn {
        column: String,
        candidates: Vec<String>,
    },
}

/// "did you mean `loss`? (the columns are ...)", in the words of the unknown-target error.
fn column_hint(suggestions: &[String], columns: &[String]) -> String {
    let all = listed(columns, "`repro exp show --all --csv` prints every column");
    if suggestions.is_empty() {
        format!("the columns are {all}")
    } else {
        format!(
            "did you mean {}? (the columns are {all})",
            listed(suggestions, "more")
        )
    }
}

/// A stage's params as the table shows them: tracked params, `with:` and fan-out coordinates.
pub fn stage_params(stage: &Stage) -> Values {
    columns(
        &stage.params,
        builtin_with(stage),
        stage.item.as_ref(),
        stage.key.as_ref(),
    )
}

/// A stage's params as `repro.lock` records them (tracked params and `with:`): the part of
/// [`stage_params`] that [`recorded_params`] can be compared with.
pub fn run_params(stage: &Stage) -> Values {
    columns(&stage.params, builtin_with(stage), None, None)
}

/// The params a lock entry's stage ran with.
pub fn recorded_params(inputs: &Inputs) -> Values {
    let with = match &inputs.action {
        ActionRecord::Builtin { with, .. } => {
            Some(with.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        ActionRecord::Cmd(_) => None,
    };
    columns(&inputs.params, with, None, None)
}

fn builtin_with(stage: &Stage) -> Option<Map<String, Value>> {
    match &stage.action {
        Action::Builtin { with, .. } => Some(with.clone()),
        Action::Cmd(_) => None,
    }
}

fn columns(
    params: &BTreeMap<String, Value>,
    with: Option<Map<String, Value>>,
    item: Option<&Value>,
    key: Option<&Value>,
) -> Values {
    let mut root = Map::new();
    if !params.is_empty() {
        // Tracked keys are already dotted (`train.lr`); under `params` they flatten to
        // `params.train.lr`, and a tracked map (`params: [train]`) to its leaves.
        let tracked = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        root.insert("params".into(), Value::Object(tracked));
    }
    if let Some(with) = with {
        root.insert("with".into(), Value::Object(with));
    }
    if let Some(item) = item {
        root.insert("item".into(), item.clone());
    }
    if let Some(key) = key {
        root.insert("key".into(), key.clone());
    }
    metrics::flatten(&Value::Object(root))
}

/// A stage's metrics as columns: the flattened key alone when it has one metric file, else
/// prefixed by the file (see the module doc).
pub fn metric_columns(m: &Metrics) -> Values {
    if m.len() == 1 {
        return m.values().next().cloned().unwrap_or_default();
    }
    let name = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
    let names: Vec<String> = m.keys().map(|p| name(p)).collect();
    let unique = names.iter().collect::<BTreeSet<_>>().len() == names.len();
    let mut out = Values::new();
    for (path, values) in m {
        let prefix = if unique { name(path) } else { path.clone() };
        for (k, v) in values {
            out.insert(format!("{prefix}:{k}"), v.clone());
        }
    }
    out
}

/// One row: a stage, its params and its metrics.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub stage: String,
    pub params: Values,
    pub metrics: Values,
}

/// The experiment table: rows, and the columns chosen to show.
#[derive(Clone, Debug)]
pub struct Table {
    pub rows: Vec<Row>,
    /// Param columns shown, sorted by name.
    pub params: Vec<String>,
    /// Param columns equal in every row that has them, not shown.
    pub hidden: Vec<String>,
    /// Metric columns shown, sorted by name.
    pub metrics: Vec<String>,
    /// Metric columns that two or more rows have, all with the same value (a version, a
    /// dataset's kind), not shown.
    pub hidden_metrics: Vec<String>,
}

/// Each key of `rows`' `field` (params or metrics) with the distinct values it takes and the
/// number of rows that have it.
fn spread<'a>(
    rows: &'a [Row],
    field: impl Fn(&'a Row) -> &'a BTreeMap<String, Value>,
) -> BTreeMap<&'a str, (Vec<&'a Value>, usize)> {
    let mut seen: BTreeMap<&str, (Vec<&Value>, usize)> = BTreeMap::new();
    for r in rows {
        for (k, v) in field(r) {
            let (values, count) = seen.entry(k.as_str()).or_default();
            *count += 1;
            if !values.contains(&v) {
                values.push(v);
            }
        }
    }
    seen
}

impl Table {
    /// The table of `rows`; with `all`, constant params and metrics are shown too.
    pub fn new(rows: Vec<Row>, all: bool) -> Table {
        let (mut params, mut hidden) = (Vec::new(), Vec::new());
        for (k, (values, _)) in spread(&rows, |r| &r.params) {
            if all || values.len() > 1 {
                params.push(k.to_string());
            } else {
                hidden.push(k.to_string());
            }
        }
        // A metric only one row has is that row's result, not a constant.
        let (mut metrics, mut hidden_metrics) = (Vec::new(), Vec::new());
        for (k, (values, count)) in spread(&rows, |r| &r.metrics) {
            if all || values.len() > 1 || count < 2 {
                metrics.push(k.to_string());
            } else {
                hidden_metrics.push(k.to_string());
            }
        }
        Table {
            rows,
            params,
            hidden,
            metrics,
            hidden_metrics,
        }
    }

    /// Every column shown, in order.
    pub fn columns(&self) -> Vec<String> {
        std::iter::once(STAGE_COLUMN.to_string())
            .chain(self.params.iter().cloned())
            .chain(self.metrics.iter().cloned())
            .collect()
    }

    /// Sorts the rows by `column` (shown or hidden; a unique last part of a name is enough:
    /// `seed` for `item.seed`), missing values last.
    pub fn sort_by(&mut self, column: &str, desc: bool) -> Result<(), ExpError> {
        let column = self.resolve(column)?;
        self.rows.sort_by(|a, b| {
            let (x, y) = (cell(a, &column), cell(b, &column));
            match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) if desc => compare(&y, &x),
                (Some(x), Some(y)) => compare(&x, &y),
            }
        });
        Ok(())
    }

    fn resolve(&self, column: &str) -> Result<String, ExpError> {
        let all: Vec<String> = self
            .columns()
            .into_iter()
            .chain(self.hidden.iter().cloned())
            .chain(self.hidden_metrics.iter().cloned())
            .collect();
        if all.iter().any(|c| c == column) {
            return Ok(column.to_string());
        }
        let tails: Vec<&String> = all
            .iter()
            .filter(|c| c.ends_with(&format!(".{column}")) || c.ends_with(&format!(":{column}")))
            .collect();
        match tails.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(ExpError::UnknownColumn {
                column: column.to_string(),
                suggestions: suggestions(column, &all),
                columns: self.columns(),
            }),
            many => Err(ExpError::AmbiguousColumn {
                column: column.to_string(),
                candidates: many.iter().map(|c| c.to_string()).collect(),
            }),
        }
    }

    /// The table in `format`; a terminal table is fitted into `width` columns when given.
    pub fn render(&self, format: Format, width: Option<usize>) -> String {
        let columns = self.columns();
        if format == Format::Json {
            let rows: Vec<Value> = self
                .rows
                .iter()
                .map(|r| {
                    Value::Object(
                        columns
                            .iter()
                            .map(|c| (c.clone(), cell(r, c).unwrap_or(Value::Null)))
                            .collect(),
                    )
                })
                .collect();
            return serde_json::to_string_pretty(&rows).expect("rows serialize") + "\n";
        }
        let mut header = columns.clone();
        let mut rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| match cell(r, c) {
                        // A CSV reader sees an empty field as missing; a reader of a table, `-`.
                        None if format == Format::Csv => String::new(),
                        v => metrics::cell_text(&v),
                    })
                    .collect()
            })
            .collect();
        if let (Format::Table, Some(width)) = (format, width) {
            fit(&mut header, &mut rows, width);
        }
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        metrics::render_table(&header, &rows, format)
    }

    /// The line under a terminal or Markdown table that says what it leaves out.
    pub fn footer(&self) -> Option<String> {
        let count = |n: usize, what: &str| match n {
            0 => None,
            1 => Some(format!("1 {what}")),
            n => Some(format!("{n} {what}s")),
        };
        let parts: Vec<String> = [
            count(self.hidden.len(), "param"),
            count(self.hidden_metrics.len(), "metric"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let it = match self.hidden.len() + self.hidden_metrics.len() {
            0 => return None,
            1 => "it",
            _ => "them",
        };
        Some(format!(
            "{} equal in every row, not shown (--all to show {it})",
            parts.join(" and ")
        ))
    }
}

/// The value of `column` in `row`; `None` when missing (or null).
fn cell(row: &Row, column: &str) -> Option<Value> {
    if column == STAGE_COLUMN {
        return Some(Value::String(row.stage.clone()));
    }
    row.params
        .get(column)
        .or_else(|| row.metrics.get(column))
        .filter(|v| !v.is_null())
        .cloned()
}

/// Numbers by value before text in natural order; booleans, lists and maps by their JSON text.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x.total_cmp(&y)
        }
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        (Value::String(x), Value::String(y)) => natural(x, y),
        (x, y) => natural(&x.to_string(), &y.to_string()),
    }
}

/// Text with its runs of digits compared as numbers: `s2` < `s10`.
pub fn natural(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, x), (db, y)) in ca.iter().zip(&cb) {
        let ord = if *da && *db {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            x.cmp(y)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// Narrowest a column is cut to.
const MIN_WIDTH: usize = 6;

/// Cuts the widest columns, one character at a time, until the rows fit in `width` (with the
/// two spaces between columns), or every column is down to [`MIN_WIDTH`].
fn fit(header: &mut [String], rows: &mut [Vec<String>], width: usize) {
    let len = |s: &String| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(len).collect();
    for r in rows.iter() {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(len(c));
        }
    }
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    while total(&widths) > width {
        let Some((i, _)) = widths
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > MIN_WIDTH)
            .max_by_key(|(i, w)| (**w, std::cmp::Reverse(*i)))
        else {
            break;
        };
        widths[i] -= 1;
    }
    let cut = |s: &mut String, w: usize| {
        if s.chars().count() > w {
            *s = s.chars().take(w - 1).chain(std::iter::once('…')).collect();
        }
    };
    for (h, &w) in header.iter_mut().zip(&widths) {
        cut(h, w);
    }
    for r in rows.iter_mut() {
        for (c, &w) in r.iter_mut().zip(&widths) {
            cut(c, w);
        }
    }
}

/// One changed param of `repro params diff`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamChange {
    pub stage: String,
    pub param: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// The params that differ between `old` and `new` (stage -> params), for the stages of `new`.
pub fn params_diff(
    old: &BTreeMap<String, Values>,
    new: &BTreeMap<String, Values>,
) -> Vec<ParamChange> {
    let old: Metrics = old
        .iter()
        .filter(|(stage, _)| new.contains_key(*stage))
        .map(|(s, v)| (s.clone(), v.clone()))
        .collect();
    metrics::diff(&old, new, false)
        .into_iter()
        .map(|r| ParamChange {
            stage: r.path,
            param: r.key,
            old: r.old,
            new: r.new,
        })
        .collect()
}

/// Renders `repro params diff`.
pub fn render_params_diff(rows: &[ParamChange], format: Format) -> String {
    let cells = |r: &ParamChange| {
        vec![
            r.stage.clone(),
            r.param.clone(),
            metrics::cell_text(&r.old),
            metrics::cell_text(&r.new),
        ]
    };
    metrics::render_rows(rows, &["stage", "param", "old", "new"], cells, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(stage: &str, params: Value, metrics: Value) -> Row {
        Row {
            stage: stage.into(),
            params: metrics::flatten(&params),
            metrics: metrics::flatten(&metrics),
        }
    }

    #[test]
    fn a_param_is_constant_when_every_row_that_has_it_agrees() {
        let t = Table::new(
            vec![
                row("train@1", json!({"with": {"lr": 1, "seed": 1}}), json!({})),
                row("train@2", json!({"with": {"lr": 1, "seed": 2}}), json!({})),
                // Another kind: lacking `with.lr` does not make it vary.
                row("eval", json!({"with": {"n": 5}}), json!({"fid": 3})),
            ],
            false,
        );
        assert_eq!(t.params, ["with.seed"]);
        assert_eq!(t.hidden, ["with.lr", "with.n"]);
        assert_eq!(t.columns(), ["stage", "with.seed", "fid"]);
        assert_eq!(
            t.footer().unwrap(),
            "2 params equal in every row, not shown (--all to show them)"
        );
        assert_eq!(Table::new(t.rows.clone(), true).params.len(), 3);
    }

    #[test]
    fn a_metric_is_hidden_when_two_rows_or_more_have_it_and_agree() {
        let t = Table::new(
            vec![
                row(
                    "eval@1",
                    json!({"with": {"seed": 1}}),
                    json!({"fid": 3, "version": 3}),
                ),
                row(
                    "eval@2",
                    json!({"with": {"seed": 2}}),
                    json!({"fid": 4, "version": 3}),
                ),
                row("report", json!({}), json!({"pages": 2})),
            ],
            false,
        );
        assert_eq!(t.metrics, ["fid", "pages"]);
        assert_eq!(t.hidden_metrics, ["version"]);
        assert_eq!(
            t.footer().unwrap(),
            "1 metric equal in every row, not shown (--all to show it)"
        );
        let all = Table::new(t.rows.clone(), true);
        assert_eq!(all.metrics, ["fid", "pages", "version"]);
        assert_eq!(all.footer(), None);
    }

    #[test]
    fn sorting_puts_numbers_by_value_text_naturally_and_missing_last() {
        let rows = vec![
            row("s@10", json!({}), json!({"fid": 2.5})),
            row("s@9", json!({}), json!({})),
            row("s@2", json!({}), json!({"fid": 10})),
            row("s@1", json!({}), json!({"fid": "n/a"})),
        ];
        let order = |t: &Table| t.rows.iter().map(|r| r.stage.clone()).collect::<Vec<_>>();
        let mut t = Table::new(rows, false);
        t.sort_by("fid", false).unwrap();
        assert_eq!(order(&t), ["s@10", "s@2", "s@1", "s@9"]);
        t.sort_by("fid", true).unwrap();
        assert_eq!(order(&t), ["s@1", "s@2", "s@10", "s@9"]);
        t.sort_by("stage", false).unwrap();
        assert_eq!(order(&t), ["s@1", "s@2", "s@9", "s@10"]);
        assert!(matches!(
            t.sort_by("fdi", false),
            Err(ExpError::UnknownColumn { ref suggestions, .. }) if suggestions == &["fid"]
        ));
    }

    #[test]
    fn a_short_name_must_be_unique() {
        let mut t = Table::new(
            vec![
                row(
                    "a",
                    json!({"with": {"seed": 1}, "item": {"seed": 1}}),
                    json!({}),
                ),
                row(
                    "b",
                    json!({"with": {"seed": 2}, "item": {"seed": 2}}),
                    json!({}),
                ),
            ],
            false,
        );
        let e = t.sort_by("seed", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column `seed` to sort by is ambiguous: it could be `item.seed`, `with.seed`; give the whole name"
        );
        t.sort_by("item.seed", true).unwrap();
        assert_eq!(t.rows[0].stage, "b");
    }

    #[test]
    fn fitting_cuts_the_widest_column_first_and_counts_characters() {
        let mut header = vec!["stage".to_string(), "with.path".to_string()];
        let mut rows = vec![vec!["a".to_string(), "x".repeat(30)]];
        fit(&mut header, &mut rows, 20);
        assert_eq!(header, ["stage", "with.path"]);
        assert_eq!(rows[0][1].chars().count(), 13);
        assert!(rows[0][1].ends_with('…'));
        let text = metrics::render_table(&["stage", "with.path"], &rows, Format::Table);
        assert!(text.lines().all(|l| l.chars().count() <= 20), "{text}");
    }

    #[test]
    fn one_metric_file_gives_bare_keys_several_name_their_file() {
        let columns = |files: &[(&str, &str)]| {
            let m: Metrics = files
                .iter()
                .map(|(path, key)| {
                    (
                        path.to_string(),
                        BTreeMap::from([(key.to_string(), json!(1))]),
                    )
                })
                .collect();
            metric_columns(&m).into_keys().collect::<Vec<_>>()
        };
        assert_eq!(columns(&[("evals/a/m.json", "fid")]), ["fid"]);
        assert_eq!(
            columns(&[("evals/m.json", "fid"), ("log.csv", "loss")]),
            ["log.csv:loss", "m.json:fid"]
        );
        assert_eq!(
            columns(&[("a/m.json", "fid"), ("b/m.json", "fid")]),
            ["a/m.json:fid", "b/m.json:fid"]
        );
    }

    #[test]
    fn a_stage_and_its_lock_entry_give_the_same_params() {
        let with = json!({"model": {"width": 16}, "sizes": [1, 2]});
        let inputs = Inputs {
            action: ActionRecord::Builtin {
                kind: "train-gan".into(),
                version: 1,
                with: with
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            wdir: String::new(),
            params: BTreeMap::from([("toy.lr".to_string(), json!(0.1))]),
            deps: BTreeMap::new(),
            outs: Vec::new(),
            env: BTreeMap::new(),
        };
        let p = recorded_params(&inputs);
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            ["params.toy.lr", "with.model.width", "with.sizes"]
        );
        assert_eq!(p["with.sizes"], json!([1, 2]));
        let old = BTreeMap::from([("train".to_string(), p.clone())]);
        let mut changed = p.clone();
        changed.insert("with.model.width".into(), json!(32));
        let new = BTreeMap::from([("train".to_string(), changed)]);
        let diff = params_diff(&old, &new);
        assert_eq!(
            diff,
            [ParamChange {
                stage: "train".into(),
                param: "with.model.width".into(),
                old: Some(json!(16)),
                new: Some(json!(32)),
            }]
        );
        // A stage only the old lock has (another profile's) is not reported.
        assert!(params_diff(&old, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_fan_out_member_shows_its_item_and_key_and_only_the_lock_part_is_run_params() {
        let text = "params: {lr: 0.1}\nstages:\n  t:\n    matrix:\n      seed: [1, 2]\n      sr: {none: none, warm: {mode: dynamic}}\n    params: [lr]\n    cmd: echo ${item.seed} > o-${item.seed}-${key.sr}\n    outs: [\"o-${item.seed}-${key.sr}\"]\n";
        let p = crate::spec::parse(
            text,
            std::path::Path::new("pipeline.yaml"),
            &Default::default(),
        )
        .unwrap();
        let warm = p.stages.iter().find(|s| s.name == "t@2-warm").unwrap();
        let shown = stage_params(warm);
        assert_eq!(
            shown,
            BTreeMap::from([
                ("item.seed".to_string(), json!(2)),
                ("item.sr.mode".to_string(), json!("dynamic")),
                ("key.sr".to_string(), json!("warm")),
                ("params.lr".to_string(), json!(0.1)),
            ])
        );
        assert_eq!(
            run_params(warm),
            BTreeMap::from([("params.lr".to_string(), json!(0.1))])
        );
    }
}
