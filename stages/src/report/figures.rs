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
//! - **Curves over training**: one line per run, coloured by method, for every metric that the
//!   setting's runs have at numbered iterations (the `final` row has no iteration and is left out).
//! - **Sample grids** are the training run's own `samples/*.png`, copied as they are (the newest:
//!   `final.png`, else the highest iteration).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::inputs::{show, Missing, Run};
use super::{Files, ReportError};

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

/// A line chart.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

impl Chart {
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
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
        ((x0, x1), pad(y0.min(if y0 >= 0.0 { 0.0 } else { y0 }), y1))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| err(&e))?;
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

/// Reads `RUN/spectra/<iter>.csv` (`layer,name,index,sigma`) for `layer`, or for
/// [`super::inputs::default_layer`] when `layer` is `None`. Returns the layer used and one spectrum per file,
/// by iteration; `Err` is a reason for the missing-inputs list.
pub fn read_spectra(
    base: &Path,
    run: &Run,
    layer: Option<u64>,
) -> Result<(u64, String, Vec<Spectrum>), String> {
    let dir = base.join(&run.dir).join("spectra");
    let entries = std::fs::read_dir(&dir).map_err(|_| "missing".to_string())?;
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .filter_map(|p| {
            let it = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
            Some((it, p))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err("missing (no `<iteration>.csv` files)".into());
    }
    // (iteration, layer, name, index, sigma)
    let mut rows: Vec<(u64, u64, String, usize, f64)> = Vec::new();
    for (it, path) in &files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("unreadable: `{}`: {e}", show(path)))?;
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let parsed = (f.len() == 4)
                .then(|| {
                    Some((
                        f[0].parse::<u64>().ok()?,
                        f[2].parse::<usize>().ok()?,
                        f[3].parse::<f64>().ok()?,
                    ))
                })
                .flatten();
            let Some((l, idx, sigma)) = parsed else {
                return Err(format!(
                    "unreadable: line {} of `{it}.csv` is not `layer,name,index,sigma`",
                    n + 1
                ));
            };
            rows.push((*it, l, f[1].to_string(), idx, sigma));
        }
    }
    let mut ranks: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &rows {
        let n = ranks.entry(r.1).or_default();
        *n = (*n).max(r.3 as u64 + 1);
    }
    let Some(chosen) = layer.or_else(|| super::inputs::default_layer(ranks.into_iter())) else {
        return Err("unreadable: the spectra files have no rows".into());
    };
    let name = rows
        .iter()
        .find(|r| r.1 == chosen)
        .map(|r| r.2.clone())
        .ok_or_else(|| format!("missing (no layer {chosen} in the spectra files)"))?;
    let mut by_iter: BTreeMap<u64, Vec<(usize, f64)>> = BTreeMap::new();
    for (it, l, _, idx, sigma) in rows {
        if l == chosen {
            by_iter.entry(it).or_default().push((idx, sigma));
        }
    }
    let spectra = by_iter
        .into_iter()
        .map(|(iteration, mut v)| {
            v.sort_by_key(|p| p.0);
            Spectrum {
                iteration,
                sigmas: v.into_iter().map(|p| p.1).collect(),
            }
        })
        .collect();
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
    }
}

/// One curve chart per metric for the runs of one setting (`runs` all share the setting).
pub fn curve_charts(
    setting: &str,
    runs: &[&Run],
    metrics: &[(&str, &str)],
) -> Vec<(String, Chart)> {
    let mut charts = Vec::new();
    for (metric, heading) in metrics {
        let mut series = Vec::new();
        let mut seen_methods = Vec::new();
        for run in runs {
            let points: Vec<(f64, f64)> = run
                .metrics
                .iter()
                .filter_map(|r| Some((r.iteration? as f64, r.values.get(metric).copied()??)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let label = run.method.label();
            let legend = (!seen_methods.contains(&label)).then(|| label.clone());
            seen_methods.push(label);
            series.push(Series {
                legend,
                color: method_color(run.method.rank()),
                points,
            });
        }
        if series.is_empty() {
            continue;
        }
        charts.push((
            (*metric).to_string(),
            Chart {
                title: format!("{heading}: {setting}"),
                x_label: "iteration".into(),
                y_label: (*heading).into(),
                series,
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
            let bytes = std::fs::read(base.join(&src)).map_err(|source| ReportError::Io {
                action: "read",
                path: src.clone(),
                source,
            })?;
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
