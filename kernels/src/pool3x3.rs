//! The 3x3 pools of the FID Inception, for inference: max with stride 2 and no padding, max with
//! stride 1 and padding 1 (`-inf`), and the average with stride 1 and padding 1 that divides by
//! the number of real pixels in the window (TF's `count_include_pad=False`).
//!
//! candle's `max_pool2d` and `avg_pool2d` run one thread over every window with a strided index
//! per element, and the padded forms needed a padded copy first (two `pad_with_zeros`, or four
//! `cat`s of `-inf` borders) and, for the average, a broadcast multiply after: about 9% of the
//! Inception's time at 2 threads, on one core. Here each is one pass, parallel over planes.
//!
//! **Bit for bit the candle ops they replace** (tested): the max visits the window row by row,
//! starting from its top-left element (`-inf` where that is padding) and keeping the current
//! value unless the next is strictly greater, as candle's `max_pool2d` does; the average adds
//! the nine values row by row into a zero (a padded pixel adds `0.0`), multiplies by the
//! `1 / 9` of the element type, then by `9 / count` computed in `f32`, as
//! `avg_pool2d(pad(x)) * (9 / count)` did. Forward only: no backward is defined (candle reports
//! that if a gradient is asked for).

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

use super::{map_unary, Elem, Unary};

/// Which 3x3 pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool3x3 {
    /// Max, stride 2, no padding: `(h - 3) / 2 + 1` out per axis.
    MaxStride2,
    /// Max, stride 1, padding 1 with `-inf`: the same size out.
    MaxSame,
    /// Average, stride 1, padding 1, divided by the count of unpadded pixels: the same size out.
    AvgSameExcludePad,
}

impl Pool3x3 {
    /// Output plane size for an `(h, w)` input plane.
    fn out_dims(self, (h, w): (usize, usize)) -> (usize, usize) {
        match self {
            Pool3x3::MaxStride2 => ((h - 3) / 2 + 1, (w - 3) / 2 + 1),
            Pool3x3::MaxSame | Pool3x3::AvgSameExcludePad => (h, w),
        }
    }
}

/// A pool with its input plane size: the [`Unary`] kernel.
#[derive(Clone, Copy)]
struct Planes {
    pool: Pool3x3,
    h: usize,
    w: usize,
}

impl Unary for Planes {
    fn run<T: Elem>(&self, x: &[T]) -> Vec<T> {
        let (h, w) = (self.h, self.w);
        let (oh, ow) = self.pool.out_dims((h, w));
        let mut y = super::zeroed(x.len() / (h * w).max(1) * oh * ow);
        if y.is_empty() {
            return y;
        }
        let pool = self.pool;
        // The average's per-column factors: one row for the first and last output rows, one
        // for the others (the same for every plane, so made once).
        let factors = match pool {
            Pool3x3::AvgSameExcludePad => [0, h / 2].map(|i| {
                (0..w)
                    .map(|j| T::from_f64(f64::from(nine_over_count((i, h), (j, w)))))
                    .collect()
            }),
            _ => [Vec::new(), Vec::new()],
        };
        let factors = &factors;
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each_init(Vec::new, |rows, (out, plane)| match pool {
                Pool3x3::MaxStride2 => {
                    pool_plane::<T, 2>(plane, (h, w), out, 0, Combine::Max, rows)
                }
                Pool3x3::MaxSame => pool_plane::<T, 1>(plane, (h, w), out, 1, Combine::Max, rows),
                Pool3x3::AvgSameExcludePad => {
                    let combine = Combine::Sum(factors);
                    pool_plane::<T, 1>(plane, (h, w), out, 1, combine, rows)
                }
            });
        y
    }
}

/// How a pool combines its window: the max keeps the current value unless the next is strictly
/// greater and starts from the window's top-left element; the average adds into a zero, then
/// scales by the first (edge rows) or second (other rows) of its factor rows (see
/// [`scale_row`]).
#[derive(Clone, Copy)]
enum Combine<'a, T> {
    Max,
    Sum(&'a [Vec<T>; 2]),
}

