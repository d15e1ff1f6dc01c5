//! The spectral norm's division `W / sigma` with `sigma = u^T W v` (`u`, `v` constants), as one
//! graph node: the same bits as candle's `W.broadcast_div(&u.t().matmul(&W)?.matmul(&v)?)`,
//! forward and backward, with the full-size work in parallel passes.
//!
//! Why: built from candle ops, the backward of that expression is about fourteen serial passes
//! over the weight per forward (the division's two gradients, `sigma`'s broadcast summed back,
//! both matmuls' gradients, a `zeros_like` and an `add` for every node that receives one, the
//! two reshapes' included), run on the calling thread while the kernels' threads wait. The
//! standard CNN's discriminator has 2.9M weights and two forwards a D step: there spectral
//! normalization cost 35-70 ms a step against PyTorch's 6-20, and with this op the D step went
//! from 1.40x to 1.23x PyTorch's time in the same benchmark run (`scripts/bench/train_step.sh`,
//! two threads).
//!
//! What must never change silently: **the bits equal candle's** (tested on f32 and f64, values
//! and gradients). `sigma` is computed by the very candle calls the expression makes. The
//! backward repeats candle's arithmetic step by step, each element alone, so splitting it across
//! threads changes nothing:
//! - the division's gradient to `W`, `g / sigma`, and to the broadcast `sigma`,
//!   `0 - g W / (sigma sigma)`, each element rounded as candle rounds it;
//! - the broadcast summed back to `sigma` by candle's own `sum_keepdim` over the same axes (its
//!   reduction order is candle's, not ours), then `0 +` it, as the gradient store adds it;
//! - the two matmuls' gradients have one-term sums (`t_j = dsigma v_j`, then `u_i t_j`), which
//!   any product rounds the same;
//! - `W`'s two contributions summed as `(0 + g / sigma) + u_i t_j`; floating-point addition
//!   commutes, so the order in which candle's store would add them does not matter.
//!
//! `u` and `v` get no gradient (the spectral norm detaches them); on other devices and dtypes
//! the candle expression runs, with `u` and `v` detached to match.

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::{cpu_slice, map_pairs, map_unary, Elem, Unary};

/// Rows of `W` per parallel task: a task is at least about 32K elements.
fn rows_per_task(cols: usize) -> usize {
    (1usize << 15).div_ceil(cols.max(1))
}

/// `w / (u^T m v)` for `w: (O, ...)` viewed as the matrix `m: (O, K)`, `u: (O, 1)`,
/// `v: (K, 1)`, differentiable in `w` only, shaped like `w`.
pub(crate) fn divide(w: &Tensor, u: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (u, v) = (u.detach(), v.detach());
    let rows = w.dim(0)?;
    let m = w.reshape((rows, w.elem_count() / rows))?;
    if !super::fast(&[w, &u, &v]) {
        return m
            .broadcast_div(&u.t()?.matmul(&m)?.matmul(&v)?)?
            .reshape(w.shape());
    }
    let sigma = u.t()?.matmul(&m.detach())?.matmul(&v)?;
    let op = SpectralDiv {
        sigma: sigma
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?[0],
        u: u.flatten_all()?.contiguous()?,
        v: v.flatten_all()?.contiguous()?,
    };
    w.contiguous()?.apply_op1(op)
}

/// The op: `sigma` as computed forward (exact in f64 for either dtype), `u` and `v` flat.
#[derive(Debug, Clone)]
struct SpectralDiv {
    sigma: f64,
    u: Tensor,
    v: Tensor,
}

impl Unary for &SpectralDiv {
    fn run<T: Elem>(&self, w: &[T]) -> Vec<T> {
        let s = T::from_f64(self.sigma);
        map_pairs(w, w, move |w, _| w / s)
    }
}

impl CustomOp1 for SpectralDiv {
    fn name(&self) -> &'static str {
        "fast-spectral-div"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((map_unary(self.name(), (s, l), self)?, l.shape().clone()))
    }

    fn bwd(&self, w: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.contiguous()?;
        let rows = w.dim(0)?;
        let cols = w.elem_count() / rows;
        match w.dtype() {
            DType::F32 => self.grad::<f32>(w, &g, (rows, cols)),
            _ => self.grad::<f64>(w, &g, (rows, cols)),
        }
        .map(Some)
    }
}

impl SpectralDiv {
    /// `dW` for the incoming gradient `g` (see the module doc for each step's rounding).
    fn grad<T: Elem>(
        &self,
        w: &Tensor,
        g: &Tensor,
        (rows, cols): (usize, usize),
    ) -> Result<Tensor> {
        let name = self.name();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let (u, v) = (self.u.to_vec1::<T>()?, self.v.to_vec1::<T>()?);
        let s = T::from_f64(self.sigma);
        let ss = s * s;
        let rows_per = rows_per_task(cols);
        let mut dw = super::zeroed::<T>(rows * cols);
        let mut e = super::zeroed::<T>(rows * cols);
        {
            let (wd, gd) = match (&*ws, &*gs) {
                (Storage::Cpu(ws), Storage::Cpu(gs)) => {
                    (cpu_slice::<T>(name, ws, wl)?, cpu_slice::<T>(name, gs, gl)?)
                }
                _ => bail!("{name}: operands must be on the CPU"),
            };
            let task = rows_per * cols;
            dw.par_chunks_mut(task)
                .zip(e.par_chunks_mut(task))
                .zip(wd.par_chunks(task).zip(gd.par_chunks(task)))
                .for_each(|((dw, e), (w, g))| {
                    for (((dw, e), &w), &g) in dw.iter_mut().zip(e.iter_mut()).zip(w).zip(g) {
                        *dw = T::ZERO + g / s;
                        *e = T::ZERO - g * w / ss;
                    }
                });
        }
        // The broadcast `sigma` summed back by candle, over the axes it was broadcast along.
        let axes: Vec<usize> = [rows, cols]
            .iter()
            .enumerate()
            .filter(|(_, &n)| n != 1)
            .map(|(axis, _)| axis)
            .collect();
        let e = Tensor::from_vec(e, (rows, cols), w.device())?;
        let dsigma = T::ZERO
            + e.sum_keepdim(axes.as_slice())?
                .flatten_all()?
                .to_vec1::<T>()?[0];
        let t: Vec<T> = v.iter().map(|&v| dsigma * v).collect();
        dw.par_chunks_mut(rows_per * cols)
            .enumerate()
            .for_each(|(task, dw)| {
                let first = task * rows_per;
                for (i, row) in dw.chunks_exact_mut(cols).enumerate() {
                    let ui = u[first + i];
                    for (d, &tj) in row.iter_mut().zip(&t) {
                        *d += ui * tj;
                    }
                }
            });
        Tensor::from_vec(dw, w.shape(), w.device())
    }
}
