//! Reading a training run's `spectra/` directory into per-layer histories of summaries.
//!
//! The format is the training stage's (`train/outputs.rs`): one `spectra/<iteration>.csv` per
//! logged iteration, header `layer,name,index,sigma`, one row per singular value of every SN
//! layer's normalized weight; `layer` is the SR paper's numbering. Columns are found by header
//! name, so adding a column upstream does not break this reader.
//!
//! What is checked, because a wrong answer here would be silent: every value is finite and
//! non-negative, each layer's indices are exactly `0..r` in a file, a layer keeps its name and
//! its `r` across iterations. Files whose name is not `<digits>.csv` (temp files of an
//! interrupted writer, notes) are not spectra and are passed over.
//!
//! Only the summaries are kept, not the values: a long run has thousands of values per layer
//! and iteration, and nothing downstream needs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::summary::{summarize, Summary};
use super::SpectralError;

/// The columns a spectra file must have.
const COLUMNS: [&str; 4] = ["layer", "name", "index", "sigma"];

/// One layer's summaries over the logged iterations.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerHistory {
    /// The SR paper's layer number.
    pub layer: u32,
    /// The SN layer's name in the model.
    pub name: String,
    /// The number of singular values, `min(d_out, d_in*kh*kw)`.
    pub rank: usize,
    /// `(iteration, summary)`, iterations ascending.
    pub points: Vec<(u64, Summary)>,
}

