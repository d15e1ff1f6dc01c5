//! The `train-gan` builtin: trains an (SN/SR-)GAN and writes one run directory.
//!
//! The stage reads a prepared dataset, builds G and D from `model:`, and runs `iterations`
//! generator updates ([`trainer`] owns the update rules and the training state, [`outputs`] the
//! files). It is restartable: when `OUT/checkpoint.safetensors` exists (the engine copies
//! `persist: true` outs into the staging directory) and was written under the same identity
//! params ([`params::TrainParams::identity`]), training resumes from it, and on the CPU the
//! result is bit-identical to an uninterrupted run. A checkpoint written under other identity
//! params, or by another version of this builtin (its `train_gan_version` key), is set aside
//! with a message and training starts over: its state is not this run's. Nothing is lost by
//! that, since the directory is the engine's staging copy of the published run.
//!
//! When things are written, for completed G iteration `t`: a log row when `t % log_every == 0`,
//! spectra when `t % spectra_every == 0` (`t = 0` included: the initialization's spectrum, on a
//! fresh start and when `spectra_every > 0`), samples when `t % sample_every == 0` (`t = 0` too,
//! likewise), a checkpoint when
//! `t % checkpoint_every == 0`; and all of them at the end (`t == iterations`), plus
//! `samples/final.safetensors`. With `stop_after: k` the run checkpoints at `k` and returns.
//! A NaN or infinite loss ends the stage with an error naming the iteration.

pub mod device;
pub mod outputs;
pub mod params;
pub mod trainer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::data::error::DataError;
use crate::data::prepared::{self, Samples};
use crate::nn::models::DataShape;
use crate::nn::NnError;
use params::TrainParams;
use repro_engine::builtin::{Builtin, Context, Kind, StageError};
use trainer::{HostData, Trainer};

/// The `train-gan` version (see [`BUILTIN`]); also written into each checkpoint, so a run of
/// another version starts over instead of resuming.
pub const VERSION: u32 = 4;

/// The registry entry.
///
/// Version 2 (was 1): `spectra/0.csv`, the spectrum at initialization, is written too. Every
/// other output is bit-identical to version 1's for the same params (logging a spectrum changes
/// no training state); the bump is because the run directory a stage key stands for changed.
/// Version 3: `samples/0.*`, the untrained G's samples, likewise; and the MLP's `d_hidden`.
/// Version 4: SR's decompositions run sequentially in faer (`nn::linalg`), so a run is the same
/// bits on every machine; before, static, dynamic and graph SR rounded differently with the
/// number of cores (SN-only runs are unchanged). The checkpoint identity is hashed from JSON
/// (`model` and `sr` in their params' shape) instead of Rust's Debug text, which no one
/// promises to keep stable; version 3 checkpoints therefore do not resume.
pub const BUILTIN: &dyn Builtin = &Kind::<TrainParams> {
    kind: "train-gan",
    version: VERSION,
    summary: "train an SN/SR GAN; writes a checkpoint, log.csv, spectra/ and samples/",
    run,
};

/// Empties a run directory for a fresh start, except `params.json`: the builtin has just
/// written this run's params there, and they describe the new run as much as the old.
fn clear_for_a_new_run(out: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(out)? {
        let entry = entry?;
        if entry.file_name() != "params.json" {
            repro_engine::fsutil::remove_path(&entry.path())?;
        }
    }
    Ok(())
}

/// The checkpoint key holding the `train-gan` version that wrote it.
const VERSION_KEY: &str = "train_gan_version";

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A model, SN or SR operation failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A tensor operation outside the models failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The dataset could not be read.
    #[error("cannot read the training data `{path}`: {source}")]
    Data {
        path: PathBuf,
        #[source]
        source: DataError,
    },
    /// An output file could not be written.
    #[error("cannot write `{path}`: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: DataError,
    },
    /// A sample grid could not be encoded.
    #[error("cannot encode the png `{path}`: {message}")]
    Png { path: PathBuf, message: String },
    /// A loss became NaN or infinite.
    #[error("the {which} loss is {value} at iteration {iteration}; training diverged, lower `lr` or check the data")]
    NonFinite {
        iteration: u64,
        which: &'static str,
        value: f64,
    },
    /// The checkpoint is unreadable.
    #[error("cannot read the checkpoint `{path}`: {message}; delete it to start over")]
    Checkpoint { path: PathBuf, message: String },
    /// The checkpoint lacks a piece of state.
    #[error("the checkpoint lacks `{key}` or it is malformed; delete it to start over")]
    CorruptCheckpoint { key: &'static str },
    /// The identity params could not be encoded (a dataset path that is not UTF-8).
    #[error("cannot encode the params that identify a checkpoint: {0}")]
    Identity(String),
    /// The requested device cannot be used.
    #[error("device `{spec}` cannot be used: {why}")]
    Device { spec: String, why: String },
    /// The data does not fit the model.
    #[error("the training data `{path}` does not fit: {message}")]
    DataShape { path: PathBuf, message: String },
}

