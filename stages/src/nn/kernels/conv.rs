//! 2-D convolution on the CPU as im2col + GEMM, and the three passes every convolution kernel
//! here is made of.
//!
//! A convolution with geometry `g` has three linear maps, each one [`Pass`]:
//! - `Forward`: `y = conv(x, W)`, per chunk `Y = W (O x K) * col(x) (K x sP)`;
//! - `BackwardData`: its adjoint in `x`, `dx = col2im(W^T * dY)`;
//! - `BackwardWeight`: its adjoint in `W`, `dW = sum over chunks of dY (O x sP) * col(x)^T`.
//!
//! The transposed convolution is the same three passes in another order
//! ([`super::conv_transpose`]), so one set of kernels serves both layers and both directions.
//!
//! Parallelism and determinism: the batch is cut into chunks whose size depends only on the
//! geometry ([`chunk_samples`]), never on the thread count; rayon runs the chunks, each with a
//! single-threaded GEMM. `Forward` and `BackwardData` write disjoint samples, and
//! `BackwardWeight` sums its per-chunk partial products in chunk order after the parallel part,
//! so every output is the same bits whatever the number of threads or their scheduling.

use std::borrow::Cow;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::im2col::{col2im, im2col, ConvGeom};
use super::matmul::{matmul, View};
use super::{cpu_slices, Elem};

/// Columns (samples x positions) a chunk aims for: wide enough that one GEMM amortizes packing
/// its weight operand, and that the weight-gradient product has a long reduction.
const TARGET_COLS: usize = 2048;
/// Chunks a batch is cut into at least (when it has that many samples), so that a layer with
/// few output positions still keeps several threads busy.
const MIN_CHUNKS: usize = 8;

/// Samples per chunk: a function of the geometry alone (see the module doc).
pub(crate) fn chunk_samples(g: &ConvGeom) -> usize {
    let by_cols = TARGET_COLS.div_ceil(g.p().max(1));
    let by_chunks = g.n.div_ceil(MIN_CHUNKS);
    by_cols.min(by_chunks).max(1)
}

/// `dy` of `s` samples (`s x O x P`) as the `O x (s P)` matrix the GEMMs read.
fn samples_to_cols<'a, T: Elem>(g: &ConvGeom, dy: &'a [T]) -> Cow<'a, [T]> {
    let (o, p) = (g.o, g.p());
    let s = dy.len() / (o * p).max(1);
    if s == 1 {
        return Cow::Borrowed(dy);
    }
    let mut out = vec![T::ZERO; dy.len()];
    for (sample, src) in dy.chunks_exact(o * p).enumerate() {
        for (ch, row) in src.chunks_exact(p).enumerate() {
            out[ch * s * p + sample * p..][..p].copy_from_slice(row);
        }
    }
    Cow::Owned(out)
}

/// The inverse of [`samples_to_cols`], writing into `y` (`s x O x P`).
fn cols_to_samples<T: Elem>(g: &ConvGeom, m: &[T], y: &mut [T]) {
    let (o, p) = (g.o, g.p());
    let s = y.len() / (o * p).max(1);
    for (sample, dst) in y.chunks_exact_mut(o * p).enumerate() {
        for (ch, row) in dst.chunks_exact_mut(p).enumerate() {
            row.copy_from_slice(&m[ch * s * p + sample * p..][..p]);
        }
    }
}

/// `y (N x O x OH x OW) = conv(x (N x C x H x W), w (O x C x kh x kw))`.
pub(crate) fn forward<T: Elem>(g: &ConvGeom, x: &[T], w: &[T]) -> Vec<T> {
    let mut y = vec![T::ZERO; g.n * g.out_len()];
    if y.is_empty() {
        return y;
    }
    let cs = chunk_samples(g);
    let (k, p) = (g.k(), g.p());
    y.par_chunks_mut(cs * g.out_len())
        .zip(x.par_chunks(cs * g.in_len()))
        .for_each(|(yc, xc)| {
            let s = yc.len() / g.out_len();
            let cols = s * p;
            let wv = View::rows(w, k);
            if g.is_pointwise() && s == 1 {
                matmul((g.o, p, k), yc, false, wv, View::rows(xc, p));
                return;
            }
            let mut col = vec![T::ZERO; k * cols];
            im2col(g, xc, &mut col);
            if s == 1 {
                matmul((g.o, cols, k), yc, false, wv, View::rows(&col, cols));
            } else {
                let mut tmp = vec![T::ZERO; g.o * cols];
                matmul((g.o, cols, k), &mut tmp, false, wv, View::rows(&col, cols));
                cols_to_samples(g, &tmp, yc);
            }
        });
    y
}

/// `dx (N x C x H x W)` from `dy (N x O x OH x OW)` and `w (O x C x kh x kw)`.
pub(crate) fn backward_data<T: Elem>(g: &ConvGeom, dy: &[T], w: &[T]) -> Vec<T> {
    let mut dx = vec![T::ZERO; g.n * g.in_len()];
    if dx.is_empty() {
        return dx;
    }
    let cs = chunk_samples(g);
    let (k, p) = (g.k(), g.p());
    dx.par_chunks_mut(cs * g.in_len())
        .zip(dy.par_chunks(cs * g.out_len()))
        .for_each(|(dxc, dyc)| {
            let s = dxc.len() / g.in_len();
            let cols = s * p;
            let wt = View::transposed(w, k);
            let dym = samples_to_cols(g, dyc);
            if g.is_pointwise() && s == 1 {
                matmul((k, p, g.o), dxc, false, wt, View::rows(&dym, p));
                return;
            }
            let mut dcol = vec![T::ZERO; k * cols];
            matmul((k, cols, g.o), &mut dcol, false, wt, View::rows(&dym, cols));
            col2im(g, &dcol, dxc);
        });
    dx
}

