//! The report's figures, drawn with plotters into memory and returned as bytes: every figure
//! as a PNG (bitmap backend, encoded with `png`) and an SVG (SVG backend).
//!
//! Decisions that must not change silently:
//! - **Byte-determinism.** Nothing here reads the clock, the host or the system fonts. Text is
//!   drawn with the DejaVu Sans file committed beside this module (`font/`, Bitstream Vera
//!   licence) through plotters' `ab_glyph` feature, so the same inputs give the same pixels on
//!   any machine, and PNGs are encoded by `png` with fixed settings (no time chunk).
//! - **Normalized spectra** (the SR paper's Figs. 1–3, sn_sr.md §5.3): for the chosen layer,
//!   every logged iteration's singular values divided by that iteration's largest one (so the
//!   leading value is 1), against their index. Not squared (that is the SN paper's Fig. 3
//!   convention, which we do not use). At most [`MAX_SPECTRA_CURVES`] iterations are drawn,
//!   evenly spaced over the logged ones, always including the first and the last.
//! - **Curves over training**: one figure per setting and metric that the setting's runs have at
//!   numbered iterations (the `final` row has no iteration and is left out). Per method, the mean
//!   over the seeds that logged each iteration, with a shaded **min–max band** over those seeds
//!   (min–max, not a t-interval: it shows every seed's extent, and stays honest on 2–3 seeds).
//!   Along the bottom, one small marker per run and event, in the method's colour: a triangle at
//!   the run's largest mode drop, a cross at its first sharp spectral fall (both as
//!   [`super::verdict`] defines them). Mode counts get integer ticks.
//! - **Sample grids** are the training run's own `samples/*.png`, copied as they are (the newest:
//!   `final.png`, else the highest iteration). Beside each, for image runs, the first 64 images
//!   of its training set drawn the same way (`figures/real/`, once per dataset), which the
//!   report reads only when the pipeline declares the dataset as one of its deps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::inputs::{show, Missing, Run};
use super::{Files, ReportError};
use crate::data::prepared::{Dataset, Samples};

/// Figure size in pixels (PNG) and user units (SVG).
pub const SIZE: (u32, u32) = (720, 450);

/// The most iterations one spectra figure draws.
pub const MAX_SPECTRA_CURVES: usize = 8;

const FONT: &[u8] = include_bytes!("font/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() -> Result<(), ReportError> {
    static ONCE: Once = Once::new();
    let mut failed = false;
    ONCE.call_once(|| {
        failed = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err();
    });
    if failed {
        return Err(ReportError::Figure(
            "the committed font `font/DejaVuSans.ttf` could not be parsed".into(),
        ));
    }
    Ok(())
}

/// One line of a figure.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry; `None` to share the entry of an earlier series of the same colour.
    pub legend: Option<String>,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// A shaded band between two curves (drawn under the lines).
#[derive(Debug, Clone)]
pub struct Band {
    pub color: RGBColor,
    /// `(x, low, high)`, by x.
    pub points: Vec<(f64, f64, f64)>,
}

/// What an [`Event`] marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A run's largest mode drop (triangle).
    ModeDrop,
    /// A run's first sharp spectral fall (cross).
    SpectralFall,
}

/// One run's event, marked at its iteration along the bottom of the chart.
#[derive(Debug, Clone)]
pub struct Event {
    pub x: f64,
    pub kind: EventKind,
    pub color: RGBColor,
}

/// A line chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    pub events: Vec<Event>,
    /// Ticks only at integers (counts: modes, the index of a singular value).
    pub integer_x: bool,
    pub integer_y: bool,
    /// Leave room above the data for the legend, so it covers no curve.
    pub legend_room: bool,
}

/// At most this many tick labels per axis.
const MAX_TICKS: usize = 10;

/// How many tick labels an integer axis over `(lo, hi)` asks for: no more than the integers in
/// it, so plotters' 1-2-5 steps never go below 1.
fn integer_ticks(lo: f64, hi: f64) -> usize {
    let n = (hi.floor() - lo.ceil()).max(0.0) as usize + 1;
    n.clamp(2, MAX_TICKS)
}

fn integer_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{:.0}", v.round())
    } else {
        String::new()
    }
}

