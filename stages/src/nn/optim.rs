//! Adam, written by hand so its moments and step count can be saved to and restored from a
//! checkpoint (candle-nn's `AdamW` keeps them private), plus the SN paper's named settings.
//!
//! The update is Chainer's (which both papers' code used): with `t` the step count,
//! `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)` and `w <- w - lr_t m / (sqrt(v) + eps)`, eps 1e-8.
//! It differs from PyTorch's only in where eps sits relative to the bias correction.
//!
//! What must never change silently: the preset table (it is the SN paper's Table 1) and the
//! update formula; both decide every trained weight.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::{NnError, Result, Store};

/// The SN paper's Adam settings (Table 1), plus the ResNet setting of its App. B.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Preset {
    /// lr 1e-4, betas (0.5, 0.9), n_dis 5 (WGAN-GP).
    A,
    /// lr 1e-4, betas (0.5, 0.999), n_dis 1.
    B,
    /// lr 2e-4, betas (0.5, 0.999), n_dis 1 (DCGAN).
    C,
    /// lr 1e-3, betas (0.5, 0.9), n_dis 5.
    D,
    /// lr 1e-3, betas (0.5, 0.999), n_dis 5.
    E,
    /// lr 1e-3, betas (0.9, 0.999), n_dis 5.
    F,
    /// lr 2e-4, betas (0, 0.9), n_dis 5: the ResNet runs of both papers.
    #[serde(rename = "resnet")]
    Resnet,
}

impl Preset {
    /// `(lr, beta1, beta2, n_dis)`.
    pub fn settings(self) -> (f64, f64, f64, u32) {
        match self {
            Preset::A => (1e-4, 0.5, 0.9, 5),
            Preset::B => (1e-4, 0.5, 0.999, 1),
            Preset::C => (2e-4, 0.5, 0.999, 1),
            Preset::D => (1e-3, 0.5, 0.9, 5),
            Preset::E => (1e-3, 0.5, 0.999, 5),
            Preset::F => (1e-3, 0.9, 0.999, 5),
            Preset::Resnet => (2e-4, 0.0, 0.9, 5),
        }
    }
}

/// Adam's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Base learning rate (alpha).
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
}

/// Adam over every parameter of one [`Store`].
pub struct Adam {
    config: AdamConfig,
    t: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl Adam {
    /// Zero moments for every parameter of `store`.
    pub fn new(store: &Store, config: AdamConfig) -> Result<Self> {
        let mut m = BTreeMap::new();
        for (name, var) in store.params() {
            m.insert(name.clone(), var.as_tensor().zeros_like()?);
        }
        Ok(Adam {
            config,
            t: 0,
            v: m.clone(),
            m,
        })
    }

    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One update of every parameter of `store` that has a gradient in `grads`, with learning
    /// rate `lr` (the decayed `alpha`).
    pub fn step(&mut self, store: &Store, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let AdamConfig {
            beta1, beta2, eps, ..
        } = self.config;
        let t = self.t as i32;
        let lr_t = lr * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t));
        for (name, var) in store.params() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let (Some(m), Some(v)) = (self.m.get_mut(name), self.v.get_mut(name)) else {
                return Err(NnError::MissingState {
                    key: format!("adam moment of `{name}`"),
                });
            };
            *m = (m.affine(beta1, 0.0)? + g.affine(1.0 - beta1, 0.0)?)?;
            *v = (v.affine(beta2, 0.0)? + g.sqr()?.affine(1.0 - beta2, 0.0)?)?;
            let update = m.div(&v.sqrt()?.affine(1.0, eps)?)?.affine(lr_t, 0.0)?;
            var.set(&var.as_tensor().sub(&update)?)?;
        }
        Ok(())
    }

    /// Moments and step count under `prefix.m.NAME`, `prefix.v.NAME`, `prefix.t`.
    pub fn export(&self, prefix: &str, out: &mut BTreeMap<String, Tensor>) -> Result<()> {
        for (name, m) in &self.m {
            out.insert(format!("{prefix}.m.{name}"), m.clone());
        }
        for (name, v) in &self.v {
            out.insert(format!("{prefix}.v.{name}"), v.clone());
        }
        out.insert(
            format!("{prefix}.t"),
            Tensor::new(&[self.t as i64], &Device::Cpu)?,
        );
        Ok(())
    }

    /// Restores what [`Adam::export`] wrote.
    pub fn import(&mut self, prefix: &str, from: &BTreeMap<String, Tensor>) -> Result<()> {
        let get = |key: String, like: &Tensor| -> Result<Tensor> {
            match from.get(&key) {
                Some(t) if t.dims() == like.dims() => {
                    Ok(t.to_dtype(like.dtype())?.to_device(like.device())?)
                }
                _ => Err(NnError::MissingState { key }),
            }
        };
        for (name, m) in self.m.iter_mut() {
            *m = get(format!("{prefix}.m.{name}"), m)?;
        }
        for (name, v) in self.v.iter_mut() {
            *v = get(format!("{prefix}.v.{name}"), v)?;
        }
        let key = format!("{prefix}.t");
        let t = from
            .get(&key)
            .ok_or_else(|| NnError::MissingState { key: key.clone() })?;
        let t: Vec<i64> = t.to_dtype(DType::I64)?.to_vec1()?;
        self.t = t.first().copied().unwrap_or(0).max(0) as u64;
        Ok(())
    }
}
