//! Adam, written by hand so its moments and step count can be saved to and restored from a
//! checkpoint (candle-nn's `AdamW` keeps them private), plus the SN paper's named settings.
//!
//! The update is Chainer's (which both papers' code used): with `t` the step count,
//! `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)` and `w <- w - lr_t m / (sqrt(v) + eps)`, eps 1e-8.
//! It differs from PyTorch's only in where eps sits relative to the bias correction.
//!
//! What must never change silently: the preset table (it is the SN paper's Table 1) and the
//! update formula; both decide every trained weight.
//!
//! On the CPU an f32 parameter is updated in one fused pass ([`fused_f32`]) that performs the
//! same f32 operations in the same order as the candle-ops path (which other devices and dtypes
//! keep), so both give the same bits; the candle chain made ten full-size temporaries per
//! parameter, a few percent of a training step.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use rayon::prelude::*;
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
            let coeffs = Coeffs {
                beta1,
                beta2,
                eps,
                lr_t,
            };
            let w = var.as_tensor();
            let (w, new_m, new_v) = match fused_f32(w, g, m, v, coeffs)? {
                Some(updated) => updated,
                None => candle_update(w, g, m, v, coeffs)?,
            };
            (*m, *v) = (new_m, new_v);
            var.set(&w)?;
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

/// The scalars of one update (`lr_t` with its bias corrections applied).
#[derive(Debug, Clone, Copy)]
struct Coeffs {
    beta1: f64,
    beta2: f64,
    eps: f64,
    lr_t: f64,
}

/// The update as candle ops, for any device and dtype: `(w', m', v')`.
fn candle_update(
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: Coeffs,
) -> Result<(Tensor, Tensor, Tensor)> {
    let m = (m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
    let v = (v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
    let update = m.div(&v.sqrt()?.affine(1.0, c.eps)?)?.affine(c.lr_t, 0.0)?;
    Ok((w.sub(&update)?, m, v))
}

/// Runs `f` on the contiguous f32 data of a CPU tensor, or `None` for anything else.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    Some(f(&data[start..end]))
}

/// One Adam update of an f32 CPU parameter `w` in a single pass: `Some((w', m', v'))`, or
/// `None` when an operand is not a contiguous f32 CPU tensor (the caller then runs candle ops).
///
/// Every element goes through exactly the f32 operations of the candle chain in
/// [`Adam::step`] (candle's `affine(mul, add)` is `x * mul + add` with both cast to f32), so
/// the result is bit-identical to it; elementwise, so the chunking cannot change a bit.
fn fused_f32(
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: Coeffs,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let same = |t: &Tensor| t.dims() == w.dims() && t.device().is_cpu();
    if !(w.device().is_cpu() && same(g) && same(m) && same(v)) {
        return Ok(None);
    }
    let (b1, one_b1) = (c.beta1 as f32, (1.0 - c.beta1) as f32);
    let (b2, one_b2) = (c.beta2 as f32, (1.0 - c.beta2) as f32);
    let (eps, lr_t) = (c.eps as f32, c.lr_t as f32);
    let update = |w: &[f32], g: &[f32], m: &[f32], v: &[f32]| {
        let n = w.len();
        let (mut wo, mut mo, mut vo) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        const CHUNK: usize = 1 << 14;
        wo.par_chunks_mut(CHUNK)
            .zip(mo.par_chunks_mut(CHUNK))
            .zip(vo.par_chunks_mut(CHUNK))
            .zip(w.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|((((wo, mo), vo), (w, g)), (m, v))| {
                for i in 0..wo.len() {
                    let g = g[i];
                    let m = (m[i] * b1 + 0.0) + (g * one_b1 + 0.0);
                    let v = (v[i] * b2 + 0.0) + ((g * g) * one_b2 + 0.0);
                    wo[i] = w[i] - ((m / (v.sqrt() * 1.0 + eps)) * lr_t + 0.0);
                    (mo[i], vo[i]) = (m, v);
                }
            });
        (wo, mo, vo)
    };
    let out = with_f32(w, |w| {
        with_f32(g, |g| with_f32(m, |m| with_f32(v, |v| update(w, g, m, v))))
    });
    let Some(Some(Some(Some((wo, mo, vo))))) = out else {
        return Ok(None);
    };
    let (shape, dev) = (w.shape(), w.device());
    Ok(Some((
        Tensor::from_vec(wo, shape, dev)?,
        Tensor::from_vec(mo, shape, dev)?,
        Tensor::from_vec(vo, shape, dev)?,
    )))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::{candle_update, fused_f32, Coeffs};

    fn random(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Tensor {
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        Tensor::from_vec(v, (n / 10, 10), &Device::Cpu).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    /// The fused CPU pass is the candle chain bit for bit, over several steps (so moments are
    /// non-trivial), with zero gradients and a size that is not a multiple of its chunk.
    #[test]
    fn fused_update_is_bit_identical_to_candle_ops() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 40_010;
        let mut w = random(&mut rng, n, -1.0, 1.0);
        let (mut m1, mut v1) = (w.zeros_like().unwrap(), w.zeros_like().unwrap());
        let (mut w2, mut m2, mut v2) = (w.clone(), m1.clone(), v1.clone());
        for (step, (beta1, beta2)) in [(0.0, 0.9), (0.5, 0.999), (0.9, 0.999)].iter().enumerate() {
            let g = if step == 1 {
                w.zeros_like().unwrap()
            } else {
                random(&mut rng, n, -3.0, 3.0)
            };
            let c = Coeffs {
                beta1: *beta1,
                beta2: *beta2,
                eps: 1e-8,
                lr_t: 2e-4 * (step as f64 + 1.3),
            };
            let (fw, fm, fv) = fused_f32(&w, &g, &m1, &v1, c).unwrap().expect("fused path");
            let (cw, cm, cv) = candle_update(&w2, &g, &m2, &v2, c).unwrap();
            assert_eq!(bits(&fw), bits(&cw), "weights, step {step}");
            assert_eq!(bits(&fm), bits(&cm), "first moment, step {step}");
            assert_eq!(bits(&fv), bits(&cv), "second moment, step {step}");
            (w, m1, v1, w2, m2, v2) = (fw, fm, fv, cw, cm, cv);
        }
        let f64_w = w.to_dtype(candle_core::DType::F64).unwrap();
        let c = Coeffs {
            beta1: 0.5,
            beta2: 0.9,
            eps: 1e-8,
            lr_t: 1e-3,
        };
        assert!(
            fused_f32(&f64_w, &f64_w, &f64_w, &f64_w, c)
                .unwrap()
                .is_none(),
            "f64 goes to candle ops"
        );
    }
}
