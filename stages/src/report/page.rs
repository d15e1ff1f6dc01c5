//! What the report says, once, as a small document model ([`Page`]: sections of paragraphs,
//! lists and tables of inline spans) that two writers lay out: [`super::markdown`] as
//! `report.md` (for GitHub) and [`super::html`] as the self-contained `report.html`. Both read
//! the same values, so the two files cannot disagree; neither parses the other.
//!
//! The content is laid out so that a researcher reads the result in one screen: the verdict
//! first (the healthy-baseline gate, one headline per setting, a compact verdict table and the
//! spectral x mode co-occurrence table, all from [`super::verdict`]), then the details
//! (comparison tables, runs, missing inputs, the papers' numbers, figures, a link to the
//! pipeline's DAG, stage runs).
//!
//! Decisions that must not change silently:
//! - **One verdict.** Every sentence that judges SR against SN comes from [`super::verdict`];
//!   this module only lays it out. The spectral-collapse counts in the tables below are counts,
//!   not a verdict. (Version 2's rule, "SR avoided collapse when SN collapsed in some seed and SR
//!   in none", is gone: it was true by construction for SR and rested on n = 3.)
//! - **No percentage deltas on few seeds**: the deltas table shows a percentage only where
//!   `deltas.csv` has one (see [`super::tables`]).
//! - **Numbers** are printed with [`fmt_num`] (about four significant digits); the CSV files keep
//!   full precision. `–` means "no value" (null, or not computed); a missing input is listed in
//!   "Missing inputs", never dropped.
//! - **Text kinds**: [`Inline::Lit`] is the report's own wording, [`Inline::Val`] a value from
//!   the inputs (a run name, a setting, a reason). The writers escape what their format needs
//!   (Markdown: a value's `|`, which would end a table cell; HTML: everything).
//! - Nothing time- or host-dependent is written except what the stage-run records carry (wall
//!   time and memory are what those records measured), so equal inputs give equal bytes.

use std::fmt::Write as _;

use super::inputs::{Missing, Run, METRICS};
use super::number::fmt_num;
use super::paper::{optimizer_label, sn_table2_match, sr_grid_match, RunShape, SN_TABLE2};
use super::tables::{DeltaRow, RunRow, SummaryRow, Tables};
use super::verdict::{ci_text, fmt_p, Verdict};
use super::{figures::RunFigures, ClassifierInfo, StageRun, VERSION};

/// A piece of running text.
#[derive(Debug, Clone, PartialEq)]
pub enum Inline {
    /// The report's own wording.
    Lit(String),
    /// A value from the inputs (names, settings, reasons, numbers).
    Val(String),
    /// A value set as code (paths, stage names, layer names).
    Code(String),
    Strong(String),
    Em(String),
    /// A link to a file beside the report (`summary.csv`, `verdict.json`, `dag.mmd`).
    Link {
        text: String,
        href: String,
    },
    /// A figure of the report's own files (`figures/...`), by the path of its PNG.
    Image {
        alt: Span,
        src: String,
    },
}

/// Running text: a paragraph, a list item, a table cell.
pub type Span = Vec<Inline>;

pub fn lit(s: impl Into<String>) -> Inline {
    Inline::Lit(s.into())
}
pub fn val(s: impl Into<String>) -> Inline {
    Inline::Val(s.into())
}
pub fn code(s: impl Into<String>) -> Inline {
    Inline::Code(s.into())
}
fn link(text: &str) -> Inline {
    Inline::Link {
        text: text.into(),
        href: text.into(),
    }
}
fn image(alt: Span, src: String) -> Inline {
    Inline::Image { alt, src }
}
/// A table cell holding one value.
fn cell(s: impl Into<String>) -> Span {
    vec![val(s)]
}

/// A table: header cells (the report's wording) and rows of spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub heads: Vec<String>,
    pub rows: Vec<Vec<Span>>,
    /// Rows stand alone (no row continues the one above), so a reader may re-sort them.
    pub sortable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Para(Span),
    List(Vec<Span>),
    Table(Table),
    Subheading(String),
}

