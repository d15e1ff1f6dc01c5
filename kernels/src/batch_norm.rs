//! Training-mode batch normalization over the channels of an NCHW tensor, one pass over the
//! data per statistic and one fused backward.
//!
//! Built from candle ops, the batch mean and variance are `mean_keepdim((0, 2, 3))`, which
//! candle's CPU backend computes with index arithmetic per element, forward and again for the
//! gradient; that was a fifth of a generator step. Here each channel is one task: its
//! statistics are accumulated in f64 in a fixed order (sample, then position), so results do
//! not depend on the thread count, and are at least as accurate as the f32 sums they replace.
//!
//! Semantics (those of [`crate::nn::layers::BatchNorm2d`] in training mode): `M = N H W`,
//! `mean` and the biased `var` over the batch and positions, `y = (x - mean) / sqrt(var + eps)
//! * gamma + beta`, differentiable in `x`, `gamma`, `beta` through the batch statistics.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{check_float, cpu_slice, map_unary, Elem, Unary};

/// The planes (`N` of them, `plane` long) of channel `ch` in an NCHW buffer.
fn planes<T: Elem>(
    x: &[T],
    (n, c, plane): (usize, usize, usize),
    ch: usize,
) -> impl Iterator<Item = &[T]> {
    (0..n).map(move |s| &x[(s * c + ch) * plane..][..plane])
}

/// `sum f(a, b)` over the elements of one channel's planes in `a` and `b` (same shape) in f64,
/// as eight interleaved partial sums combined in a fixed order: the order depends on the shape
/// alone, and eight independent chains keep the adder busy where a single chain waited out the
/// latency of every addition.
fn channel_sum_f64<T: Elem>(
    a: &[T],
    b: &[T],
    dims: (usize, usize, usize),
    ch: usize,
    f: impl Fn(T, T) -> f64,
) -> f64 {
    let mut lanes = [0f64; 8];
    for (pa, pb) in planes(a, dims, ch).zip(planes(b, dims, ch)) {
        let (mut ca, mut cb) = (pa.chunks_exact(8), pb.chunks_exact(8));
        for (ca, cb) in (&mut ca).zip(&mut cb) {
            for ((l, &va), &vb) in lanes.iter_mut().zip(ca).zip(cb) {
                *l += f(va, vb);
            }
        }
        for ((l, &va), &vb) in lanes.iter_mut().zip(ca.remainder()).zip(cb.remainder()) {
            *l += f(va, vb);
        }
    }
    let (l0, l1) = (lanes[0] + lanes[4], lanes[1] + lanes[5]);
    let (l2, l3) = (lanes[2] + lanes[6], lanes[3] + lanes[7]);
    (l0 + l2) + (l1 + l3)
}

/// `(mean, biased variance)` of one channel, accumulated in f64.
fn moments<T: Elem>(x: &[T], dims: (usize, usize, usize), ch: usize) -> (f64, f64) {
    let m = (dims.0 * dims.2) as f64;
    let mean = channel_sum_f64(x, x, dims, ch, |v, _| v.to_f64()) / m;
    let sq = channel_sum_f64(x, x, dims, ch, |v, _| {
        let d = v.to_f64() - mean;
        d * d
    });
    (mean, sq / m)
}

/// `(N, C, ...)` as `(N, C, positions)`.
fn ncp(dims: &[usize]) -> Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        bail!("batch norm: expected at least 2 dims, got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

fn forward<T: Elem>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    dims: (usize, usize, usize),
    eps: f64,
) -> Vec<T> {
    let (n, c, plane) = dims;
    // Per channel: (scale, shift) so that y = x * scale + shift.
    let affine: Vec<(T, T)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = moments(x, dims, ch);
            let scale = gamma[ch].to_f64() / (var + eps).sqrt();
            (
                T::from_f64(scale),
                T::from_f64(beta[ch].to_f64() - mean * scale),
            )
        })
        .collect();
    let mut y = super::zeroed(x.len());
    y.par_chunks_mut(plane.max(1))
        .zip(x.par_chunks(plane.max(1)))
        .enumerate()
        .for_each(|(row, (y, x))| {
            let (scale, shift) = affine[row % c];
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x * scale + shift;
            }
        });
    debug_assert_eq!(y.len(), n * c * plane);
    y
}

