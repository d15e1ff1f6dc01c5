//! 2x2 max pooling with stride 2 (an odd last row or column is dropped) as one pass forward
//! and one pass backward.
//!
//! candle has no max pool with a correct gradient (see the MNIST classifier), so the pool was
//! built from candle ops: `narrow`, a reshape to `(n, c, h/2, 2, w/2, 2)` (a copy), and two max
//! reductions, whose backward is a broadcast `eq`, a cast and a `mul` each, plus candle's
//! gradient accumulation between every pair of nodes. In the classifier's training those
//! broadcast ops were a fifth of the time.
//!
//! **Bit for bit the ops it replaces** (tested, ties and signed zeros included):
//! - forward: the maximum of each row's pair first, then of the two rows, each keeping the
//!   first operand unless the second is strictly greater (candle's reduction);
//! - backward: an element receives its window's `dy` when it equals its row pair's maximum and
//!   that equals the window's (so every tied maximum receives it, as in candle), and 0
//!   elsewhere, including the dropped row and column. candle's own backward multiplies the
//!   non-maxima by 0, so an infinite `dy` would make them NaN there and 0 here; a training step
//!   with an infinite gradient has already failed its finiteness check.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{map_binary, map_unary, Binary, Elem, Unary};

/// candle's max-reduction step: keep `acc` unless `v` is strictly greater.
#[inline(always)]
fn keep_max<T: Elem>(acc: T, v: T) -> T {
    if acc < v {
        v
    } else {
        acc
    }
}

/// The two row maxima and the window maximum of the window at `(2i, 2j)` of a `w`-wide plane.
#[inline(always)]
fn window<T: Elem>(plane: &[T], w: usize, (i, j): (usize, usize)) -> (T, T, T) {
    let top = &plane[2 * i * w + 2 * j..][..2];
    let bottom = &plane[(2 * i + 1) * w + 2 * j..][..2];
    let (t, b) = (keep_max(top[0], top[1]), keep_max(bottom[0], bottom[1]));
    (t, b, keep_max(t, b))
}

fn forward<T: Elem>(x: &[T], (h, w): (usize, usize)) -> Vec<T> {
    let (h2, w2) = (h / 2, w / 2);
    let planes = x.len() / (h * w).max(1);
    let mut y = super::zeroed(planes * h2 * w2);
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(h2 * w2)
        .zip(x.par_chunks(h * w))
        .for_each(|(out, plane)| {
            for (i, row) in out.chunks_exact_mut(w2).enumerate() {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = window(plane, w, (i, j)).2;
                }
            }
        });
    y
}

fn backward<T: Elem>(x: &[T], dy: &[T], (h, w): (usize, usize)) -> Vec<T> {
    let (h2, w2) = (h / 2, w / 2);
    let mut dx = super::zeroed(x.len());
    if dx.is_empty() || h2 * w2 == 0 {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w).zip(dy.par_chunks(h2 * w2)))
        .for_each(|(out, (plane, grad))| {
            for i in 0..h2 {
                for j in 0..w2 {
                    let (t, b, m) = window(plane, w, (i, j));
                    let g = grad[i * w2 + j];
                    for (r, row_max) in [(2 * i, t), (2 * i + 1, b)] {
                        if row_max != m {
                            continue;
                        }
                        for col in [2 * j, 2 * j + 1] {
                            if plane[r * w + col] == row_max {
                                out[r * w + col] = g;
                            }
                        }
                    }
                }
            }
        });
    dx
}

/// The spatial size `(h, w)` of a 4-d contiguous operand, or an error naming the op.
fn plane_dims(op: &str, l: &Layout) -> Result<(usize, usize)> {
    match *l.dims() {
        [_, _, h, w] => Ok((h, w)),
        ref d => bail!("{op}: expected a 4-d (n, c, h, w) input, got {d:?}"),
    }
}

/// The pooled planes' `(h, w)`: the forward pass as a [`Unary`] kernel, the backward as a
/// [`Binary`] one.
#[derive(Clone, Copy)]
struct Planes(usize, usize);

impl Unary for Planes {
    fn run<T: Elem>(&self, x: &[T]) -> Vec<T> {
        forward(x, (self.0, self.1))
    }
}

impl Binary for Planes {
    fn run<T: Elem>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        backward(x, dy, (self.0, self.1))
    }
}

/// `y (n, c, h/2, w/2)` = the maximum of each 2x2 window of `x (n, c, h, w)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxPool2;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "fast-max-pool2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (h, w) = plane_dims(self.name(), l)?;
        let dims = l.dims();
        let shape = Shape::from((dims[0], dims[1], h / 2, w / 2));
        let storage = map_unary(self.name(), (s, l), Planes(h, w))?;
        Ok((storage, shape))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(&dy, &MaxPool2Grad)?))
    }
}

/// `(x, dy) -> dx` of [`MaxPool2`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxPool2Grad;

impl CustomOp2 for MaxPool2Grad {
    fn name(&self) -> &'static str {
        "fast-max-pool2-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (h, w) = plane_dims(self.name(), l1)?;
        let (x_dims, dy_dims) = (l1.dims(), l2.dims());
        if dy_dims != [x_dims[0], x_dims[1], h / 2, w / 2] {
            bail!(
                "{}: dy {dy_dims:?} is not the pooled shape of x {x_dims:?}",
                self.name()
            );
        }
        let storage = map_binary(self.name(), (s1, l1), (s2, l2), Planes(h, w))?;
        Ok((storage, l1.shape().clone()))
    }
}
