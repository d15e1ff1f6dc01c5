//! The comparison tables, computed with polars: one frame of runs, then setting x method
//! aggregates (mean ± std over seeds), then SN -> SR deltas by joining each SR method's row
//! with the SN row of the same setting.
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
//! - every frame is sorted explicitly (setting, method rank, method, run), because polars'
//!   `group_by` has no stable order and the report must be byte-identical for equal inputs.

use polars::prelude::*;

use super::inputs::{Run, METRICS};
use super::ReportError;

/// A delta's percentage needs more than this many values in each arm (see the module docs).
pub const MIN_SEEDS_FOR_PCT: u32 = 3;

/// The frames behind the report.
pub struct Tables {
    /// One row per run: `run, setting, method, method_rank, is_sr, seed, <metrics>, collapsed,
    /// collapse_iteration, collapse_layer`.
    pub runs: DataFrame,
    /// One row per setting x method: `n, <m>_mean, <m>_std, <m>_n, n_spectral, n_collapsed,
    /// collapse_iteration_mean`.
    pub summary: DataFrame,
    /// One row per setting x SR method with an SN baseline: `<m>_sn, <m>_sr, <m>_delta,
    /// <m>_delta_pct`.
    pub deltas: DataFrame,
    /// The metrics that at least one run has, in [`METRICS`] order.
    pub metrics: Vec<&'static str>,
}

impl From<PolarsError> for ReportError {
    fn from(e: PolarsError) -> Self {
        ReportError::Table(e.to_string())
    }
}

