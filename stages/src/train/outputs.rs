//! The files of a run directory, written for readers that never load model code.
//!
//! ```text
//! OUT/checkpoint.safetensors   the whole training state (see trainer.rs), atomic
//! OUT/params.json              the stage's `with:` map as given (written by the builtin)
//! OUT/log.csv                  iteration,loss_d,loss_g,lr,seconds_per_step
//! OUT/spectra/<iter>.csv       layer,name,index,sigma: every singular value of every SN layer's
//!                              normalized weight (the one the forward uses), descending;
//!                              `0.csv` is the initialization
//! OUT/samples/<iter>.safetensors, OUT/samples/final.safetensors
//!                              `eval_samples` samples from a fixed z in the prepared format
//!                              (images u8 NCHW from [-1, 1], points f32)
//! OUT/samples/<iter>.png       an 8x8 grid of the first 64 images, or a scatter plot of points
//! ```
//!
//! When a spectrum is taken relative to static/dynamic SR: at the end of G iteration `t`, i.e.
//! after the last D step of iteration `t - 1` and its SR pass if that iteration was due
//! (`(t - 1) % every == 0`). With `spectra_every` a multiple of SR's `every` (5 by default) it
//! was not: the logged spectrum is the weight `every - 1` G iterations (`(every - 1) n_dis` D
//! steps) after the last projection, just before the next, not the projected one. Graph SR's
//! spectra include its `dW`, as the forward does.
//!
//! `layer` in the spectra files is the SR paper's numbering (SN layers sorted by name, from 0),
//! so the CIFAR ResNet's `layer_9` is rows with `layer == 9`. Every file is written to a temp
//! file and renamed into place. Images are mapped to u8 as the official `gen_images` does:
//! `x * 127.5 + 127.5`, clipped to [0, 255], truncated.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use repro_engine::fsutil;

use super::TrainError;
use crate::data::prepared::{self, Dataset, Samples};
use crate::data::DataError;
use crate::nn::linalg;
use crate::nn::spectral_norm::SpectralNorm;

/// The header of `log.csv`.
pub const LOG_HEADER: &str = "iteration,loss_d,loss_g,lr,seconds_per_step";

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    fsutil::write_atomic(path, bytes).map_err(|e| TrainError::Output {
        path: path.to_path_buf(),
        source: DataError::io("write", path, e),
    })
}

/// `log.csv` rows kept in memory and rewritten whole on each append, so the file is always
/// complete and a resumed run drops rows newer than its checkpoint.
pub struct Log {
    path: PathBuf,
    rows: Vec<(u64, String)>,
}

impl Log {
    /// Opens `path`, keeping the rows with iteration `<= upto` (a fresh run keeps none).
    pub fn open(path: &Path, upto: u64) -> Self {
        let mut rows = Vec::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines().skip(1) {
                let it = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
                if let Some(it) = it.filter(|it| *it <= upto) {
                    rows.push((it, line.to_string()));
                }
            }
        }
        Log {
            path: path.to_path_buf(),
            rows,
        }
    }

    /// Appends one row and rewrites the file.
    pub fn append(
        &mut self,
        iteration: u64,
        d: f64,
        g: f64,
        lr: f64,
        secs: f64,
    ) -> Result<(), TrainError> {
        self.rows
            .push((iteration, format!("{iteration},{d},{g},{lr},{secs}")));
        let mut text = String::from(LOG_HEADER);
        text.push('\n');
        for (_, row) in &self.rows {
            text.push_str(row);
            text.push('\n');
        }
        write_file(&self.path, text.as_bytes())
    }
}

/// Writes `spectra/<iteration>.csv` for the given SN layers (in their SR numbering order).
pub fn write_spectra(
    dir: &Path,
    iteration: u64,
    layers: &[&SpectralNorm],
) -> Result<(), TrainError> {
    let mut text = String::from("layer,name,index,sigma\n");
    for (li, layer) in layers.iter().enumerate() {
        let wbar = layer.normalized(false)?;
        let s = linalg::singular_values(&linalg::to_mat(&wbar)?, layer.name())?;
        for (j, sigma) in s.iter().enumerate() {
            // writeln! into a String cannot fail.
            let _ = writeln!(text, "{li},{},{j},{sigma}", layer.name());
        }
    }
    write_file(&dir.join(format!("{iteration}.csv")), text.as_bytes())
}