impl Chart {
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self.series.iter().flat_map(|s| s.points.iter().copied());
        let band_pts = self
            .bands
            .iter()
            .flat_map(|b| b.points.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in pts.chain(band_pts) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        let pad = |a: f64, b: f64| {
            let span = b - a;
            if span <= 0.0 {
                let d = a.abs().max(1.0) * 0.05;
                (a - d, b + d)
            } else {
                (a - span * 0.05, b + span * 0.05)
            }
        };
        let (x0, x1) = if x1 > x0 { (x0, x1) } else { pad(x0, x1) };
        let (y0, y1) = pad(y0.min(if y0 >= 0.0 { 0.0 } else { y0 }), y1);
        // Room below the data for the event markers.
        let y0 = if self.events.is_empty() {
            y0
        } else {
            y0 - 0.12 * (y1 - y0)
        };
        // Room above it for the legend: its entries take about 17 px each of a plot area about
        // 350 px high, so the top fraction `f` of the range is left free.
        let y1 = if self.legend_room {
            let entries = self.series.iter().filter(|s| s.legend.is_some()).count()
                + [EventKind::ModeDrop, EventKind::SpectralFall]
                    .iter()
                    .filter(|k| self.events.iter().any(|e| e.kind == **k))
                    .count();
            let f = ((entries * 17 + 14) as f64 / 350.0).min(0.45);
            y1 + f / (1.0 - f) * (y1 - y0)
        } else {
            y1
        };
        ((x0, x1), (y0, y1))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        // A long setting label in the title shrinks the font (about 0.55 em a character) so the
        // title fits the figure's width, down to 11 px.
        let chars = self.title.chars().count().max(1) as f64;
        let title_px = (f64::from(SIZE.0 - 24) / (0.55 * chars)).clamp(11.0, 18.0) as u32;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, title_px))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE);
        if self.integer_x {
            mesh.x_labels(integer_ticks(x0, x1))
                .x_label_formatter(&integer_label);
        }
        // Counts: no tick labels below the data's floor (the strip of event markers under a
        // count that is never negative gets no "-1").
        let data_floor = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.1)))
            .fold(0.0f64, f64::min)
            .floor();
        let count_label = move |v: &f64| {
            if *v < data_floor - 1e-9 {
                String::new()
            } else {
                integer_label(v)
            }
        };
        if self.integer_y {
            mesh.y_labels(integer_ticks(y0, y1))
                .y_label_formatter(&count_label);
        }
        mesh.draw().map_err(|e| err(&e))?;
        for b in &self.bands {
            let mut outline: Vec<(f64, f64)> = b.points.iter().map(|p| (p.0, p.2)).collect();
            outline.extend(b.points.iter().rev().map(|p| (p.0, p.1)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    b.color.mix(0.18).filled(),
                )))
                .map_err(|e| err(&e))?;
        }
        let mut any_legend = false;
        for s in &self.series {
            let color = s.color;
            let drawn = chart
                .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?;
            if let Some(label) = &s.legend {
                any_legend = true;
                drawn.label(label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
            if s.points.len() <= 30 {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 2, color.filled())))
                    .map_err(|e| err(&e))?;
            }
        }
        // Events in two rows along the bottom: spectral falls below, mode drops above.
        let span = y1 - y0;
        for (kind, row, legend) in [
            (
                EventKind::SpectralFall,
                0.035,
                "first spectral fall (one mark per run)",
            ),
            (
                EventKind::ModeDrop,
                0.08,
                "largest mode drop (one mark per run)",
            ),
        ] {
            let at: Vec<(f64, RGBColor)> = self
                .events
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| (e.x, e.color))
                .collect();
            if at.is_empty() {
                continue;
            }
            let y = y0 + row * span;
            let drawn = match kind {
                EventKind::SpectralFall => chart.draw_series(
                    at.iter()
                        .map(|&(x, c)| Cross::new((x, y), 4, c.stroke_width(2))),
                ),
                EventKind::ModeDrop => chart.draw_series(
                    at.iter()
                        .map(|&(x, c)| TriangleMarker::new((x, y), 5, c.filled())),
                ),
            }
            .map_err(|e| err(&e))?;
            any_legend = true;
            let drawn = drawn.label(legend);
            match kind {
                EventKind::SpectralFall => drawn.legend(|(x, y)| {
                    EmptyElement::at((x + 9, y)) + Cross::new((0, 0), 4, BLACK.stroke_width(2))
                }),
                EventKind::ModeDrop => drawn.legend(|(x, y)| {
                    EmptyElement::at((x + 9, y)) + TriangleMarker::new((0, 0), 5, BLACK.filled())
                }),
            };
        }
        if any_legend {
            chart
                .configure_series_labels()
                .label_font((FAMILY, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))
    }

    /// The chart as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>, ReportError> {
        register_font()?;
        let (w, h) = SIZE;
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root).map_err(ReportError::Figure)?;
        }
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc
                .write_header()
                .map_err(|e| ReportError::Figure(e.to_string()))?;
            writer
                .write_image_data(&rgb)
                .map_err(|e| ReportError::Figure(e.to_string()))?;
        }
        Ok(bytes)
    }

    /// The chart as SVG text.
    pub fn svg(&self) -> Result<Vec<u8>, ReportError> {
        register_font()?;
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
            self.draw(&root).map_err(ReportError::Figure)?;
        }
        Ok(text.into_bytes())
    }

    /// Adds `<stem>.png` and `<stem>.svg` to `files`.
    pub fn render_into(&self, stem: &Path, files: &mut Files) -> Result<(), ReportError> {
        files.insert(stem.with_extension("png"), self.png()?);
        files.insert(stem.with_extension("svg"), self.svg()?);
        Ok(())
    }
}