/// Builds every table from the runs and their setting labels (same order).
/// `layer` picks the layer whose spectral summaries are shown (the highest when `None`).
pub fn build(runs: &[Run], settings: &[String], layer: Option<u64>) -> Result<Tables, ReportError> {
    let metrics: Vec<&'static str> = METRICS
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| runs.iter().any(|r| r.final_value(m, layer).is_some()))
        .collect();

    let mut columns = vec![
        Column::new(
            "run".into(),
            runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        ),
        Column::new("setting".into(), settings.to_vec()),
        Column::new(
            "method".into(),
            runs.iter().map(|r| r.method.label()).collect::<Vec<_>>(),
        ),
        Column::new(
            "method_rank".into(),
            runs.iter().map(|r| r.method.rank()).collect::<Vec<_>>(),
        ),
        Column::new(
            "is_sr".into(),
            runs.iter().map(|r| r.method.is_sr()).collect::<Vec<_>>(),
        ),
        Column::new(
            "seed".into(),
            runs.iter().map(|r| r.seed).collect::<Vec<Option<u64>>>(),
        ),
    ];
    for m in &metrics {
        let values: Vec<Option<f64>> = runs.iter().map(|r| r.final_value(m, layer)).collect();
        columns.push(Column::new((*m).into(), values));
    }
    let collapse: Vec<_> = runs.iter().map(Run::collapse).collect();
    columns.push(Column::new(
        "collapsed".into(),
        collapse
            .iter()
            .map(|c| c.as_ref().map(|c| c.0))
            .collect::<Vec<Option<bool>>>(),
    ));
    columns.push(Column::new(
        "collapse_iteration".into(),
        collapse
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.1.as_ref().map(|x| x.0)))
            .collect::<Vec<Option<u64>>>(),
    ));
    columns.push(Column::new(
        "collapse_layer".into(),
        collapse
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.1.as_ref().map(|x| x.1.clone())))
            .collect::<Vec<Option<String>>>(),
    ));
    let runs_df = DataFrame::new_infer_height(columns)?
        .lazy()
        .sort(
            ["setting", "method_rank", "method", "run"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()?;

    let mut aggs = vec![len().alias("n")];
    for m in &metrics {
        aggs.push(col(*m).mean().alias(format!("{m}_mean")));
        aggs.push(col(*m).std(1).alias(format!("{m}_std")));
        aggs.push(col(*m).count().alias(format!("{m}_n")));
    }
    aggs.push(col("collapsed").count().alias("n_spectral"));
    aggs.push(
        col("collapsed")
            .cast(DataType::UInt32)
            .sum()
            .alias("n_collapsed"),
    );
    aggs.push(
        col("collapse_iteration")
            .cast(DataType::Float64)
            .mean()
            .alias("collapse_iteration_mean"),
    );
    let summary = runs_df
        .clone()
        .lazy()
        .group_by([
            col("setting"),
            col("method"),
            col("method_rank"),
            col("is_sr"),
        ])
        .agg(aggs)
        .sort(
            ["setting", "method_rank", "method"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()?;

    let mut sn_cols = vec![col("setting")];
    for m in &metrics {
        sn_cols.push(col(format!("{m}_mean")).alias(format!("{m}_sn")));
        sn_cols.push(col(format!("{m}_n")).alias(format!("{m}_n_sn")));
    }
    let sn = summary
        .clone()
        .lazy()
        .filter(col("method").eq(lit("SN")))
        .select(sn_cols);
    let mut out_cols = vec![col("setting"), col("method")];
    for m in &metrics {
        let (sn_c, sr_c) = (format!("{m}_sn"), format!("{m}_sr"));
        out_cols.push(col(sn_c.as_str()));
        out_cols.push(col(format!("{m}_mean")).alias(sr_c.as_str()));
        let delta = col(format!("{m}_mean")) - col(sn_c.as_str());
        out_cols.push(delta.clone().alias(format!("{m}_delta")));
        // |SN mean| without polars' `abs` feature (one more feature to build for one use).
        let sn_abs = when(col(sn_c.as_str()).lt(lit(0.0)))
            .then(lit(0.0) - col(sn_c.as_str()))
            .otherwise(col(sn_c.as_str()));
        let enough = col(format!("{m}_n"))
            .gt(lit(MIN_SEEDS_FOR_PCT))
            .and(col(format!("{m}_n_sn")).gt(lit(MIN_SEEDS_FOR_PCT)));
        out_cols.push(
            when(col(sn_c.as_str()).neq(lit(0.0)).and(enough))
                .then(delta / sn_abs * lit(100.0))
                .otherwise(lit(Null {}).cast(DataType::Float64))
                .alias(format!("{m}_delta_pct")),
        );
    }
    let deltas = summary
        .clone()
        .lazy()
        .filter(col("is_sr"))
        .join(
            sn,
            [col("setting")],
            [col("setting")],
            JoinArgs::new(JoinType::Inner),
        )
        .select(out_cols)
        .sort(
            ["setting", "method"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()?;

    Ok(Tables {
        runs: runs_df,
        summary,
        deltas,
        metrics,
    })
}

/// A frame as CSV (header, `,`, full float precision, empty for null).
pub fn to_csv(df: &DataFrame) -> Result<Vec<u8>, ReportError> {
    let mut df = df.clone();
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).finish(&mut df)?;
    Ok(buf)
}

/// Typed access to one cell, for the Markdown renderer.
pub fn cell(df: &DataFrame, column: &str, row: usize) -> Result<AnyValue<'static>, ReportError> {
    Ok(df.column(column)?.get(row)?.into_static())
}

/// A cell as f64 (numbers of any type), `None` for null.
pub fn cell_f64(df: &DataFrame, column: &str, row: usize) -> Result<Option<f64>, ReportError> {
    Ok(cell(df, column, row)?.extract::<f64>())
}

/// A cell as text, `None` for null.
pub fn cell_str(df: &DataFrame, column: &str, row: usize) -> Result<Option<String>, ReportError> {
    Ok(match cell(df, column, row)? {
        AnyValue::Null => None,
        AnyValue::String(s) => Some(s.to_string()),
        AnyValue::StringOwned(s) => Some(s.to_string()),
        other => Some(other.to_string()),
    })
}