/// One `##` section; `id` names it for the HTML's anchors and order.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub id: &'static str,
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Section {
    fn new(id: &'static str, title: &str) -> Section {
        Section {
            id,
            title: title.into(),
            blocks: Vec::new(),
        }
    }
    fn para(&mut self, span: Span) {
        self.blocks.push(Block::Para(span));
    }
    fn text(&mut self, s: &str) {
        self.para(vec![lit(s)]);
    }
    fn table(&mut self, heads: &[&str], rows: Vec<Vec<Span>>, sortable: bool) {
        self.blocks.push(Block::Table(Table {
            heads: heads.iter().map(|h| h.to_string()).collect(),
            rows,
            sortable,
        }));
    }
}

/// The whole report: a title, one introductory paragraph, the sections in Markdown order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub title: String,
    pub intro: Span,
    pub sections: Vec<Section>,
}

/// Everything the report shows.
pub struct Document<'a> {
    pub runs: &'a [Run],
    pub settings: &'a [String],
    pub tables: &'a Tables,
    pub verdict: &'a Verdict,
    pub missing: &'a [Missing],
    /// Run folders under `runs_root` that no stage of the pipeline makes, not counted.
    pub left_out: &'a [String],
    pub run_figures: &'a [RunFigures],
    /// `(setting, metric heading, PNG path)`.
    pub curves: &'a [(String, String, String)],
    pub paper: bool,
    /// The DAG file beside report.md, when there is one.
    pub dag: Option<&'a str>,
    pub stage_runs: Option<&'a [StageRun]>,
    pub classifier: Option<&'a ClassifierInfo>,
}

fn opt(x: Option<f64>) -> String {
    x.map(fmt_num).unwrap_or_else(|| "–".into())
}

fn signed(x: f64) -> String {
    let s = fmt_num(x);
    if x > 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

fn heading(metric: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(m, _)| *m == metric)
        .map(|(_, h)| *h)
        .unwrap_or("?")
}

/// Collapse counts as words: `2/3 collapsed (mean iteration 1500)`.
fn collapse_cell(runs: u64, with_spectral: u64, collapsed: u64, mean_iter: Option<f64>) -> String {
    if with_spectral == 0 {
        return format!("unknown (no spectral analysis of {runs} run(s))");
    }
    let mut s = format!("{collapsed}/{with_spectral} collapsed");
    if let Some(it) = mean_iter.filter(|_| collapsed > 0) {
        let _ = write!(s, " (mean iteration {})", fmt_num(it));
    }
    if with_spectral < runs {
        let _ = write!(s, "; {} without analysis", runs - with_spectral);
    }
    s
}

fn summary_table(sec: &mut Section, rows: &[SummaryRow], metrics: &[&str]) {
    let mut heads = vec!["setting", "method", "n"];
    heads.extend(metrics.iter().map(|m| heading(m)));
    heads.push("spectral collapse");
    let mut body = Vec::new();
    for row in rows {
        let n = u64::from(row.n);
        let mut cells = vec![cell(&row.setting), cell(&row.method), cell(n.to_string())];
        for st in &row.stats {
            let mut c = match (st.mean, st.std) {
                (None, _) => "–".to_string(),
                (Some(m), Some(s)) => format!("{} ± {}", fmt_num(m), fmt_num(s)),
                (Some(m), None) => fmt_num(m),
            };
            if st.mean.is_some() && u64::from(st.n) < n {
                let _ = write!(c, " (n={})", st.n);
            }
            cells.push(cell(c));
        }
        cells.push(cell(collapse_cell(
            n,
            row.n_spectral.into(),
            row.n_collapsed.into(),
            row.collapse_iteration_mean,
        )));
        body.push(cells);
    }
    sec.table(&heads, body, true);
}

fn deltas_table(sec: &mut Section, rows: &[DeltaRow], metrics: &[&str]) {
    let mut heads = vec!["setting", "method"];
    let names: Vec<String> = metrics
        .iter()
        .map(|m| format!("Δ {}", heading(m)))
        .collect();
    heads.extend(names.iter().map(String::as_str));
    let mut body = Vec::new();
    for row in rows {
        let mut cells = vec![cell(&row.setting), cell(&row.method)];
        for d in &row.deltas {
            cells.push(cell(match (d.delta, d.pct) {
                (None, _) => "–".into(),
                (Some(d), Some(p)) => format!("{} ({}%)", signed(d), signed(p)),
                (Some(d), None) => signed(d),
            }));
        }
        body.push(cells);
    }
    sec.table(&heads, body, true);
}