/// `dw (O x C x kh x kw)` from `x (N x C x H x W)` and `dy (N x O x OH x OW)`.
pub(crate) fn backward_weight<T: Elem>(g: &ConvGeom, x: &[T], dy: &[T]) -> Vec<T> {
    let (k, p) = (g.k(), g.p());
    let mut dw = vec![T::ZERO; g.o * k];
    if g.n == 0 || dw.is_empty() {
        return dw;
    }
    let cs = chunk_samples(g);
    let partials: Vec<Vec<T>> = x
        .par_chunks(cs * g.in_len())
        .zip(dy.par_chunks(cs * g.out_len()))
        .map(|(xc, dyc)| {
            let s = xc.len() / g.in_len();
            let cols = s * p;
            let dym = samples_to_cols(g, dyc);
            let mut part = vec![T::ZERO; g.o * k];
            if g.is_pointwise() && s == 1 {
                let xt = View::transposed(xc, p);
                matmul((g.o, k, p), &mut part, false, View::rows(&dym, p), xt);
                return part;
            }
            let mut col = vec![T::ZERO; k * cols];
            im2col(g, xc, &mut col);
            let colt = View::transposed(&col, cols);
            matmul(
                (g.o, k, cols),
                &mut part,
                false,
                View::rows(&dym, cols),
                colt,
            );
            part
        })
        .collect();
    // The fixed-order reduction that keeps the weight gradient bit-reproducible.
    for part in &partials {
        for (d, &v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
    dw
}

/// Which of a convolution's three linear maps a [`Pass`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PassKind {
    /// `(x, w) -> y`.
    Forward,
    /// `(dy, w) -> dx`.
    BackwardData,
    /// `(x, dy) -> dw`.
    BackwardWeight,
}

/// One pass of a convolution of fixed geometry as a candle op without its own gradient (the
/// building block of [`Conv2d`] and the transposed convolution).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    pub kind: PassKind,
    pub geom: ConvGeom,
}

impl Pass {
    fn shapes(&self) -> ([usize; 4], [usize; 4], [usize; 4]) {
        let g = &self.geom;
        let x = [g.n, g.c, g.h, g.w];
        let w = [g.o, g.c, g.kh, g.kw];
        let y = [g.n, g.o, g.oh, g.ow];
        match self.kind {
            PassKind::Forward => (x, w, y),
            PassKind::BackwardData => (y, w, x),
            PassKind::BackwardWeight => (x, y, w),
        }
    }

    fn run<T: Elem>(&self, a: &[T], b: &[T]) -> Vec<T> {
        let g = &self.geom;
        match self.kind {
            PassKind::Forward => forward(g, a, b),
            PassKind::BackwardData => backward_data(g, a, b),
            PassKind::BackwardWeight => backward_weight(g, a, b),
        }
    }
}

impl CustomOp2 for Pass {
    fn name(&self) -> &'static str {
        match self.kind {
            PassKind::Forward => "fast-conv2d-forward",
            PassKind::BackwardData => "fast-conv2d-backward-data",
            PassKind::BackwardWeight => "fast-conv2d-backward-weight",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b, out) = self.shapes();
        if l1.dims() != a || l2.dims() != b {
            bail!(
                "{}: operands {:?} and {:?} do not match the geometry {:?}",
                self.name(),
                l1.dims(),
                l2.dims(),
                self.geom
            );
        }
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (a, b) = cpu_slices::<f32>(self.name(), s1, l1, s2, l2)?;
                CpuStorage::F32(self.run(a, b))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (a, b) = cpu_slices::<f64>(self.name(), s1, l1, s2, l2)?;
                CpuStorage::F64(self.run(a, b))
            }
            _ => bail!(
                "{}: only f32 and f64 operands of one dtype are supported, got {:?} and {:?}",
                self.name(),
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((storage, Shape::from(out.to_vec())))
    }
}

/// `conv2d(x, w)` with explicit per-axis padding, differentiable in both operands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2d {
    pub stride: usize,
    pub pad: (usize, usize),
}

impl Conv2d {
    fn geom(&self, x: &[usize], w: &[usize]) -> Result<ConvGeom> {
        let (&[n, c, h, wd], &[o, c_w, kh, kw]) = (x, w) else {
            bail!("conv2d: expected 4-d input and weight, got {x:?} and {w:?}");
        };
        if c != c_w {
            bail!("conv2d: input has {c} channels but the weight expects {c_w} (groups are not supported)");
        }
        ConvGeom::new((n, c, h, wd), (o, kh, kw), self.stride, self.pad)
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let geom = self.geom(l1.dims(), l2.dims())?;
        Pass {
            kind: PassKind::Forward,
            geom,
        }
        .cpu_fwd(s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let geom = self.geom(x.dims(), w.dims())?;
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(
            w,
            &Pass {
                kind: PassKind::BackwardData,
                geom,
            },
        )?;
        let dw = x.apply_op2_no_bwd(
            &dy,
            &Pass {
                kind: PassKind::BackwardWeight,
                geom,
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}