/// The colour of a method in every curve figure.
pub fn method_color(rank: u32) -> RGBColor {
    match rank {
        0 => RGBColor(31, 119, 180),
        1 => RGBColor(255, 127, 14),
        2 => RGBColor(44, 160, 44),
        3 => RGBColor(148, 103, 189),
        4 => RGBColor(127, 127, 127),
        _ => RGBColor(140, 86, 75),
    }
}

/// Early iterations blue, late ones red.
fn iteration_color(k: usize, n: usize) -> RGBColor {
    let t = if n <= 1 {
        1.0
    } else {
        k as f64 / (n - 1) as f64
    };
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(30.0, 214.0), lerp(80.0, 39.0), lerp(200.0, 40.0))
}

/// One iteration's singular values of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    pub iteration: u64,
    pub sigmas: Vec<f64>,
}

/// Reads `RUN/spectra/<iter>.csv` for `layer`, or for [`super::inputs::default_layer`] when
/// `layer` is `None`, with the `spectral` module's reader (the one parser of that format).
/// Returns the layer used and one spectrum per file, by iteration; `Err` is a reason for the
/// missing-inputs list.
pub fn read_spectra(
    base: &Path,
    run: &Run,
    layer: Option<u64>,
) -> Result<(u64, String, Vec<Spectrum>), String> {
    use crate::spectral::history::{parse_spectra, spectra_files};
    use crate::spectral::SpectralError;
    let dir = base.join(&run.dir).join("spectra");
    if !dir.is_dir() {
        return Err("missing".into());
    }
    let files = spectra_files(&dir).map_err(|e| match e {
        SpectralError::NoSpectra { .. } => "missing (no `<iteration>.csv` files)".to_string(),
        other => format!("unreadable: {other}"),
    })?;
    // (iteration, layers of that file)
    let mut read = Vec::with_capacity(files.len());
    for (it, path) in &files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("unreadable: `{}`: {e}", show(path)))?;
        let layers = parse_spectra(&text, path).map_err(|e| format!("unreadable: {e}"))?;
        read.push((*it, layers));
    }
    let mut ranks: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, layers) in &read {
        for l in layers {
            let n = ranks.entry(u64::from(l.layer)).or_default();
            *n = (*n).max(l.sigmas.len() as u64);
        }
    }
    let Some(chosen) = layer.or_else(|| super::inputs::default_layer(ranks.into_iter())) else {
        return Err("unreadable: the spectra files have no rows".into());
    };
    let mut name = None;
    let mut spectra = Vec::new();
    for (iteration, layers) in read {
        if let Some(l) = layers.into_iter().find(|l| u64::from(l.layer) == chosen) {
            name.get_or_insert(l.name);
            spectra.push(Spectrum {
                iteration,
                sigmas: l.sigmas,
            });
        }
    }
    let name = name.ok_or_else(|| format!("missing (no layer {chosen} in the spectra files)"))?;
    Ok((chosen, name, spectra))
}

/// Picks at most `max` evenly spaced items, always the first and the last.
pub fn thin<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max < 2 {
        return items.to_vec();
    }
    let n = items.len();
    let mut picked: Vec<usize> = (0..max)
        .map(|k| (k * (n - 1) + (max - 1) / 2) / (max - 1))
        .collect();
    picked.dedup();
    picked.into_iter().map(|i| items[i].clone()).collect()
}