fn runs_table(sec: &mut Section, rows: &[RunRow], metrics: &[&str]) {
    let mut heads = vec!["run", "setting", "method", "seed"];
    heads.extend(metrics.iter().map(|m| heading(m)));
    heads.push("spectral collapse");
    let mut body = Vec::new();
    for row in rows {
        let mut cells = vec![
            cell(&row.run),
            cell(&row.setting),
            cell(&row.method),
            cell(row.seed.map_or_else(|| "–".into(), |s| s.to_string())),
        ];
        cells.extend(row.values.iter().map(|&v| cell(opt(v))));
        cells.push(match row.collapsed {
            Some(true) => match (row.collapse_iteration, &row.collapse_layer) {
                (Some(it), Some(l)) => vec![
                    lit(format!("yes, at {} (", fmt_num(it as f64))),
                    code(l),
                    lit(")"),
                ],
                _ => vec![lit("yes")],
            },
            Some(false) => vec![lit("no")],
            None => vec![lit("unknown")],
        });
        body.push(cells);
    }
    sec.table(&heads, body, true);
}

/// One setting's spectral-collapse counts per method, from the summary table: `(method, runs,
/// runs with spectral analysis, collapsed, mean collapse iteration)`.
type CollapseCounts = (String, u64, u64, u64, Option<f64>);

fn collapse_counts(tables: &Tables, setting: &str) -> Vec<CollapseCounts> {
    tables
        .summary
        .iter()
        .filter(|s| s.setting == setting)
        .map(|s| {
            (
                s.method.clone(),
                s.n.into(),
                s.n_spectral.into(),
                s.n_collapsed.into(),
                s.collapse_iteration_mean,
            )
        })
        .collect()
}

/// Our SN mean ± std of one metric in one setting, for the paper comparison.
fn ours(tables: &Tables, setting: &str, method: &str, metric: &str) -> String {
    let stat = tables
        .metric_index(metric)
        .zip(tables.summary_row(setting, method))
        .map(|(k, row)| row.stats[k]);
    match stat.map(|st| (st.mean, st.std)) {
        Some((Some(m), Some(sd))) => format!("{} ± {}", fmt_num(m), fmt_num(sd)),
        Some((Some(m), None)) => fmt_num(m),
        _ => "–".into(),
    }
}

