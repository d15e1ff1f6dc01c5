//! Leaky ReLU (and ReLU, its slope-0 case) as one pass forward and one pass backward.
//!
//! Built from candle ops it takes three to five full-tensor passes each way (and the
//! `(1 - a) relu(x) + a x` form is not exactly `x` for positive `x` in floating point). Here
//! `y = x` for `x > 0` and `a x` otherwise, and `dx = dy` where `x > 0` and `a dy` otherwise
//! (the derivative at 0 is taken as `a`, as PyTorch does). With slope 0 it is ReLU: `y =
//! max(x, 0)` and `dx = 0` where `x <= 0` (PyTorch's convention; candle's own `relu` passes the
//! gradient at exactly 0), in one pass where candle's relu backward takes four (`zeros_like`,
//! `ge`, `to_dtype`, `mul`). Elementwise, so splitting the work across threads cannot change a
//! single bit.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{map_binary, map_pairs, map_unary, Binary, Elem, Unary, CHUNK};

/// The activation applied to `(x, a)`: `a` where `x > 0`, else `a * slope` (`0` for a slope of
/// 0: ReLU, exactly `max(x, 0)`). Forward `a` is `x` itself, backward it is `dy`.
///
/// Written as selects of computed values, never a branch on the sign (activations are about
/// half negative, so a branch mispredicts constantly), with `slope` copied into the closure so
/// it stays in a register: the loops over it vectorize.
#[inline(always)]
fn select<T: Elem>(slope: T) -> impl Fn(T, T) -> T + Copy + Sync {
    let relu = slope == T::ZERO;
    move |x, a| {
        let negative = if relu { T::ZERO } else { a * slope };
        if x > T::ZERO {
            a
        } else {
            negative
        }
    }
}

fn forward<T: Elem>(x: &[T], slope: T) -> Vec<T> {
    map_pairs(x, x, select(slope))
}

/// [`forward`] overwriting its input: for an op that applies the activation to an output it
/// has just made ([`super::conv::Conv2d`]), so it needs no second buffer and no graph node.
pub(crate) fn forward_in_place<T: Elem>(x: &mut [T], slope: T) {
    let f = select(slope);
    x.par_chunks_mut(CHUNK).for_each(move |x| {
        for x in x {
            *x = f(*x, *x);
        }
    });
}

fn backward<T: Elem>(x: &[T], dy: &[T], slope: T) -> Vec<T> {
    map_pairs(x, dy, select(slope))
}

impl Unary for LeakyRelu {
    fn run<T: Elem>(&self, x: &[T]) -> Vec<T> {
        forward(x, T::from_f64(self.slope))
    }
}

impl Binary for LeakyReluGrad {
    fn run<T: Elem>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        backward(x, dy, T::from_f64(self.slope))
    }
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
        Ok((map_unary(self.name(), (s, l), *self)?, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(
            &dy,
            &LeakyReluGrad { slope: self.slope },
        )?))
    }
}

/// `(x, dy) -> dx` of [`LeakyRelu`]. With a slope `>= 0` the output `y` has the sign of `x`
/// (and is 0 exactly where `x` is), so `y` can stand in for `x`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeakyReluGrad {
    pub slope: f64,
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
        let storage = map_binary(self.name(), (s1, l1), (s2, l2), *self)?;
        Ok((storage, l1.shape().clone()))
    }
}