/// The spectra files of `dir`, as `(iteration, path)` sorted by iteration.
pub fn spectra_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpectralError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A run that never logged spectra has no `spectra/` at all: say that, not ENOENT.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpectralError::NoSpectra {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(SpectralError::io("list", dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpectralError::io("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let iteration = name
            .to_str()
            .and_then(|n| n.strip_suffix(".csv"))
            .filter(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(it) = iteration {
            files.push((it, path));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(SpectralError::NoSpectra {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// One layer's singular values as read from one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileLayer {
    pub layer: u32,
    pub name: String,
    /// Indexed by `index`.
    pub sigmas: Vec<f64>,
}

/// Parses the text of one spectra file (`path` is for messages), layers in ascending order.
pub fn parse_spectra(text: &str, path: &Path) -> Result<Vec<FileLayer>, SpectralError> {
    let bad = |line: usize, message: String| SpectralError::Csv {
        path: path.to_path_buf(),
        line,
        message,
    };
    // A real CSV reader: a layer name may be quoted and hold a comma (`"a, b"`), which a
    // split on commas would turn into a shifted row.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header: Vec<String> = match records.next() {
        Some(Ok(h)) => h
            .iter()
            .map(|f| f.trim_end_matches('\r').to_string())
            .collect(),
        Some(Err(e)) => return Err(bad(1, e.to_string())),
        None => return Err(bad(1, "the file is empty; expected a header".into())),
    };
    let mut col = [0usize; 4];
    for (k, want) in COLUMNS.iter().enumerate() {
        col[k] = header.iter().position(|h| h == want).ok_or_else(|| {
            bad(
                1,
                format!(
                    "no `{want}` column; expected a header `{}`",
                    COLUMNS.join(",")
                ),
            )
        })?;
    }
    // layer -> (name, index -> sigma)
    let mut layers: BTreeMap<u32, (String, BTreeMap<usize, f64>)> = BTreeMap::new();
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            bad(line, e.to_string())
        })?;
        let lineno = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(|f| f.trim_end_matches('\r').is_empty()) {
            continue;
        }
        let fields: Vec<&str> = record.iter().map(|f| f.trim_end_matches('\r')).collect();
        if fields.len() != header.len() {
            return Err(bad(
                lineno,
                format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        let field = |k: usize| fields[col[k]];
        let layer: u32 = field(0)
            .parse()
            .map_err(|_| bad(lineno, format!("layer `{}` is not a number", field(0))))?;
        let index: usize = field(2)
            .parse()
            .map_err(|_| bad(lineno, format!("index `{}` is not a number", field(2))))?;
        let sigma: f64 = field(3)
            .parse()
            .map_err(|_| bad(lineno, format!("sigma `{}` is not a number", field(3))))?;
        if !sigma.is_finite() || sigma < 0.0 {
            return Err(bad(
                lineno,
                format!("sigma `{}` is not a finite non-negative number", field(3)),
            ));
        }
        let (name, sigmas) = layers
            .entry(layer)
            .or_insert_with(|| (field(1).to_string(), BTreeMap::new()));
        if name != field(1) {
            return Err(bad(
                lineno,
                format!("layer {layer} is named both `{name}` and `{}`", field(1)),
            ));
        }
        if sigmas.insert(index, sigma).is_some() {
            return Err(bad(
                lineno,
                format!("layer {layer} has index {index} twice"),
            ));
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    for (layer, (name, sigmas)) in layers {
        let r = sigmas.len();
        // BTreeMap keys are sorted and distinct: they are 0..r exactly when the last one is r-1.
        if sigmas.keys().next_back() != Some(&(r.saturating_sub(1))) {
            return Err(bad(
                0,
                format!("layer {layer} has {r} values but its indices are not 0..{r}"),
            ));
        }
        out.push(FileLayer {
            layer,
            name,
            sigmas: sigmas.into_values().collect(),
        });
    }
    Ok(out)
}

/// Per-layer histories, filled one spectra file at a time (in ascending iteration order).
#[derive(Debug, Default)]
pub struct History {
    layers: BTreeMap<u32, LayerHistory>,
}

impl History {
    /// Adds the layers of the file `path` logged at `iteration`, summarized at `threshold` with
    /// the tail from `tail` (see [`summarize`]).
    pub fn add(
        &mut self,
        iteration: u64,
        path: &Path,
        file: Vec<FileLayer>,
        threshold: f64,
        tail: f64,
    ) -> Result<(), SpectralError> {
        for fl in file {
            let summary = summarize(&fl.sigmas, threshold, tail);
            let h = self.layers.entry(fl.layer).or_insert_with(|| LayerHistory {
                layer: fl.layer,
                name: fl.name.clone(),
                rank: fl.sigmas.len(),
                points: Vec::new(),
            });
            if h.name != fl.name || h.rank != fl.sigmas.len() {
                return Err(SpectralError::LayerChanged {
                    path: path.to_path_buf(),
                    layer: fl.layer,
                    was: format!("`{}` with {} values", h.name, h.rank),
                    now: format!("`{}` with {} values", fl.name, fl.sigmas.len()),
                });
            }
            h.points.push((iteration, summary));
        }
        Ok(())
    }

    /// The histories, by ascending layer number.
    pub fn into_layers(self) -> Vec<LayerHistory> {
        self.layers.into_values().collect()
    }
}

/// Reads every spectra file of `dir` into histories summarized at `threshold` and `tail`;
/// `progress(done, total)` after each file.
pub fn read_history(
    dir: &Path,
    threshold: f64,
    tail: f64,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<LayerHistory>, SpectralError> {
    let files = spectra_files(dir)?;
    let mut history = History::default();
    for (k, (iteration, path)) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(|e| SpectralError::io("read", path, e))?;
        history.add(
            *iteration,
            path,
            parse_spectra(&text, path)?,
            threshold,
            tail,
        )?;
        progress(k + 1, files.len());
    }
    Ok(history.into_layers())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<FileLayer>, SpectralError> {
        parse_spectra(text, Path::new("spectra/10.csv"))
    }

    #[test]
    fn parses_layers_by_header_name() {
        let layers = parse("name,layer,sigma,index\nb,1,0.5,1\nb,1,1,0\na,0,1,0\n").unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!((layers[0].layer, layers[0].name.as_str()), (0, "a"));
        assert_eq!(layers[1].sigmas, vec![1.0, 0.5]);
    }

    #[test]
    fn a_quoted_name_with_a_comma_stays_one_field() {
        let layers =
            parse("layer,name,index,sigma\r\n0,\"conv, 1\",0,1\r\n0,\"conv, 1\",1,0.25\r\n")
                .unwrap();
        assert_eq!(layers[0].name, "conv, 1");
        assert_eq!(layers[0].sigmas, vec![1.0, 0.25]);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let cases = [
            ("layer,name,index,sigma\n0,a,0,x\n", "line 2", "sigma `x`"),
            (
                "layer,name,index,sigma\n0,a,0,1\n0,a,0,1\n",
                "line 3",
                "index 0 twice",
            ),
            (
                "layer,name,index,sigma\n0,a,0,-1\n",
                "line 2",
                "non-negative",
            ),
            ("layer,name,index,sigma\n0,a,0,NaN\n", "line 2", "finite"),
            (
                "layer,name,index,sigma\n0,a,0,1\n0,b,1,1\n",
                "line 3",
                "named both",
            ),
            ("layer,name,index,sigma\n0,a,1\n", "line 2", "3 fields"),
            ("layer,name,sigma\n", "line 1", "no `index` column"),
            (
                "layer,name,index,sigma\n0,a,0,1\n0,a,2,1\n",
                "spectra/10.csv",
                "not 0..2",
            ),
        ];
        for (text, at, what) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(at) && err.contains(what), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_layer_that_changes_shape_is_an_error() {
        let mut h = History::default();
        let one = parse("layer,name,index,sigma\n0,a,0,1\n").unwrap();
        let two = parse("layer,name,index,sigma\n0,a,0,1\n0,a,1,1\n").unwrap();
        h.add(0, Path::new("0.csv"), one, 0.5, 0.5).unwrap();
        let err = h.add(1, Path::new("1.csv"), two, 0.5, 0.5).unwrap_err();
        assert!(err.to_string().contains("layer 0"), "{err}");
    }
}