/// One plane, output row by output row: the three input rows of a window row are copied into
/// `pad`-bordered buffers of `fill`, each split into its `STRIDE` phases (elements `0, STRIDE,
/// ...`, then `1, 1 + STRIDE, ...`), so that each of the nine taps, row by row, is a contiguous
/// run combined into the whole output row at once (a loop that vectorizes). That visits every
/// window's elements in the same order as a window-by-window loop. `rows` is scratch.
fn pool_plane<T: Elem, const STRIDE: usize>(
    plane: &[T],
    (h, w): (usize, usize),
    out: &mut [T],
    pad: usize,
    combine: Combine<T>,
    rows: &mut Vec<T>,
) {
    debug_assert!(STRIDE == 1 || pad == 0, "a strided pool has no padding");
    let fill = match combine {
        Combine::Max => T::from_f64(f64::NEG_INFINITY),
        Combine::Sum(_) => T::ZERO,
    };
    let padded_w = w + 2 * pad;
    let ow = (padded_w - 3) / STRIDE + 1;
    // A phase's length, and the three split rows side by side.
    let len = padded_w.div_ceil(STRIDE);
    rows.clear();
    rows.resize(3 * STRIDE * len, fill);
    for (i, acc) in out.chunks_exact_mut(ow).enumerate() {
        for (dr, row) in rows.chunks_exact_mut(STRIDE * len).enumerate() {
            // Padded row `i * STRIDE + dr` is input row `i * STRIDE + dr - pad`, if any.
            match (i * STRIDE + dr).checked_sub(pad).filter(|&r| r < h) {
                Some(r) if STRIDE == 1 => row[pad..pad + w].copy_from_slice(&plane[r * w..][..w]),
                Some(r) => {
                    let src = &plane[r * w..][..w];
                    for (q, phase) in row.chunks_exact_mut(len).enumerate() {
                        for (d, &v) in phase.iter_mut().zip(src.iter().skip(q).step_by(STRIDE)) {
                            *d = v;
                        }
                    }
                }
                None => row.fill(fill),
            }
        }
        // Tap `dc` of the whole output row: phase `dc % STRIDE` from element `dc / STRIDE`.
        let tap = |dr: usize, dc: usize| {
            let start = (dr * STRIDE + dc % STRIDE) * len + dc / STRIDE;
            &rows[start..start + ow]
        };
        match combine {
            Combine::Max => acc.copy_from_slice(tap(0, 0)),
            Combine::Sum(_) => acc.fill(T::ZERO),
        }
        for dr in 0..3 {
            for dc in 0..3 {
                let taps = tap(dr, dc);
                match combine {
                    Combine::Max => {
                        for (a, &v) in acc.iter_mut().zip(taps) {
                            *a = if *a < v { v } else { *a };
                        }
                    }
                    Combine::Sum(_) => {
                        for (a, &v) in acc.iter_mut().zip(taps) {
                            *a += v;
                        }
                    }
                }
            }
        }
        if let Combine::Sum(factors) = combine {
            let edge = i == 0 || i + 1 == h;
            scale_row(acc, &factors[usize::from(!edge)]);
        }
    }
}

/// Turns the window sums of an output row into averages over the unpadded pixels: times the
/// element type's `1 / 9`, then times `9 / count` computed in `f32` (`factors`, per column; see
/// the module doc: the order of the candle ops this replaces).
fn scale_row<T: Elem>(sums: &mut [T], factors: &[T]) {
    let ninth = T::from_f64(1.0 / 9.0);
    for (s, &f) in sums.iter_mut().zip(factors) {
        *s = *s * ninth * f;
    }
}

/// `9 / count` in `f32`, where `count` is the number of unpadded pixels in the 3x3 window at
/// `(i, j)` of an `h x w` plane padded by 1: the factor that turns candle's divide-by-9 average
/// into the exclude-padding one. Shared with the candle-ops form (`avg_pool3x3_same_exclude_pad`
/// off the CPU), so both divide by the same count.
pub(crate) fn nine_over_count((i, h): (usize, usize), (j, w): (usize, usize)) -> f32 {
    // Unpadded pixels along one axis: 2 at either edge, else 3 (1 on a 1-wide axis).
    let count = |i: usize, n: usize| 3 - usize::from(i == 0) - usize::from(i + 1 == n);
    9.0 / (count(i, h) * count(j, w)) as f32
}

impl CustomOp1 for Pool3x3 {
    fn name(&self) -> &'static str {
        match self {
            Pool3x3::MaxStride2 => "fast-max-pool3x3-stride2",
            Pool3x3::MaxSame => "fast-max-pool3x3-same",
            Pool3x3::AvgSameExcludePad => "fast-avg-pool3x3-same",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = match *l.dims() {
            [n, c, h, w] => (n, c, h, w),
            ref d => bail!(
                "{}: expected a 4-d (n, c, h, w) input, got {d:?}",
                self.name()
            ),
        };
        if *self == Pool3x3::MaxStride2 && (h < 3 || w < 3) {
            bail!(
                "{}: a {h}x{w} plane is smaller than the window",
                self.name()
            );
        }
        let (oh, ow) = self.out_dims((h, w));
        let storage = map_unary(self.name(), (s, l), Planes { pool: *self, h, w })?;
        Ok((storage, Shape::from((n, c, oh, ow))))
    }
}