fn run(ctx: &Context, params: TrainParams) -> Result<(), StageError> {
    params.validate().map_err(|message| StageError::Params {
        kind: ctx.kind().to_string(),
        message,
    })?;
    // The run's own record of what it was asked to do, for readers that join runs (the report).
    let mut text = serde_json::to_vec_pretty(ctx.raw_params()).map_err(|e| StageError::Params {
        kind: ctx.kind().to_string(),
        message: e.to_string(),
    })?;
    text.push(b'\n');
    outputs::write_file(&params.out.join("params.json"), &text).map_err(StageError::domain)?;
    train(&params, &|step, total, msg| ctx.progress(step, total, msg))
        .map(|_| ())
        .map_err(StageError::domain)
}

/// What a finished (or stopped) call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The G iteration the run started from (0, or the checkpoint's).
    pub resumed_from: u64,
    /// Completed G iterations when it returned.
    pub iteration: u64,
}

/// Trains with validated `params`, reporting progress through `progress(step, total, message)`.
pub fn train(
    params: &TrainParams,
    progress: &dyn Fn(u64, u64, &str),
) -> Result<Outcome, TrainError> {
    let (device, notice) = device::select(&params.device)?;
    if let Some(notice) = notice {
        progress(0, params.iterations, &notice);
    }
    let data = load_data(&params.dataset)?;
    let mut trainer = Trainer::new(params, data.shape, &device)?;
    let identity = identity_hash(params)?;
    let out = &params.out;
    let ckpt_path = out.join("checkpoint.safetensors");
    // A checkpoint from another version of this builtin holds a state this code may not
    // continue (the version changes exactly when what a run computes changes), and one from
    // other identity params (a changed seed, width, `iterations`, ...) describes other work:
    // either way, start over from a clean directory, saying so, rather than fail every run
    // after an upgrade or a changed setting. The directory is the engine's staging copy, so
    // the last published run stays in the workspace (and in the cache) until this one succeeds;
    // the engine resumes an unfinished run only under identical inputs (`exec::resume`).
    if ckpt_path.exists() {
        let state = read_checkpoint(&ckpt_path)?;
        let written_by = state
            .get(VERSION_KEY)
            .and_then(|t| t.to_vec1::<i64>().ok())
            .and_then(|v| v.first().copied());
        let start_over = if written_by == Some(i64::from(VERSION)) {
            let stored: Vec<u8> = state
                .get("identity")
                .ok_or(TrainError::CorruptCheckpoint { key: "identity" })?
                .to_vec1()?;
            (stored != identity).then(|| {
                "was written under other params (model, optimizer, iterations, seed, ...)"
                    .to_string()
            })
        } else {
            let was = written_by.map_or("an older version".to_string(), |v| format!("version {v}"));
            Some(format!(
                "was written by train-gan {was}, which this version ({VERSION}) does not resume"
            ))
        };
        match start_over {
            None => {
                trainer.import(&state)?;
                progress(
                    trainer.iteration,
                    params.iterations,
                    &format!("resumed from iteration {}", trainer.iteration),
                );
            }
            Some(why) => {
                progress(
                    0,
                    params.iterations,
                    &format!("the checkpoint {why}: training from iteration 0"),
                );
                clear_for_a_new_run(out).map_err(|e| TrainError::Output {
                    path: out.clone(),
                    source: DataError::io("clear", out, e),
                })?;
            }
        }
    }
    let resumed_from = trainer.iteration;
    let mut log = outputs::Log::open(&out.join("log.csv"), trainer.iteration);
    let extent = match data.shape {
        DataShape::Points { .. } => data.values.iter().fold(0f32, |m, x| m.max(x.abs())) * 1.1,
        DataShape::Images { .. } => 1.0,
    };
    let due = |t: u64, every: u64| every > 0 && t.is_multiple_of(every);
    // The spectrum before any update (iteration 0 is a multiple of every interval): the random
    // init that SR dynamic at `start: 0` records as its reference, and the baseline of every
    // spectrum plot. Only on a fresh start: a resumed run has it from its first part. Computing
    // it reads W and `u` without advancing `u` and draws nothing, so training is unchanged.
    if trainer.iteration == 0 && due(0, params.spectra_every) {
        outputs::write_spectra(&out.join("spectra"), 0, &trainer.sn_layers())?;
    }
    // Likewise the samples of the untrained G (from the fixed evaluation z, which no training
    // stream draws from): the first point of every mode-count curve.
    if trainer.iteration == 0 && due(0, params.sample_every) {
        write_samples(&trainer, params, 0, false, &data, extent)?;
    }
    let stop_at = params
        .stop_after
        .unwrap_or(params.iterations)
        .min(params.iterations);
    let mut clock = Instant::now();
    let mut since_log = 0u64;
    while trainer.iteration < stop_at {
        let lr = trainer.lr_at(trainer.iteration);
        let losses = trainer.iterate(&data)?;
        since_log += 1;
        let t = trainer.iteration;
        let end = t == params.iterations;
        if due(t, params.log_every) || end {
            let secs = clock.elapsed().as_secs_f64() / since_log as f64;
            log.append(t, losses.d, losses.g, lr, secs)?;
            progress(
                t,
                params.iterations,
                &format!(
                    "loss_d {:.4} loss_g {:.4} lr {lr:.3e} {secs:.3}s/it",
                    losses.d, losses.g
                ),
            );
            clock = Instant::now();
            since_log = 0;
        }
        if due(t, params.spectra_every) || end {
            outputs::write_spectra(&out.join("spectra"), t, &trainer.sn_layers())?;
        }
        if due(t, params.sample_every) || end {
            write_samples(&trainer, params, t, end, &data, extent)?;
        }
        if due(t, params.checkpoint_every) || end || t == stop_at {
            write_checkpoint(&ckpt_path, &trainer.export(&identity)?)?;
        }
    }
    Ok(Outcome {
        resumed_from,
        iteration: trainer.iteration,
    })
}

