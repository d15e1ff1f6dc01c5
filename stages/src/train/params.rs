//! The `with:` params of `train-gan`, their defaults, and which of them define the run.
//!
//! What must never change silently: a default (it changes the results of every stage that
//! relies on it, so it needs a builtin version bump) and [`TrainParams::identity`], the subset
//! of params a checkpoint is bound to. Params outside the identity (intervals, `stop_after`,
//! `out`, `device`, `eval_samples`) can change between a run and its resume without changing
//! the trained weights.
//!
//! `sr:` is parsed here, once, into the run's one SR value, an [`SrMode`] (inside [`SrParam`],
//! which only adds the bare-word spelling `sr: static`). The trainer hands that value whole to
//! its regularizer ([`crate::nn::spectral_reg::Regularizer`]), which is where every SR mode acts:
//! `pipeline.yaml` -> this file -> `train/trainer.rs` -> `nn/spectral_reg.rs` (static and dynamic
//! after each D step; graph mode attaches its state to D's SN layers) -> `nn/spectral_norm.rs`
//! (graph mode's term in the SN forward, from `nn/graph_sr.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::nn::models::ModelConfig;
use crate::nn::optim::{AdamConfig, Preset};
use crate::nn::spectral_reg::SrMode;

/// The GAN loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// `L_D = E relu(1 - D(x)) + E relu(1 + D(G(z)))`, `L_G = -E D(G(z))` (SN paper Eq. 17).
    Hinge,
    /// Non-saturating: `L_D = E softplus(-D(x)) + E softplus(D(G(z)))`, `L_G = E softplus(-D(G(z)))`.
    Standard,
}

/// How the learning rate moves over the G iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    /// Constant (the SN paper's standard CNN runs).
    #[default]
    None,
    /// Linear from `lr` at iteration 0 to 0 at `iterations` (sngan_projection's `LinearShift`).
    Linear,
}

/// `sr: none` or `sr: {mode: ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum SrRepr {
    Word(String),
    Mode(SrMode),
}

impl TryFrom<SrRepr> for SrParam {
    type Error = String;
    fn try_from(r: SrRepr) -> Result<Self, String> {
        match r {
            // A bare mode name takes that mode's defaults (`sr: static` is `{mode: static}`), so
            // a pipeline can fan out over `[none, static, dynamic, graph]`.
            SrRepr::Word(w) => serde_json::from_value(serde_json::json!({ "mode": w }))
                .map(SrParam)
                .map_err(|_| {
                    format!(
                        "`sr: {w}` is not a mode; use none, static, dynamic or graph, or a map like `{{mode: static, i: 0.5}}`"
                    )
                }),
            SrRepr::Mode(m) => Ok(SrParam(m)),
        }
    }
}

/// The `sr:` param: an [`SrMode`] that may also be spelled as a bare mode name (`none`,
/// `static`, ...), which takes that mode's defaults. The run uses the [`SrMode`] inside.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "SrRepr")]
pub struct SrParam(pub SrMode);

impl Default for SrParam {
    fn default() -> Self {
        SrParam(SrMode::None)
    }
}

fn d_z() -> usize {
    128
}
fn d_batch() -> usize {
    64
}
fn d_true() -> bool {
    true
}
fn d_hinge() -> Loss {
    Loss::Hinge
}
fn d_1000() -> u64 {
    1000
}
fn d_100() -> u64 {
    100
}
fn d_eval() -> usize {
    5000
}
fn d_out() -> PathBuf {
    PathBuf::from("run")
}
fn d_device() -> String {
    "cpu".to_string()
}