fn paper_section(doc: &Document) -> Section {
    let mut sec = Section::new("paper", "The papers' numbers beside ours");
    sec.text(
        "SN paper (Miyato et al. 2018), Table 2, exact values. Our columns are the SN runs of each \
         setting on CIFAR-10 or STL-10 that are the row's experiment: architecture and widths, \
         loss, and for the standard CNN 100K G updates (200K for \"2x updates\"); mean ± std over \
         seeds. Several of our settings can share a row (the paper does not say which Adam \
         setting A-F gave its standard-CNN numbers, so we train each): \"our optimization\" says \
         which each is. Our Inception port and sample counts differ from the paper's, so compare \
         gaps, not absolute values.",
    );
    let d = |x: Option<&str>| vec![lit(x.unwrap_or("–"))];
    let table2 = SN_TABLE2
        .iter()
        .map(|r| {
            vec![
                d(Some(r.section).filter(|s| !s.is_empty())),
                vec![lit(r.method)],
                d(r.is_cifar10),
                d(r.is_stl10),
                d(r.fid_cifar10),
                d(r.fid_stl10),
            ]
        })
        .collect();
    sec.table(
        &[
            "section",
            "method",
            "IS CIFAR-10",
            "IS STL-10",
            "FID CIFAR-10",
            "FID STL-10",
        ],
        table2,
        false,
    );
    // Our settings, deduplicated, with the first run of each as the params example.
    let mut seen: Vec<&str> = Vec::new();
    let mut ours_rows = Vec::new();
    let mut grid_rows = Vec::new();
    for (run, setting) in doc.runs.iter().zip(doc.settings) {
        if seen.contains(&setting.as_str()) {
            continue;
        }
        seen.push(setting);
        let p = &run.params;
        let dataset = p.get("dataset").cloned().unwrap_or_default();
        let arch = p
            .get("model.arch")
            .or_else(|| p.get("model.kind"))
            .cloned()
            .unwrap_or_default();
        let loss = p.get("loss").cloned().unwrap_or_else(|| "hinge".into());
        let num = |k: &str| p.get(k).and_then(|v| v.parse::<usize>().ok());
        let float = |k: &str| p.get(k).and_then(|v| v.parse::<f64>().ok());
        let iterations = p.get("iterations").and_then(|v| v.parse::<u64>().ok());
        let shape = RunShape {
            dataset: &dataset,
            arch: &arch,
            loss: &loss,
            g_ch: num("model.g_ch"),
            d_ch: num("model.d_ch"),
            ch: num("model.ch"),
            batch: num("batch_size"),
            iterations,
        };
        if let Some(m) = sn_table2_match(&shape) {
            let (is_p, fid_p) = m.paper_values();
            let optimizer = optimizer_label(
                p.get("optimizer").map(String::as_str),
                [float("lr"), float("beta1"), float("beta2"), float("n_dis")],
                p.get("lr_decay").map(String::as_str),
                iterations,
            );
            ours_rows.push(vec![
                cell(setting),
                vec![lit(format!("{} / {}", m.row.section, m.row.method))],
                cell(optimizer),
                d(is_p),
                cell(ours(doc.tables, setting, "SN", "is")),
                d(fid_p),
                cell(ours(doc.tables, setting, "SN", "fid")),
            ]);
        }
        let batch = p.get("batch_size").and_then(|b| b.parse::<usize>().ok());
        let d_ch = p.get("model.d_ch").and_then(|b| b.parse::<usize>().ok());
        if let (Some(batch), Some(d_ch)) = (batch, d_ch) {
            for g in sr_grid_match(&dataset, batch, d_ch) {
                let counts = collapse_counts(doc.tables, setting);
                let ours_cell = |sr: bool| -> Span {
                    let cells: Vec<String> = counts
                        .iter()
                        .filter(|m| {
                            if sr {
                                m.0.starts_with("SR ")
                            } else {
                                m.0 == "SN"
                            }
                        })
                        .map(|m| {
                            let c = collapse_cell(m.1, m.2, m.3, m.4);
                            if sr {
                                format!("{}: {c}", m.0)
                            } else {
                                c
                            }
                        })
                        .collect();
                    if cells.is_empty() {
                        vec![lit("–")]
                    } else {
                        vec![lit(cells.join("; "))]
                    }
                };
                grid_rows.push(vec![
                    cell(setting),
                    vec![lit(g.name())],
                    vec![lit(format!("{} (inferred)", g.dataset_guess()))],
                    vec![lit(if g.sn_collapses {
                        "collapses"
                    } else {
                        "no collapse"
                    })],
                    vec![lit("no collapse")],
                    ours_cell(false),
                    ours_cell(true),
                ]);
            }
        }
    }
    sec.text("Our SN runs beside Table 2:");
    if ours_rows.is_empty() {
        sec.text(
            "None of our settings is one of Table 2's SN experiments (architecture and widths, \
             loss, dataset, G updates).",
        );
    } else {
        sec.table(
            &[
                "our setting",
                "Table 2 row",
                "our optimization",
                "IS (paper)",
                "IS (ours)",
                "FID (paper)",
                "FID (ours)",
            ],
            ours_rows,
            true,
        );
    }
    sec.text(
        "SR paper (Liu et al. 2019), the 26-setting grid of Figs. 1–3: which settings collapse \
         under SN (SR avoided all ten). The paper's per-setting IS/FID tables were not available \
         to us, so only the collapse verdicts are compared.",
    );
    if grid_rows.is_empty() {
        sec.text(
            "None of our settings matches a setting of the grid (dataset, batch size, D width).",
        );
    } else {
        sec.table(
            &[
                "our setting",
                "paper setting",
                "paper dataset",
                "SN (paper)",
                "SR (paper)",
                "SN (ours)",
                "SR (ours)",
            ],
            grid_rows,
            true,
        );
    }
    sec
}