/// The normalized-spectra chart of one run's layer.
pub fn spectra_chart(run: &Run, layer: u64, layer_name: &str, spectra: &[Spectrum]) -> Chart {
    let shown = thin(spectra, MAX_SPECTRA_CURVES);
    let series = shown
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let top = s.sigmas.iter().copied().fold(0.0f64, f64::max);
            let points = s
                .sigmas
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, if top > 0.0 { v / top } else { 0.0 }))
                .collect();
            Series {
                legend: Some(format!("iter {}", s.iteration)),
                color: iteration_color(k, shown.len()),
                points,
            }
        })
        .collect();
    Chart {
        title: format!(
            "{} ({}): layer {layer} `{layer_name}`",
            run.name,
            run.method.label()
        ),
        x_label: "index of singular value".into(),
        y_label: "σ / σ₁".into(),
        series,
        integer_x: true,
        ..Chart::default()
    }
}

/// One method's values of one metric: by iteration, the seeds' values; and how many runs.
type MethodCurves = (BTreeMap<u64, Vec<f64>>, u64);

/// One curve chart per metric for the runs of one setting (`runs` all share the setting): per
/// method the mean over seeds and a min–max band, with every run's events (see the module docs).
pub fn curve_charts(
    setting: &str,
    runs: &[&Run],
    metrics: &[(&str, &str)],
) -> Vec<(String, Chart)> {
    let mut charts = Vec::new();
    for (metric, heading) in metrics {
        // (method rank, label) -> iteration -> the seeds' values; and the runs with any.
        let mut by_method: BTreeMap<(u32, String), MethodCurves> = BTreeMap::new();
        let mut events = Vec::new();
        for run in runs {
            let points: Vec<(u64, f64)> = run
                .metrics
                .iter()
                .filter_map(|r| Some((r.iteration?, r.values.get(metric).copied()??)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = method_color(run.method.rank());
            let entry = by_method
                .entry((run.method.rank(), run.method.label()))
                .or_default();
            entry.1 += 1;
            for (it, v) in points {
                entry.0.entry(it).or_default().push(v);
            }
            if let Some((it, _)) = super::verdict::run_mode_drop(run) {
                events.push(Event {
                    x: it as f64,
                    kind: EventKind::ModeDrop,
                    color,
                });
            }
            if let Some(it) = super::verdict::spectral_iteration(run) {
                events.push(Event {
                    x: it as f64,
                    kind: EventKind::SpectralFall,
                    color,
                });
            }
        }
        if by_method.is_empty() {
            continue;
        }
        let mut series = Vec::new();
        let mut bands = Vec::new();
        for ((rank, label), (by_iter, n_runs)) in &by_method {
            let color = method_color(*rank);
            let mut mean = Vec::new();
            let mut band = Vec::new();
            for (it, values) in by_iter {
                let x = *it as f64;
                let m = values.iter().sum::<f64>() / values.len() as f64;
                let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                mean.push((x, m));
                band.push((x, lo, hi));
            }
            let legend = if *n_runs == 1 {
                format!("{label} (1 run)")
            } else {
                format!("{label}: mean of {n_runs} runs, min–max band")
            };
            series.push(Series {
                legend: Some(legend),
                color,
                points: mean,
            });
            if *n_runs > 1 {
                bands.push(Band {
                    color,
                    points: band,
                });
            }
        }
        events.sort_by(|a, b| a.x.total_cmp(&b.x));
        charts.push((
            (*metric).to_string(),
            Chart {
                title: format!("{heading}: {setting}"),
                x_label: "iteration".into(),
                y_label: (*heading).into(),
                series,
                bands,
                events,
                integer_x: true,
                integer_y: *metric == "modes",
                legend_room: true,
            },
        ));
    }
    charts
}

/// The newest sample grid of a run: `samples/final.png`, else the highest `samples/<iter>.png`.
pub fn latest_samples(base: &Path, run: &Run) -> Option<PathBuf> {
    let dir = run.dir.join("samples");
    if base.join(&dir).join("final.png").is_file() {
        return Some(dir.join("final.png"));
    }
    let entries = std::fs::read_dir(base.join(&dir)).ok()?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .filter_map(|p| {
            let it = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
            Some((it, p.file_name()?.to_owned()))
        })
        .max()
        .map(|(_, name)| dir.join(name))
}

/// File-name-safe form of a label: lowercase ASCII letters, digits and `-`.
pub fn slug(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '.' {
            out.push('p');
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// What the Markdown links to, per run.
#[derive(Debug, Default, Clone)]
pub struct RunFigures {
    /// `(layer, name, path of the PNG)` of the spectra figure.
    pub spectra: Option<(u64, String, PathBuf)>,
    pub samples: Option<PathBuf>,
    /// The first images of the run's training set, drawn like its samples.
    pub real: Option<PathBuf>,
}

/// How many real images a grid shows: as many as a sample grid.
const REAL_GRID: usize = 64;

/// The first [`REAL_GRID`] images of the run's training set as a grid drawn like the sample
/// grids (`figures/real/<dataset stem>.png`, once per dataset), to read the samples against.
/// `None` for a run without a `dataset` or of the MLP (a point set: its sample plots already
/// draw the real points underneath); an image dataset that cannot be read is noted as missing.
fn real_grid(
    base: &Path,
    run: &Run,
    files: &mut Files,
    missing: &mut Vec<Missing>,
) -> Option<PathBuf> {
    let path = run.dataset.as_ref()?;
    if run
        .params
        .get("model.arch")
        .is_none_or(|arch| arch == "mlp")
    {
        return None;
    }
    let stem = path.file_stem()?.to_string_lossy();
    let dst = PathBuf::from("figures/real").join(format!("{}.png", slug(&stem)));
    if files.contains_key(&dst) {
        return Some(dst);
    }
    let mut note = |reason: String| {
        missing.push(Missing {
            run: run.name.clone(),
            what: "real images",
            path: show(path),
            reason,
        })
    };
    if !base.join(path).is_file() {
        note("missing (a report draws it only when the dataset is one of its deps)".into());
        return None;
    }
    let ds = match crate::data::prepared::load(&base.join(path)) {
        Ok(ds) => ds,
        Err(e) => {
            note(format!("unreadable: {e}"));
            return None;
        }
    };
    let Samples::Images { pixels, shape } = &ds.samples else {
        return None;
    };
    let n = shape[0].min(REAL_GRID);
    let per = shape[1] * shape[2] * shape[3];
    let first = Dataset {
        name: ds.name.clone(),
        samples: Samples::Images {
            pixels: pixels[..n * per].to_vec(),
            shape: [n, shape[1], shape[2], shape[3]],
        },
        labels: None,
        metadata: Default::default(),
    };
    match crate::train::outputs::sample_png_bytes(&first, None) {
        Ok(bytes) => {
            files.insert(dst.clone(), bytes);
            Some(dst)
        }
        Err(e) => {
            note(format!("cannot draw: {e}"));
            None
        }
    }
}

/// Renders the per-run figures (spectra, copied samples) into `files`, noting what is missing.
pub fn run_figures(
    base: &Path,
    run: &Run,
    layer: Option<u64>,
    files: &mut Files,
    missing: &mut Vec<Missing>,
) -> Result<RunFigures, ReportError> {
    let mut out = RunFigures::default();
    match read_spectra(base, run, layer) {
        Ok((l, name, spectra)) if !spectra.is_empty() => {
            let stem = PathBuf::from("figures/spectra").join(slug(&run.name));
            spectra_chart(run, l, &name, &spectra).render_into(&stem, files)?;
            out.spectra = Some((l, name, stem.with_extension("png")));
        }
        Ok(_) => {}
        Err(reason) => missing.push(Missing {
            run: run.name.clone(),
            what: "spectra",
            path: show(&run.dir.join("spectra")),
            reason,
        }),
    }
    match latest_samples(base, run) {
        Some(src) => {
            let bytes = std::fs::read(base.join(&src))
                .map_err(repro_engine::fsutil::fs_err("read", &src))?;
            let dst = PathBuf::from("figures/samples").join(format!("{}.png", slug(&run.name)));
            files.insert(dst.clone(), bytes);
            out.samples = Some(dst);
        }
        None => missing.push(Missing {
            run: run.name.clone(),
            what: "samples",
            path: show(&run.dir.join("samples")),
            reason: "missing (no `final.png` or `<iteration>.png`)".into(),
        }),
    }
    out.real = real_grid(base, run, files, missing);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_keeps_first_and_last() {
        let v: Vec<u32> = (0..20).collect();
        let t = thin(&v, 5);
        assert_eq!(t.first(), Some(&0));
        assert_eq!(t.last(), Some(&19));
        assert_eq!(t.len(), 5);
        assert_eq!(thin(&v[..3], 5), vec![0, 1, 2]);
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(
            slug("ring · mlp hidden=128 · batch 64"),
            "ring-mlp-hidden-128-batch-64"
        );
        assert_eq!(slug("SR static (0.5)"), "sr-static-0p5");
    }
}