/// Generated samples as a prepared dataset: images in [-1, 1] become u8, points stay f32.
pub fn samples_dataset(values: &[f32], dims: &[usize], iteration: u64, seed: u64) -> Dataset {
    let samples = match dims {
        [n, c, h, w] => Samples::Images {
            pixels: values.iter().map(|x| to_u8(*x)).collect(),
            shape: [*n, *c, *h, *w],
        },
        [n, d] => Samples::Points {
            coords: values.to_vec(),
            shape: [*n, *d],
        },
        _ => Samples::Points {
            coords: values.to_vec(),
            shape: [values.len(), 1],
        },
    };
    let mut metadata = BTreeMap::new();
    metadata.insert("producer".to_string(), "train-gan".to_string());
    metadata.insert("iteration".to_string(), iteration.to_string());
    metadata.insert("eval_seed".to_string(), seed.to_string());
    Dataset {
        name: "samples".to_string(),
        samples,
        labels: None,
        metadata,
    }
}

fn to_u8(x: f32) -> u8 {
    (x * 127.5 + 127.5).clamp(0.0, 255.0) as u8
}

/// Writes a prepared sample file.
pub fn write_samples(path: &Path, ds: &Dataset) -> Result<(), TrainError> {
    prepared::save(path, ds).map_err(|source| TrainError::Output {
        path: path.to_path_buf(),
        source,
    })
}

/// An 8-bit PNG (gray or RGB) from row-major pixels.
fn encode_png(
    width: usize,
    height: usize,
    color: png::ColorType,
    pixels: &[u8],
) -> Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(pixels)?;
    }
    Ok(bytes)
}

/// A PNG picture of samples: a grid of up to 64 images (8 per row, 2-pixel gaps), or a 256x256
/// scatter plot of 2-D points over `[-extent, extent]^2` with the real data in gray underneath.
pub fn sample_png(
    path: &Path,
    ds: &Dataset,
    real: Option<(&[f32], f32)>,
) -> Result<(), TrainError> {
    let bytes = sample_png_bytes(ds, real).map_err(|e| TrainError::Png {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_file(path, &bytes)
}

/// The bytes of [`sample_png`]'s picture (the report draws real images the same way).
pub fn sample_png_bytes(
    ds: &Dataset,
    real: Option<(&[f32], f32)>,
) -> Result<Vec<u8>, png::EncodingError> {
    Ok(match &ds.samples {
        Samples::Images {
            pixels,
            shape: [n, c, h, w],
        } => {
            let count = (*n).min(64);
            let cols = count.clamp(1, 8);
            let rows = count.div_ceil(cols).max(1);
            let gap = 2;
            let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
            let out_c = if *c == 1 { 1 } else { 3 };
            let mut img = vec![255u8; gw * gh * out_c];
            for k in 0..count {
                let (oy, ox) = (gap + (k / cols) * (h + gap), gap + (k % cols) * (w + gap));
                for y in 0..*h {
                    for x in 0..*w {
                        for ch in 0..out_c {
                            let src = k * c * h * w + ch.min(c - 1) * h * w + y * w + x;
                            img[((oy + y) * gw + ox + x) * out_c + ch] = pixels[src];
                        }
                    }
                }
            }
            let color = if out_c == 1 {
                png::ColorType::Grayscale
            } else {
                png::ColorType::Rgb
            };
            encode_png(gw, gh, color, &img)?
        }
        Samples::Points {
            coords,
            shape: [n, d],
        } => {
            let size = 256usize;
            let mut img = vec![255u8; size * size];
            let extent = real.map(|r| r.1).unwrap_or(1.0).max(1e-6);
            let mut plot = |pts: &[f32], dim: usize, shade: u8| {
                for p in pts.chunks(dim.max(1)) {
                    if p.len() < 2 {
                        continue;
                    }
                    let px = ((p[0] / extent + 1.0) * 0.5 * (size - 1) as f32).round();
                    let py = ((1.0 - (p[1] / extent + 1.0) * 0.5) * (size - 1) as f32).round();
                    if (0.0..size as f32).contains(&px) && (0.0..size as f32).contains(&py) {
                        let i = py as usize * size + px as usize;
                        img[i] = img[i].min(shade);
                    }
                }
            };
            if let Some((pts, _)) = real {
                plot(pts, *d, 190);
            }
            plot(&coords[..(*n * *d).min(coords.len())], *d, 0);
            encode_png(size, size, png::ColorType::Grayscale, &img)?
        }
    })
}