/// The verdict at the top of the report: the gate, the headlines, the verdict table and the
/// co-occurrence table, with one line of definitions.
fn verdict_section(v: &Verdict) -> Section {
    let p = &v.params;
    let num = super::inputs::fmt_param;
    let mut sec = Section::new("verdict", "Verdict");
    sec.para(v.gate());
    if v.settings.is_empty() {
        sec.text("No setting has mode metrics, so nothing is judged.");
    }
    let headlines: Vec<Span> = v
        .settings
        .iter()
        .map(|s| {
            // The setting's label in bold, then the sentence after it.
            match s.headline.strip_prefix(s.setting.as_str()) {
                Some(rest) => vec![Inline::Strong(s.setting.clone()), val(rest)],
                None => vec![val(&s.headline)],
            }
        })
        .collect();
    if !headlines.is_empty() {
        sec.blocks.push(Block::List(headlines));
    }
    if !v.not_judged.is_empty() {
        let mut span = vec![lit("Not judged (no mode metrics): ")];
        for (k, s) in v.not_judged.iter().enumerate() {
            if k > 0 {
                span.push(lit(", "));
            }
            span.push(code(s));
        }
        span.push(lit("."));
        sec.para(span);
    }
    if !v.settings.is_empty() {
        let mut rows = Vec::new();
        for s in &v.settings {
            for (k, m) in s.methods.iter().enumerate() {
                let seeds = if m.evaluated < m.seeds {
                    format!("{} ({} evaluated)", m.seeds, m.evaluated)
                } else {
                    m.seeds.to_string()
                };
                let label = if k == 0 {
                    let b = if s.is_baseline { " (baseline)" } else { "" };
                    vec![val(&s.setting), lit(b)]
                } else {
                    cell("")
                };
                rows.push(vec![
                    label,
                    cell(&m.method),
                    cell(seeds),
                    cell(format!("{}/{}", m.healthy, m.evaluated)),
                    cell(format!("{}/{}", m.mode_collapsed, m.evaluated)),
                    cell(if m.spectral_analyzed == 0 {
                        "–".into()
                    } else {
                        format!("{}/{}", m.spectral_collapsed, m.spectral_analyzed)
                    }),
                    cell(m.modes.as_ref().map(ci_text).unwrap_or_else(|| "–".into())),
                    cell(m.hq.as_ref().map(ci_text).unwrap_or_else(|| "–".into())),
                    cell(m.p_vs_sn.map(fmt_p).unwrap_or_else(|| "–".into())),
                ]);
            }
        }
        // Not sortable: a setting's label is on its first row only.
        sec.table(
            &[
                "setting",
                "method",
                "seeds",
                "healthy",
                "lost modes",
                "spectral collapse",
                "final modes [95% CI]",
                "high-quality share [95% CI]",
                "p vs SN",
            ],
            rows,
            false,
        );
        let c = &v.cooccurrence;
        let n = c.both + c.spectral_only + c.mode_only + c.neither;
        if n == 0 {
            sec.text(
                "No SN run has both mode metrics and a spectral analysis, so spectral collapse \
                 cannot be set against mode loss.",
            );
        } else {
            sec.text(&format!(
                "Spectral collapse against mode loss over the {n} SN run(s) of the judged settings \
                 (two-sided Fisher's exact test: p = {}):",
                c.fisher_p.map(fmt_p).unwrap_or_else(|| "–".into())
            ));
            sec.table(
                &["SN runs", "lost modes", "kept modes"],
                vec![
                    vec![
                        vec![lit("spectral collapse")],
                        cell(c.both.to_string()),
                        cell(c.spectral_only.to_string()),
                    ],
                    vec![
                        vec![lit("no spectral collapse")],
                        cell(c.mode_only.to_string()),
                        cell(c.neither.to_string()),
                    ],
                ],
                false,
            );
            if !c.lags.is_empty() {
                let lags: Vec<String> = c
                    .lags
                    .iter()
                    .map(|l| match l.lag {
                        Some(x) => format!("{} {x}", l.run),
                        None => format!("{} – (no mode drop)", l.run),
                    })
                    .collect();
                sec.para(vec![
                    lit(format!(
                        "With both events, the first spectral fall came within {} iterations of \
                         the largest mode drop in {}/{} run(s); lags |spectral − mode drop| in \
                         iterations: ",
                        p.lag,
                        c.within_lag(),
                        c.both,
                    )),
                    val(lags.join(", ")),
                    lit("."),
                ]);
            }
        }
        if c.excluded > 0 {
            sec.text(&format!(
                "{} SN run(s) without mode metrics or spectral analysis are left out of this table.",
                c.excluded
            ));
        }
    }
    let hq = format!(" and high-quality share ≥ {}", num(p.min_hq));
    sec.para(vec![
        Inline::Em("Healthy".into()),
        lit(format!(
            ": final modes ≥ {}{hq} (the share only where the metrics have one). ",
            num(p.min_modes)
        )),
        Inline::Em("Lost modes".into()),
        lit(format!(": final modes < {}. ", num(p.min_modes))),
        Inline::Em("Spectral collapse".into()),
        lit(": a layer of D still collapsed at the end (the "),
        code("spectral"),
        lit(" stage). "),
        Inline::Em("p vs SN".into()),
        lit(format!(
            ": one-sided Mann–Whitney U on final modes, SR greater than SN; below {} is \"more \
             final modes\", otherwise \"no significant difference\"; per comparison, not \
             corrected for multiple comparisons. [95% CI]: Student t. Every number, per run: ",
            num(super::verdict::ALPHA)
        )),
        link("verdict.json"),
        lit("."),
    ]);
    sec
}