/// Everything a `train-gan` stage is configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// The prepared dataset (one safetensors file), relative to the stage directory.
    pub dataset: PathBuf,
    /// Architecture and widths.
    pub model: ModelConfig,
    /// Noise dimension (128 in both papers).
    #[serde(default = "d_z")]
    pub z_dim: usize,
    /// Real (and fake) samples per D step.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Fake samples per G step (sngan_projection's ResNet uses 2x the batch); default `batch_size`.
    #[serde(default)]
    pub g_batch_size: Option<usize>,
    /// Generator updates in the full run.
    pub iterations: u64,
    /// Stop (with a checkpoint) after this many G iterations; a rerun resumes. For tests and
    /// time-boxed jobs.
    #[serde(default)]
    pub stop_after: Option<u64>,
    /// `hinge` or `standard`.
    #[serde(default = "d_hinge")]
    pub loss: Loss,
    /// Adam setting: the SN paper's `A`..`F`, or `resnet`.
    pub optimizer: Preset,
    /// Overrides the preset's learning rate.
    #[serde(default)]
    pub lr: Option<f64>,
    /// Overrides the preset's beta1.
    #[serde(default)]
    pub beta1: Option<f64>,
    /// Overrides the preset's beta2.
    #[serde(default)]
    pub beta2: Option<f64>,
    /// Overrides the preset's D steps per G step.
    #[serde(default)]
    pub n_dis: Option<u32>,
    /// `none` or `linear`.
    #[serde(default)]
    pub lr_decay: LrDecay,
    /// Spectral normalization of every D layer.
    #[serde(default = "d_true")]
    pub sn: bool,
    /// Spectral regularization on top of SN.
    #[serde(default)]
    pub sr: SrParam,
    /// Seeds every random stream of the run.
    #[serde(default)]
    pub seed: u64,
    /// Log row (and progress) every this many G iterations; 0 = never.
    #[serde(default = "d_100")]
    pub log_every: u64,
    /// Spectra dump interval; 0 = only at the end.
    #[serde(default = "d_1000")]
    pub spectra_every: u64,
    /// Checkpoint interval; 0 = only at the end (or at `stop_after`).
    #[serde(default = "d_1000")]
    pub checkpoint_every: u64,
    /// Sample (grid + safetensors) interval; 0 = only at the end.
    #[serde(default = "d_1000")]
    pub sample_every: u64,
    /// Samples written per sample point, from a fixed z.
    #[serde(default = "d_eval")]
    pub eval_samples: usize,
    /// The run directory.
    #[serde(default = "d_out")]
    pub out: PathBuf,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[serde(default = "d_device")]
    pub device: String,
}

/// The params that define the trained weights; a checkpoint is only resumed under equal ones.
/// Serialized as compact JSON by serde, then hashed (sha256 of exactly those bytes): fields in
/// the order declared here, `model` and `sr` in the shape of their params (a map tagged by
/// `arch` / `mode`, fields in declaration order, defaults filled in), numbers in serde_json's
/// shortest round-trip form, `dataset` as its UTF-8 text (checked by `validate`). No Rust
/// `Debug` text is part of it. Tests pin the exact text for every SR mode and architecture and
/// one hash, since a change orphans every checkpoint: change it only with a `train-gan` bump.
#[derive(Debug, Serialize)]
pub struct Identity<'a> {
    model: &'a ModelConfig,
    z_dim: usize,
    batch_size: usize,
    g_batch_size: usize,
    iterations: u64,
    loss: Loss,
    adam: (f64, f64, f64),
    n_dis: u32,
    lr_decay: LrDecay,
    sn: bool,
    sr: &'a SrMode,
    seed: u64,
    dataset: &'a std::path::Path,
}

impl TrainParams {
    /// Adam's settings after overrides.
    pub fn adam(&self) -> AdamConfig {
        let (lr, b1, b2, _) = self.optimizer.settings();
        AdamConfig {
            lr: self.lr.unwrap_or(lr),
            beta1: self.beta1.unwrap_or(b1),
            beta2: self.beta2.unwrap_or(b2),
            eps: 1e-8,
        }
    }

    /// D steps per G step after overrides.
    pub fn n_dis(&self) -> u32 {
        self.n_dis.unwrap_or(self.optimizer.settings().3)
    }

