//! How a number looks in the report's prose and Markdown tables: about four significant
//! digits, integers as integers. The CSV files keep full precision (`csv_out`). One function,
//! used by the tables (`markdown`) and by the verdict's sentences (`verdict`), so a value reads
//! the same wherever it appears; the snapshots pin its output.

/// A number for a table cell: about four significant digits, integers as integers.
pub fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if x == x.trunc() && a < 1e9 {
        return format!("{x:.0}");
    }
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else if a >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}