/// The whole report.
pub fn build(doc: &Document) -> Page {
    let t = doc.tables;
    let n_settings = {
        let mut v: Vec<&String> = doc.settings.iter().collect();
        v.sort();
        v.dedup();
        v.len()
    };
    let mut intro = vec![
        lit("Made by the "),
        code("report"),
        lit(format!(
            " builtin (version {VERSION}) from {} run(s) in {n_settings} setting(s). Each run \
             counts with its final metrics row. A setting is everything in the runs' params that \
             varies, except the seed and the method. ",
            doc.runs.len()
        )),
        code("–"),
        lit(" means no value."),
    ];
    if !doc.left_out.is_empty() {
        intro.push(lit(format!(
            " Left out, because no stage of this pipeline makes them: {} run folder(s) (",
            doc.left_out.len()
        )));
        for (k, name) in doc.left_out.iter().enumerate() {
            if k > 0 {
                intro.push(lit(", "));
            }
            intro.push(code(name));
        }
        intro.push(lit(")."));
    }
    let mut sections = vec![verdict_section(doc.verdict)];
    let csv = |name: &str| vec![lit("CSV: "), link(name)];

    let metrics = &t.metrics;
    let mut sec = Section::new("comparison", "Comparison: mean ± std over seeds");
    sec.text("± is the sample standard deviation over seeds.");
    summary_table(&mut sec, &t.summary, metrics);
    sec.para(csv("summary.csv"));
    sections.push(sec);

    let mut sec = Section::new("deltas", "SN → SR deltas");
    if t.deltas.is_empty() {
        sec.text("No setting has both SN and SR runs.");
    } else {
        sec.text(
            "SR mean − SN mean of the same setting; the percentage of |SN mean| only where both \
             arms have more than 3 values (none on fewer seeds).",
        );
        deltas_table(&mut sec, &t.deltas, metrics);
        sec.para(csv("deltas.csv"));
    }
    sections.push(sec);

    let mut sec = Section::new("runs", "Runs");
    runs_table(&mut sec, &t.runs, metrics);
    sec.para(csv("runs.csv"));
    sections.push(sec);

    if let Some(c) = doc.classifier {
        let mut sec = Section::new("classifier", "The Stacked MNIST mode counter");
        let target = if c.test_accuracy >= 0.99 {
            "meets"
        } else {
            "is below"
        };
        let mut span = vec![
            lit(
                "Stacked MNIST modes are counted digit by digit by the MNIST classifier the \
                 pipeline trained (",
            ),
            code(&c.path),
            lit("): "),
            Inline::Strong(format!("{:.2}% test accuracy", 100.0 * c.test_accuracy)),
            lit(format!(
                " on {} MNIST test digits, after {} on {} training digits; this {target} the 99% \
                 aimed for (PacGAN's counter, a Keras demo, reaches about 99.25%).",
                c.n_test,
                match c.epochs {
                    Some(1) => "1 epoch".to_string(),
                    Some(e) => format!("{e} epochs"),
                    None => "training".to_string(),
                },
                c.n_train,
            )),
        ];
        if let Some(a) = &c.architecture {
            span.extend([lit(" Architecture: "), code(a), lit(".")]);
        }
        sec.para(span);
        sections.push(sec);
    }

    let mut sec = Section::new("missing", "Missing inputs");
    if doc.missing.is_empty() {
        sec.text("None: every run has its metrics, spectral analysis, spectra and samples.");
    } else {
        let rows = doc
            .missing
            .iter()
            .map(|m| {
                vec![
                    cell(&m.run),
                    vec![lit(m.what)],
                    vec![code(&m.path)],
                    cell(&m.reason),
                ]
            })
            .collect();
        sec.table(&["run", "input", "path", "status"], rows, true);
    }
    sections.push(sec);

    if doc.paper {
        sections.push(paper_section(doc));
    }

    sections.push(figures_section(doc));

    if let Some(dag) = doc.dag {
        let mut sec = Section::new("pipeline", "Pipeline");
        sec.para(vec![
            lit("The pipeline's graph of stages, as a Mermaid flowchart: "),
            link(dag),
        ]);
        sections.push(sec);
    }

    if let Some(stages) = doc.stage_runs {
        let mut sec = Section::new("stages", "Stage runs");
        sec.para(vec![
            lit("The latest record of each stage. CSV: "),
            link("stages.csv"),
        ]);
        let rows = stages
            .iter()
            .map(|s| {
                vec![
                    vec![code(&s.stage)],
                    cell(&s.outcome),
                    cell(format!("{:.1}", s.wall_seconds)),
                    cell(format!("{:.1}", s.peak_rss_kib as f64 / 1024.0)),
                    vec![lit(if s.cache_hit { "yes" } else { "no" })],
                ]
            })
            .collect();
        sec.table(
            &[
                "stage",
                "outcome",
                "wall time (s)",
                "peak memory (MiB)",
                "cache hit",
            ],
            rows,
            true,
        );
        sections.push(sec);
    }
    Page {
        title: "Report: spectral collapse, SN against SR".into(),
        intro,
        sections,
    }
}