/// `[dx (N C P), dgamma (C), dbeta (C)]` in one buffer.
fn backward<T: Elem>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    dims: (usize, usize, usize),
    eps: f64,
) -> Vec<T> {
    let (n, c, plane) = dims;
    let m = (n * plane) as f64;
    // Per channel: the statistics and the two sums the gradient needs.
    let per_channel: Vec<(f64, f64, f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = moments(x, dims, ch);
            let inv = 1.0 / (var + eps).sqrt();
            let sdy = channel_sum_f64(dy, dy, dims, ch, |dy, _| dy.to_f64());
            let sdyx = channel_sum_f64(x, dy, dims, ch, |x, dy| {
                dy.to_f64() * (x.to_f64() - mean) * inv
            });
            (mean, inv, sdy, sdyx)
        })
        .collect();
    let mut out = super::zeroed(x.len() + 2 * c);
    let (dx, rest) = out.split_at_mut(x.len());
    dx.par_chunks_mut(plane.max(1))
        .zip(x.par_chunks(plane.max(1)).zip(dy.par_chunks(plane.max(1))))
        .enumerate()
        .for_each(|(row, (dx, (x, dy)))| {
            let ch = row % c;
            let (mean, inv, sdy, sdyx) = per_channel[ch];
            // dx = gamma inv / M (M dy - sum dy - xhat sum(dy xhat)), as a*dy + b*x + d.
            let k = gamma[ch].to_f64() * inv / m;
            let a = T::from_f64(k * m);
            let b = T::from_f64(-k * inv * sdyx);
            let d = T::from_f64(k * (mean * inv * sdyx - sdy));
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                *dx = a * dy + b * x + d;
            }
        });
    for (ch, &(_, _, sdy, sdyx)) in per_channel.iter().enumerate() {
        rest[ch] = T::from_f64(sdyx);
        rest[c + ch] = T::from_f64(sdy);
    }
    out
}

/// `(x, gamma, beta) -> y`, training mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchNormTrain {
    pub eps: f64,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "fast-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        check_float(name, s1)?;
        let dims = ncp(l1.dims())?;
        if l2.dims().iter().product::<usize>() != dims.1
            || l3.dims().iter().product::<usize>() != dims.1
        {
            bail!(
                "{name}: gamma {:?} / beta {:?} do not have {} elements",
                l2.dims(),
                l3.dims(),
                dims.1
            );
        }
        let storage = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                cpu_slice(name, s1, l1)?,
                cpu_slice(name, s2, l2)?,
                cpu_slice(name, s3, l3)?,
                dims,
                self.eps,
            )),
            _ => CpuStorage::F64(forward(
                cpu_slice(name, s1, l1)?,
                cpu_slice(name, s2, l2)?,
                cpu_slice(name, s3, l3)?,
                dims,
                self.eps,
            )),
        };
        Ok((storage, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let all = x.apply_op3_no_bwd(gamma, &dy, &BatchNormGrad { eps: self.eps })?;
        let (len, c) = (x.elem_count(), gamma.elem_count());
        let dx = all.narrow(0, 0, len)?.reshape(x.dims())?;
        let dgamma = all.narrow(0, len, c)?.reshape(gamma.dims())?;
        let dbeta = all.narrow(0, len + c, c)?.reshape(gamma.dims())?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// `(x, gamma, dy) -> [dx, dgamma, dbeta]` flattened into one vector (a custom op has one output).
#[derive(Debug, Clone, Copy)]
struct BatchNormGrad {
    eps: f64,
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "fast-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        check_float(name, s1)?;
        let dims = ncp(l1.dims())?;
        if l3.dims() != l1.dims() {
            bail!(
                "{name}: dy {:?} and x {:?} differ in shape",
                l3.dims(),
                l1.dims()
            );
        }
        let storage = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(backward(
                cpu_slice(name, s1, l1)?,
                cpu_slice(name, s2, l2)?,
                cpu_slice(name, s3, l3)?,
                dims,
                self.eps,
            )),
            _ => CpuStorage::F64(backward(
                cpu_slice(name, s1, l1)?,
                cpu_slice(name, s2, l2)?,
                cpu_slice(name, s3, l3)?,
                dims,
                self.eps,
            )),
        };
        let len = l1.shape().elem_count() + 2 * dims.1;
        Ok((storage, Shape::from(len)))
    }
}

/// `x (N, C, ...) -> (2, C)`: each channel's batch mean and biased variance (no gradient).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelMoments;

impl CustomOp1 for ChannelMoments {
    fn name(&self) -> &'static str {
        "fast-channel-moments"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        struct Moments((usize, usize, usize));
        impl Unary for Moments {
            fn run<T: Elem>(&self, x: &[T]) -> Vec<T> {
                let m: Vec<(f64, f64)> = (0..self.0 .1)
                    .into_par_iter()
                    .map(|ch| moments(x, self.0, ch))
                    .collect();
                let mut out: Vec<T> = m.iter().map(|&(mean, _)| T::from_f64(mean)).collect();
                out.extend(m.iter().map(|&(_, var)| T::from_f64(var)));
                out
            }
        }
        let dims = ncp(l.dims())?;
        let storage = map_unary(self.name(), (s, l), Moments(dims))?;
        Ok((storage, Shape::from((2, dims.1))))
    }
}