    /// Fake samples per G step.
    pub fn g_batch(&self) -> usize {
        self.g_batch_size.unwrap_or(self.batch_size)
    }

    /// The checkpoint-binding subset of the params.
    pub fn identity(&self) -> Identity<'_> {
        let a = self.adam();
        Identity {
            model: &self.model,
            z_dim: self.z_dim,
            batch_size: self.batch_size,
            g_batch_size: self.g_batch(),
            iterations: self.iterations,
            loss: self.loss,
            adam: (a.lr, a.beta1, a.beta2),
            n_dis: self.n_dis(),
            lr_decay: self.lr_decay,
            sn: self.sn,
            sr: &self.sr.0,
            seed: self.seed,
            dataset: &self.dataset,
        }
    }

    /// Checks values serde cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.iterations == 0 {
            return Err("`iterations` must be at least 1".into());
        }
        if self.batch_size == 0 || self.g_batch() == 0 || self.z_dim == 0 {
            return Err("`batch_size`, `g_batch_size` and `z_dim` must be at least 1".into());
        }
        if self.n_dis() == 0 {
            return Err("`n_dis` must be at least 1".into());
        }
        let a = self.adam();
        if a.lr.is_nan()
            || a.lr <= 0.0
            || !(0.0..1.0).contains(&a.beta1)
            || !(0.0..1.0).contains(&a.beta2)
        {
            return Err(format!(
                "adam needs `lr` > 0 and betas in [0, 1), got lr={}, beta1={}, beta2={}",
                a.lr, a.beta1, a.beta2
            ));
        }
        if !self.sn && self.sr.0 != SrMode::None {
            return Err(
                "`sr` regularizes spectrally normalized layers; set `sn: true` or `sr: none`"
                    .into(),
            );
        }
        if self.dataset.to_str().is_none() {
            return Err(format!(
                "`dataset` must be a UTF-8 path (it is part of the checkpoint identity), got {}",
                self.dataset.display()
            ));
        }
        if self.stop_after == Some(0) {
            return Err("`stop_after` must be at least 1".into());
        }
        if let Some(start) = self.sr.0.start().filter(|s| *s >= self.iterations) {
            return Err(format!(
                "`sr.start` is {start} but the run has {} iterations, so SR would never run; lower `sr.start` or use `sr: none`",
                self.iterations
            ));
        }
        self.sr.0.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity a checkpoint is bound to, as exact text: changing it orphans every
    /// checkpoint, so it must only change on purpose (with a `train-gan` version bump).
    #[test]
    fn the_identity_text_is_pinned() {
        let p: TrainParams = serde_json::from_value(serde_json::json!({
            "dataset": "data/ring.safetensors",
            "model": {"arch": "mlp", "hidden": 128, "d_hidden": 32},
            "z_dim": 2, "batch_size": 64, "iterations": 6000, "loss": "standard",
            "optimizer": "B", "n_dis": 2, "sr": {"mode": "dynamic", "start": 1000}, "seed": 3,
            "log_every": 100, "out": "runs/x"
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&p.identity()).unwrap(),
            concat!(
                r#"{"model":{"arch":"mlp","hidden":128,"d_hidden":32,"layers":2},"z_dim":2,"#,
                r#""batch_size":64,"g_batch_size":64,"iterations":6000,"loss":"standard","#,
                r#""adam":[0.0001,0.5,0.999],"n_dis":2,"lr_decay":"none","sn":true,"#,
                r#""sr":{"mode":"dynamic","every":5,"start":1000},"seed":3,"#,
                r#""dataset":"data/ring.safetensors"}"#
            )
        );
    }

    /// The identity text of small ring params (an MLP, as the toy stage) with `overrides` set.
    fn identity_of(overrides: serde_json::Value) -> String {
        let mut v = serde_json::json!({
            "dataset": "data/ring.safetensors",
            "model": {"arch": "mlp", "hidden": 32, "d_hidden": 16},
            "z_dim": 2, "batch_size": 64, "iterations": 40, "loss": "standard",
            "optimizer": "B", "n_dis": 2, "seed": 3, "out": "runs/x"
        });
        for (key, value) in overrides.as_object().unwrap() {
            v[key] = value.clone();
        }
        let p: TrainParams = serde_json::from_value(v).unwrap();
        p.validate().unwrap();
        serde_json::to_string(&p.identity()).unwrap()
    }

    /// Every SR mode's identity text, bare word and map, exactly. These are the texts whose
    /// sha256 the checkpoints of `train-gan` version 4 hold (checked against real runs), so a
    /// change here orphans checkpoints: only with a version bump.
    #[test]
    fn the_identity_text_of_every_sr_mode_is_pinned() {
        let text = |sn: bool, sr: &str| {
            format!(
                concat!(
                    r#"{{"model":{{"arch":"mlp","hidden":32,"d_hidden":16,"layers":2}},"#,
                    r#""z_dim":2,"batch_size":64,"g_batch_size":64,"iterations":40,"#,
                    r#""loss":"standard","adam":[0.0001,0.5,0.999],"n_dis":2,"#,
                    r#""lr_decay":"none","sn":{},"sr":{},"seed":3,"#,
                    r#""dataset":"data/ring.safetensors"}}"#
                ),
                sn, sr
            )
        };
        let cases = [
            (serde_json::json!("none"), r#"{"mode":"none"}"#),
            (serde_json::json!({"mode": "none"}), r#"{"mode":"none"}"#),
            (
                serde_json::json!("static"),
                r#"{"mode":"static","i":0.5,"every":5,"start":0}"#,
            ),
            (
                serde_json::json!({"mode": "static", "i": 0.3, "every": 2, "start": 4}),
                r#"{"mode":"static","i":0.3,"every":2,"start":4}"#,
            ),
            (
                serde_json::json!("dynamic"),
                r#"{"mode":"dynamic","every":5,"start":0}"#,
            ),
            (
                serde_json::json!({"mode": "dynamic", "start": 10}),
                r#"{"mode":"dynamic","every":5,"start":10}"#,
            ),
            (serde_json::json!("graph"), r#"{"mode":"graph","i":0.5}"#),
            (
                serde_json::json!({"mode": "graph", "i": 0.8}),
                r#"{"mode":"graph","i":0.8}"#,
            ),
        ];
        for (sr, want) in cases {
            let got = identity_of(serde_json::json!({ "sr": sr }));
            assert_eq!(got, text(true, want), "sr: {sr}");
        }
        // No SN, so no SR; and `sr` left out is `none`.
        assert_eq!(
            identity_of(serde_json::json!({"sn": false})),
            text(false, r#"{"mode":"none"}"#)
        );
    }

    /// Every architecture's `model` text in the identity (defaults filled in), and one image
    /// run's whole identity (a real run's checkpoint holds its sha256).
    #[test]
    fn the_identity_text_of_every_model_is_pinned() {
        // The identity starts with the model's text, so its prefix up to `"z_dim"` is that text.
        let model_text = |model: serde_json::Value| {
            let text = identity_of(serde_json::json!({ "model": model }));
            let end = text.find(r#","z_dim":"#).unwrap();
            text[r#"{"model":"#.len()..end].to_string()
        };
        let cases = [
            (
                serde_json::json!({"arch": "cnn"}),
                r#"{"arch":"cnn","g_ch":64,"d_ch":64}"#,
            ),
            (
                serde_json::json!({"arch": "resnet", "d_ch": 32}),
                r#"{"arch":"resnet","g_ch":256,"d_ch":32}"#,
            ),
            (
                serde_json::json!({"arch": "resnet-stl"}),
                r#"{"arch":"resnet-stl","ch":64}"#,
            ),
            (
                serde_json::json!({"arch": "mlp"}),
                r#"{"arch":"mlp","hidden":128,"layers":2}"#,
            ),
            (
                serde_json::json!({"arch": "mlp", "hidden": 8, "d_hidden": 4, "layers": 3}),
                r#"{"arch":"mlp","hidden":8,"d_hidden":4,"layers":3}"#,
            ),
        ];
        for (model, want) in cases {
            assert_eq!(model_text(model.clone()), want, "model: {model}");
        }
        let p: TrainParams = serde_json::from_value(serde_json::json!({
            "dataset": "data/img.safetensors",
            "model": {"arch": "resnet", "g_ch": 4, "d_ch": 4},
            "z_dim": 16, "batch_size": 4, "iterations": 4, "optimizer": "C",
            "loss": "standard", "sr": "graph", "seed": 1, "out": "runs/img"
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&p.identity()).unwrap(),
            concat!(
                r#"{"model":{"arch":"resnet","g_ch":4,"d_ch":4},"z_dim":16,"batch_size":4,"#,
                r#""g_batch_size":4,"iterations":4,"loss":"standard","#,
                r#""adam":[0.0002,0.5,0.999],"n_dis":1,"lr_decay":"none","sn":true,"#,
                r#""sr":{"mode":"graph","i":0.5},"seed":1,"dataset":"data/img.safetensors"}"#
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_dataset_path_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let mut p: TrainParams = serde_json::from_value(serde_json::json!({
            "dataset": "d.safetensors", "model": {"arch": "mlp"},
            "optimizer": "B", "iterations": 10,
        }))
        .unwrap();
        p.dataset = PathBuf::from(std::ffi::OsStr::from_bytes(b"d\xff.safetensors"));
        let err = p.validate().unwrap_err();
        assert!(err.contains("`dataset` must be a UTF-8 path"), "{err}");
    }

    fn sr(v: serde_json::Value) -> Result<SrMode, String> {
        serde_json::from_value::<SrParam>(v)
            .map(|p| p.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sr_accepts_bare_mode_names_with_their_defaults() {
        assert_eq!(sr(serde_json::json!("none")).unwrap(), SrMode::None);
        assert_eq!(
            sr(serde_json::json!("static")).unwrap(),
            sr(serde_json::json!({"mode": "static"})).unwrap()
        );
        assert_eq!(
            sr(serde_json::json!("graph")).unwrap(),
            sr(serde_json::json!({"mode": "graph"})).unwrap()
        );
        assert!(matches!(
            sr(serde_json::json!("dynamic")).unwrap(),
            SrMode::Dynamic { .. }
        ));
        let err = sr(serde_json::json!("statik")).unwrap_err();
        assert!(err.contains("use none, static, dynamic or graph"), "{err}");
    }

    #[test]
    fn dynamic_start_defaults_to_zero_and_is_checked() {
        // The default keeps the reference at the first call, iteration 0.
        assert_eq!(
            sr(serde_json::json!("dynamic")).unwrap(),
            SrMode::Dynamic { every: 5, start: 0 }
        );
        let ok = sr(serde_json::json!({"mode": "dynamic", "start": 5000})).unwrap();
        assert_eq!(
            ok,
            SrMode::Dynamic {
                every: 5,
                start: 5000
            }
        );
        assert_eq!(ok.validate(), Ok(()));
        let err = sr(serde_json::json!({"mode": "dynamic", "start": 5003}))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.contains("`sr.start`") && err.contains("5000 or 5005"),
            "{err}"
        );

        let mut params: TrainParams = serde_json::from_value(serde_json::json!({
            "dataset": "d.safetensors", "model": {"arch": "mlp", "hidden": 8, "layers": 2},
            "optimizer": "D", "iterations": 100,
            "sr": {"mode": "dynamic", "start": 100},
        }))
        .unwrap();
        let err = params.validate().unwrap_err();
        assert!(
            err.contains("`sr.start` is 100") && err.contains("100 iterations"),
            "{err}"
        );
        params.sr = SrParam(SrMode::Dynamic {
            every: 5,
            start: 95,
        });
        assert_eq!(params.validate(), Ok(()));
    }
}
