//! `repro exp show` (the experiment table) and `repro params diff`: their arguments and their
//! wiring. The table itself (which params vary, sorting, fitting, rendering) is the engine's
//! `experiments` module; this file only loads the pipeline, the workspace's metric files and a
//! revision's `repro.lock`, and prints.
//!
//! The arguments live here rather than in `args.rs`, which names only the two subcommand
//! groups, so that the other commands' definitions stay apart from these.

use anyhow::Result;
use clap::{Args, Subcommand};

use repro_engine::dag::Selection;
use repro_engine::exit_code;
use repro_engine::experiments::{self, Row, Table};
use repro_engine::lockfile::LockFile;
use repro_engine::metrics::{self, Format};
use repro_engine::workspace::Workspace;

use super::args::{FormatArgs, SpecArgs};
use super::commands::{format_of, load_dag};

#[derive(Subcommand, Debug)]
pub enum ExpCommand {
    /// One row per stage (each fan-out member its own row): the params that vary across the
    /// rows, then the values of the stage's metric files.
    #[command(
        after_help = "Param columns are named as `repro status` names them: `params.KEY` \
        (a tracked key of `params:`), `with.KEY` (a builtin's `with:`), `item.KEY`/`key.KEY` (a \
        fan-out member's `${item}`/`${key}`); nested maps become dotted keys. Metric columns are \
        the metric's key (`FILE:KEY` when a stage has several metric files)."
    )]
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Only these stages or groups (`train` is every `train@...` member) [default: all].
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Sort the rows by this column (numbers by value, missing values last); a leading `-`
    /// sorts descending (`--sort-by=-fid`), as does `--desc`. The last part of a name is
    /// enough when it is unique (`seed` for `item.seed`).
    #[arg(long, value_name = "COLUMN", allow_hyphen_values = true)]
    pub sort_by: Option<String>,
    /// Sort descending.
    #[arg(long, requires = "sort_by")]
    pub desc: bool,
    /// Show the params that are equal in every row too.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Subcommand, Debug)]
pub enum ParamsCommand {
    /// The params (`params:` keys and `with:`) of every stage now, against those recorded in
    /// the `repro.lock` of a git revision; only the changed ones.
    Diff {
        /// The git revision whose `repro.lock` holds the old params.
        #[arg(value_name = "REV", default_value = "HEAD")]
        rev: String,
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        spec: SpecArgs,
    },
}

pub fn exp(ws: &Workspace, command: ExpCommand) -> Result<i32> {
    let ExpCommand::Show(args) = command;
    let dag = load_dag(ws, &args.spec)?;
    let mut ids = dag.select(&args.targets, Selection::Single)?;
    ids.sort_unstable(); // pipeline order, not run order
    let lock = LockFile::load(&ws.root)?;
    let mut rows = Vec::with_capacity(ids.len());
    let mut changed = 0;
    for id in ids {
        let stage = &dag.stages[id];
        // Metrics made with other params than the row shows (edited since, or `--set`).
        changed += usize::from(lock.stages.get(&stage.name).is_some_and(|e| {
            experiments::recorded_params(&e.inputs) != experiments::run_params(stage)
        }));
        rows.push(Row {
            stage: stage.name.clone(),
            params: experiments::stage_params(stage),
            metrics: experiments::metric_columns(&metrics::read_stage(&ws.root, stage)?),
        });
    }
    let mut table = Table::new(rows, args.all);
    if let Some(column) = &args.sort_by {
        let (column, desc) = match column.strip_prefix('-') {
            Some(c) => (c, true),
            None => (column.as_str(), args.desc),
        };
        table.sort_by(column, desc)?;
    }
    let format = format_of(&args.format);
    let width = (format == Format::Table).then(stdout_width).flatten();
    print!("{}", table.render(format, width));
    if let (Format::Table | Format::Markdown, Some(footer)) = (format, table.footer()) {
        if format == Format::Markdown {
            println!();
        }
        println!("{footer}");
    }
    if matches!(format, Format::Table | Format::Markdown) && changed > 0 {
        let rows = if changed == 1 { "row" } else { "rows" };
        println!(
            "{changed} {rows} last ran with other params than shown, so their metrics are from \
             those; `repro status` says what changed"
        );
    }
    Ok(exit_code::OK)
}

pub fn params(ws: &Workspace, command: ParamsCommand) -> Result<i32> {
    let ParamsCommand::Diff { rev, format, spec } = command;
    let dag = load_dag(ws, &spec)?;
    let old = metrics::lock_at(&ws.root, &rev)?
        .stages
        .iter()
        .map(|(name, entry)| (name.clone(), experiments::recorded_params(&entry.inputs)))
        .collect();
    let new = dag
        .stages
        .iter()
        .map(|s| (s.name.clone(), experiments::run_params(s)))
        .collect();
    let rows = experiments::params_diff(&old, &new);
    let format = format_of(&format);
    if rows.is_empty() && format == Format::Table {
        println!("no changes: the params match those recorded at `{rev}`");
    } else {
        print!("{}", experiments::render_params_diff(&rows, format));
    }
    Ok(exit_code::OK)
}

/// The width to fit a terminal table into: `$COLUMNS` when set (so a script can ask), else the
/// terminal's; none when stdout is not a terminal (a file gets every character).
fn stdout_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return Some(n);
    }
    repro_engine::reporter::terminal_width(std::io::stdout())
}