/// sha256 of the identity params as compact JSON ([`params::Identity`], whose text is pinned by
/// tests). An identity that cannot be encoded is an error: hashing a fallback would bind every
/// such run to one identity.
fn identity_hash(params: &TrainParams) -> Result<[u8; 32], TrainError> {
    let json =
        serde_json::to_vec(&params.identity()).map_err(|e| TrainError::Identity(e.to_string()))?;
    Ok(Sha256::digest(&json).into())
}

fn load_data(path: &Path) -> Result<HostData, TrainError> {
    let ds = prepared::load(path).map_err(|source| TrainError::Data {
        path: path.to_path_buf(),
        source,
    })?;
    let shape_err = |message: String| TrainError::DataShape {
        path: path.to_path_buf(),
        message,
    };
    match ds.samples {
        Samples::Images {
            pixels,
            shape: [n, c, h, w],
        } => {
            if n == 0 {
                return Err(shape_err("it holds no samples".into()));
            }
            let values = pixels.iter().map(|p| *p as f32 / 127.5 - 1.0).collect();
            Ok(HostData {
                values,
                n,
                shape: DataShape::Images {
                    channels: c,
                    height: h,
                    width: w,
                },
            })
        }
        Samples::Points {
            coords,
            shape: [n, d],
        } => {
            if n == 0 {
                return Err(shape_err("it holds no samples".into()));
            }
            Ok(HostData {
                values: coords,
                n,
                shape: DataShape::Points { dim: d },
            })
        }
    }
}

fn write_samples(
    trainer: &Trainer,
    params: &TrainParams,
    t: u64,
    end: bool,
    data: &HostData,
    extent: f32,
) -> Result<(), TrainError> {
    if params.eval_samples == 0 {
        return Ok(());
    }
    let dir = params.out.join("samples");
    let (values, dims) = trainer.eval_samples(params.seed, params.eval_samples)?;
    let ds = outputs::samples_dataset(&values, &dims, t, params.seed);
    outputs::write_samples(&dir.join(format!("{t}.safetensors")), &ds)?;
    let real = match data.shape {
        DataShape::Points { .. } => Some((&data.values[..data.values.len().min(4096)], extent)),
        DataShape::Images { .. } => None,
    };
    outputs::sample_png(&dir.join(format!("{t}.png")), &ds, real)?;
    if end {
        outputs::write_samples(&dir.join("final.safetensors"), &ds)?;
    }
    Ok(())
}

fn read_checkpoint(path: &Path) -> Result<BTreeMap<String, candle_core::Tensor>, TrainError> {
    let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
        TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    Ok(map.into_iter().collect())
}

fn write_checkpoint(
    path: &Path,
    state: &BTreeMap<String, candle_core::Tensor>,
) -> Result<(), TrainError> {
    let mut map: HashMap<String, candle_core::Tensor> = state.clone().into_iter().collect();
    map.insert(
        VERSION_KEY.into(),
        candle_core::Tensor::new(&[i64::from(VERSION)], &candle_core::Device::Cpu)?,
    );
    let dir = repro_engine::fsutil::parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Output {
        path: dir.to_path_buf(),
        source: DataError::io("create directory", dir, e),
    })?;
    let tmp = dir.join(".tmp-checkpoint.safetensors");
    candle_core::safetensors::save(&map, &tmp).map_err(|e| TrainError::Checkpoint {
        path: tmp.clone(),
        message: e.to_string(),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::Output {
        path: path.to_path_buf(),
        source: DataError::io("rename into", path, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checkpoint identity is the sha256 of exactly the pinned JSON text (compact, no
    /// newline): this is the hash a real version-4 ring run with graph SR wrote.
    #[test]
    fn the_identity_hash_is_pinned() {
        let p: TrainParams = serde_json::from_value(serde_json::json!({
            "dataset": "data/ring.safetensors",
            "model": {"arch": "mlp", "hidden": 32, "d_hidden": 16, "layers": 2},
            "z_dim": 2, "batch_size": 64, "iterations": 40, "loss": "standard",
            "optimizer": "B", "n_dis": 2, "sr": "graph", "seed": 3, "out": "runs/x"
        }))
        .unwrap();
        assert_eq!(
            hex::encode(identity_hash(&p).unwrap()),
            "9948bc3058119288a955564a9428aacafb6507d1a7acfffc9a914b0db1911458"
        );
    }
}