fn figures_section(doc: &Document) -> Section {
    let mut sec = Section::new("figures", "Figures");
    sec.blocks
        .push(Block::Subheading("Normalized spectra over training".into()));
    sec.text(
        "Singular values of the layer's normalized weight divided by the largest, against their \
         index, one curve per logged iteration (blue early, red late), as in the SR paper's \
         Figs. 1–3. Each PNG has an SVG beside it.",
    );
    let mut any = false;
    for (run, f) in doc.runs.iter().zip(doc.run_figures) {
        if let Some((layer, name, path)) = &f.spectra {
            any = true;
            let alt = vec![
                val(&run.name),
                lit(format!(" ({}), layer {layer} ", run.method.label())),
                code(name),
            ];
            sec.para(vec![image(alt, path.to_string_lossy().into_owned())]);
        }
    }
    if !any {
        sec.text("No run has spectra.");
    }
    sec.blocks
        .push(Block::Subheading("Metrics over training".into()));
    if doc.curves.is_empty() {
        sec.text("No run has metrics at numbered iterations.");
    }
    for (setting, heading, path) in doc.curves {
        let alt = vec![lit(format!("{heading}: ")), val(setting)];
        sec.para(vec![image(alt, path.clone())]);
    }
    sec.blocks.push(Block::Subheading("Sample grids".into()));
    let mut any = false;
    for (run, f) in doc.runs.iter().zip(doc.run_figures) {
        if let Some(path) = &f.samples {
            any = true;
            let samples = image(
                vec![lit("samples of "), val(&run.name)],
                path.to_string_lossy().into_owned(),
            );
            let who = Inline::Strong(run.name.clone());
            let label = run.method.label();
            match &f.real {
                // Side by side: what G drew, and what the training set looks like.
                Some(real) => {
                    sec.para(vec![
                        who,
                        lit(format!(
                            " ({label}), beside real images of its training set:"
                        )),
                    ]);
                    let real = image(
                        vec![lit("real images")],
                        real.to_string_lossy().into_owned(),
                    );
                    sec.table(
                        &["samples", "real"],
                        vec![vec![vec![samples], vec![real]]],
                        false,
                    );
                }
                None => {
                    sec.para(vec![who, lit(format!(" ({label}):"))]);
                    sec.para(vec![samples]);
                }
            }
        }
    }
    if !any {
        sec.text("No run has sample grids.");
    }
    sec
}
