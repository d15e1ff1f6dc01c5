//! Metric files: reading them, and `repro metrics show` / `repro metrics diff`.
//!
//! A stage declares `metrics:` files (JSON or CSV) that it writes. Their values are flattened to
//! `dotted.key -> value` (JSON objects nest with dots; a CSV contributes the columns of its last
//! row, so a training `log.csv` shows its final losses). When a stage succeeds, the values are
//! recorded in its `repro.lock` entry, which makes `metrics diff` possible against the lock as it
//! is now, or against the lock of any git revision (`git show REV:repro.lock`), without keeping
//! old metric files around.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// path -> flattened key -> value.
pub type Metrics = BTreeMap<String, BTreeMap<String, Value>>;

/// Why a metric file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read metric file `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("metric file `{path}` is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("metric file `{path}` is not a CSV with a header and at least one row: {reason}")]
    Csv { path: String, reason: String },
    #[error("cannot read `repro.lock` at git revision `{rev}`: {message}")]
    Git { rev: String, message: String },
    #[error("git revision `{rev}` not found; `git log --oneline` lists the commits")]
    UnknownRevision { rev: String },
}

/// Reads and flattens one metric file (by extension: `.csv`/`.tsv`, else JSON).
pub fn read_file(root: &Path, path: &str) -> Result<BTreeMap<String, Value>, MetricsError> {
    let text = std::fs::read_to_string(root.join(path)).map_err(|source| MetricsError::Read {
        path: path.to_string(),
        source,
    })?;
    if path.ends_with(".csv") || path.ends_with(".tsv") {
        return read_table(
            path,
            &text,
            if path.ends_with(".tsv") { b'\t' } else { b',' },
        );
    }
    let value: Value = serde_json::from_str(&text).map_err(|source| MetricsError::Json {
        path: path.to_string(),
        source,
    })?;
    // Lists of numbers (curves) are not single metrics; they are left to the report.
    Ok(flatten(&value)
        .into_iter()
        .filter(|(_, v)| !v.is_array())
        .collect())
}

/// The values of every metric file of `stage` that exists (a stage that has not run yet has
/// none): what `repro metrics show` and `repro exp show` print.
pub fn read_stage(root: &Path, stage: &crate::spec::Stage) -> Result<Metrics, MetricsError> {
    let mut m = Metrics::new();
    for out in stage.outs.iter().filter(|o| o.metric) {
        if root.join(&out.path).exists() {
            m.insert(out.path.clone(), read_file(root, &out.path)?);
        }
    }
    Ok(m)
}

/// The header and the last non-empty row of a CSV (or TSV) file, as a real CSV reader sees them:
/// a quoted field may hold the separator (`"a, b"`), a quote (`""`) or a newline, and must not
/// shift the values after it onto the wrong names.
fn read_table(path: &str, text: &str, sep: u8) -> Result<BTreeMap<String, Value>, MetricsError> {
    let bad = |reason: String| MetricsError::Csv {
        path: path.to_string(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(sep)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    if header.iter().all(str::is_empty) {
        return Err(bad("it has no header".into()));
    }
    let mut last = None;
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        if !record.iter().all(str::is_empty) {
            last = Some(record);
        }
    }
    let last = last.ok_or_else(|| bad("it has a header but no row".into()))?;
    Ok(header
        .iter()
        .zip(last.iter())
        .map(|(k, v)| (k.to_string(), parse_scalar(v)))
        .collect())
}

fn parse_scalar(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Value::from(f);
        }
    }
    Value::String(s.to_string())
}

/// Nested objects as dotted keys (`{"fid": {"mean": 3}}` -> `fid.mean: 3`); every other value,
/// arrays included, is a leaf. Metric files drop the array leaves (a curve is not one metric);
/// the domain's report keeps them as table cells (params such as `sizes: [64, 64]`).
pub fn flatten(v: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, child, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// One row of `metrics diff`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiffRow {
    pub path: String,
    pub key: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub change: Option<f64>,
}

/// Rows whose value differs between `old` and `new` (all rows with `all`).
pub fn diff(old: &Metrics, new: &Metrics, all: bool) -> Vec<DiffRow> {
    let mut keys: Vec<(&String, &String)> = Vec::new();
    for m in [old, new] {
        for (path, values) in m {
            keys.extend(values.keys().map(|k| (path, k)));
        }
    }
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|(path, key)| {
            let o = old.get(path).and_then(|m| m.get(key)).cloned();
            let n = new.get(path).and_then(|m| m.get(key)).cloned();
            if o == n && !all {
                return None;
            }
            let change = match (&o, &n) {
                (Some(a), Some(b)) => Some(b.as_f64()? - a.as_f64()?),
                _ => None,
            };
            Some(DiffRow {
                path: path.clone(),
                key: key.clone(),
                old: o,
                new: n,
                change,
            })
        })
        .collect()
}

/// A value as a table cell: text unquoted, floats to at most six decimals, `-` when absent.
pub fn cell_text(v: &Option<Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.6}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string(),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// Output formats of the metrics commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
}

/// Renders `metrics show`.
pub fn render_show(m: &Metrics, format: Format) -> String {
    if format == Format::Json {
        return serde_json::to_string_pretty(m).expect("metrics serialize") + "\n";
    }
    let rows: Vec<Vec<String>> = m
        .iter()
        .flat_map(|(path, values)| {
            values
                .iter()
                .map(move |(k, v)| vec![path.clone(), k.clone(), cell_text(&Some(v.clone()))])
        })
        .collect();
    render_table(&["path", "metric", "value"], &rows, format)
}

