//! Leaky ReLU as one pass forward and one pass backward.
//!
//! Built from candle ops it takes three to five full-tensor passes each way (and the
//! `(1 - a) relu(x) + a x` form is not exactly `x` for positive `x` in floating point). Here
//! `y = x` for `x > 0` and `a x` otherwise, and `dx = dy` where `x > 0` and `a dy` otherwise
//! (the derivative at 0 is taken as `a`, as PyTorch does). Elementwise, so splitting the work
//! across threads cannot change a single bit.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_slice, cpu_slices, Elem};

/// Elements per parallel task: large enough to amortize scheduling, small enough to split a
/// discriminator's activations across both cores.
const CHUNK: usize = 1 << 15;

/// `a` where `x > 0`, else `a * slope`, as a select of two computed values: no branch on the
/// sign (activations are about half negative, so a branch mispredicts constantly) and a loop
/// the compiler vectorizes. `slope` is taken by value so it stays in a register.
#[inline(always)]
fn scale_negative<T: Elem>(x: T, a: T, slope: T) -> T {
    let scaled = a * slope;
    if x > T::ZERO {
        a
    } else {
        scaled
    }
}

fn forward<T: Elem>(x: &[T], slope: T) -> Vec<T> {
    let mut y = vec![T::ZERO; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(move |(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = scale_negative(x, x, slope);
            }
        });
    y
}

fn backward<T: Elem>(x: &[T], dy: &[T], slope: T) -> Vec<T> {
    let mut dx = vec![T::ZERO; x.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(move |(dx, (x, dy))| {
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                *dx = scale_negative(x, dy, slope);
            }
        });
    dx
}

/// `leaky_relu(x)` with the given negative slope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeakyRelu {
    pub slope: f64,
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "fast-leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let storage = match s {
            CpuStorage::F32(_) => {
                CpuStorage::F32(forward(cpu_slice(self.name(), s, l)?, self.slope as f32))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(forward(cpu_slice(self.name(), s, l)?, self.slope))
            }
            _ => bail!(
                "{}: only f32 and f64 are supported, got {:?}",
                self.name(),
                s.dtype()
            ),
        };
        Ok((storage, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(
            &dy,
            &LeakyReluGrad { slope: self.slope },
        )?))
    }
}

/// `(x, dy) -> dx` of [`LeakyRelu`].
#[derive(Debug, Clone, Copy)]
struct LeakyReluGrad {
    slope: f64,
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "fast-leaky-relu-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            bail!(
                "{}: x {:?} and dy {:?} differ in shape",
                self.name(),
                l1.dims(),
                l2.dims()
            );
        }
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (x, dy) = cpu_slices::<f32>(self.name(), s1, l1, s2, l2)?;
                CpuStorage::F32(backward(x, dy, self.slope as f32))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (x, dy) = cpu_slices::<f64>(self.name(), s1, l1, s2, l2)?;
                CpuStorage::F64(backward(x, dy, self.slope))
            }
            _ => bail!(
                "{}: only f32 and f64 operands of one dtype are supported, got {:?} and {:?}",
                self.name(),
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((storage, l1.shape().clone()))
    }
}