/// Renders `metrics diff`.
pub fn render_diff(rows: &[DiffRow], format: Format) -> String {
    let cells = |r: &DiffRow| {
        vec![
            r.path.clone(),
            r.key.clone(),
            cell_text(&r.old),
            cell_text(&r.new),
            r.change
                .map(|c| cell_text(&Some(Value::from(c))))
                .unwrap_or_else(|| "-".into()),
        ]
    };
    render_rows(
        rows,
        &["path", "metric", "old", "new", "change"],
        cells,
        format,
    )
}

/// Rows as JSON (the rows serialized as they are), or as a table of `header` whose cells
/// `cells` makes from each row.
pub fn render_rows<T: serde::Serialize>(
    rows: &[T],
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
    format: Format,
) -> String {
    if format == Format::Json {
        return serde_json::to_string_pretty(rows).expect("rows serialize") + "\n";
    }
    let table: Vec<Vec<String>> = rows.iter().map(cells).collect();
    render_table(header, &table, format)
}

/// A table as aligned text, Markdown or CSV.
pub fn render_table(header: &[&str], rows: &[Vec<String>], format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Csv => {
            // The csv crate quotes what needs it (a separator, a quote, a newline).
            let mut w = csv::Writer::from_writer(Vec::new());
            let written = w
                .write_record(header)
                .and_then(|_| rows.iter().try_for_each(|r| w.write_record(r)));
            written.expect("writing CSV to memory cannot fail");
            let bytes = w.into_inner().expect("writing CSV to memory cannot fail");
            out.push_str(&String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8"));
        }
        Format::Markdown => {
            out.push_str(&format!("| {} |\n", header.join(" | ")));
            out.push_str(&format!(
                "|{}\n",
                header.iter().map(|_| "---|").collect::<String>()
            ));
            for r in rows {
                // A `|` in a cell would end it early.
                let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
        Format::Table | Format::Json => {
            // In characters, as `{:<w$}` pads: a cut cell ends in a 3-byte `…`.
            let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for r in rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            out.push_str(&line(header.to_vec()));
            out.push('\n');
            for r in rows {
                out.push_str(&line(r.iter().map(String::as_str).collect()));
                out.push('\n');
            }
        }
    }
    out
}

/// The metrics recorded in `repro.lock` at git revision `rev`.
pub fn from_git(root: &Path, rev: &str) -> Result<Metrics, MetricsError> {
    Ok(from_lock(&lock_at(root, rev)?))
}

/// `repro.lock` as committed at git revision `rev` (`git show REV:repro.lock`), for the diff
/// commands. A revision git does not know is [`MetricsError::UnknownRevision`].
pub fn lock_at(root: &Path, rev: &str) -> Result<crate::lockfile::LockFile, MetricsError> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| MetricsError::Git {
                rev: rev.to_string(),
                message: format!("cannot run git: {e}"),
            })
    };
    let failed = |output: &std::process::Output| MetricsError::Git {
        rev: rev.to_string(),
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    };
    // `--quiet` silences only "unknown revision", so anything on stderr is another problem
    // (no git repository here).
    let commit = git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{rev}^{{commit}}"),
    ])?;
    if !commit.status.success() {
        if commit.stderr.is_empty() {
            return Err(MetricsError::UnknownRevision {
                rev: rev.to_string(),
            });
        }
        return Err(failed(&commit));
    }
    // Named as the user wrote it, so git's messages say `HEAD`, not a hash.
    let output = git(&["show", &format!("{rev}:./{}", crate::lockfile::LOCK_FILE)])?;
    if !output.status.success() {
        return Err(failed(&output));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| MetricsError::Git {
        rev: rev.to_string(),
        message: e.to_string(),
    })
}

/// The metrics recorded in a lock file.
pub fn from_lock(lock: &crate::lockfile::LockFile) -> Metrics {
    let mut m = Metrics::new();
    for entry in lock.stages.values() {
        for (path, values) in &entry.metrics {
            m.insert(path.clone(), values.clone());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_flatten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.json"),
            r#"{"fid": 31.5, "is": {"mean": 7.1, "std": 0.1}, "curve": [1,2]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("log.csv"), "iter,loss_d\n1,0.9\n2,0.5\n").unwrap();
        let j = read_file(dir.path(), "m.json").unwrap();
        assert_eq!(
            j.keys().collect::<Vec<_>>(),
            vec!["fid", "is.mean", "is.std"]
        );
        let c = read_file(dir.path(), "log.csv").unwrap();
        assert_eq!(c["iter"], Value::from(2));
        assert_eq!(c["loss_d"], Value::from(0.5));
    }

    #[test]
    fn a_quoted_field_holding_the_separator_keeps_every_value_on_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.csv"),
            "name,fid,kid\n\"x, y\",1.5,0.2\n\"a, b\",0.9,0.1\n\n",
        )
        .unwrap();
        let c = read_file(dir.path(), "m.csv").unwrap();
        assert_eq!(c["name"], Value::from("a, b"));
        assert_eq!(c["fid"], Value::from(0.9));
        assert_eq!(c["kid"], Value::from(0.1));
        std::fs::write(dir.path().join("h.csv"), "a,b\n").unwrap();
        assert!(matches!(
            read_file(dir.path(), "h.csv"),
            Err(MetricsError::Csv { .. })
        ));
    }

    #[test]
    fn diff_reports_changes_only() {
        let old = Metrics::from([(
            "m.json".into(),
            BTreeMap::from([
                ("fid".into(), Value::from(30.0)),
                ("n".into(), Value::from(5)),
            ]),
        )]);
        let new = Metrics::from([(
            "m.json".into(),
            BTreeMap::from([
                ("fid".into(), Value::from(28.5)),
                ("n".into(), Value::from(5)),
            ]),
        )]);
        let rows = diff(&old, &new, false);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].change, Some(-1.5));
    }
}
