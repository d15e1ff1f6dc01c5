//! Convolution geometry and the two data movements every conv kernel is built from: `im2col`
//! (input patches as the columns of a matrix) and its adjoint `col2im` (scatter-add the columns
//! back onto the input grid).
//!
//! The column matrix of a chunk of `s` samples is `K x (s * P)` with `K = C * kh * kw` rows in
//! the order of a `(O, C, kh, kw)` weight's last three axes and `P = OH * OW` output positions
//! per sample, samples side by side. Padding is explicit per axis (`ph`, `pw`), so Inception's
//! 1x7 / 7x1 kernels need no padded copy of their input.
//!
//! `col2im` adds the rows in a fixed order (channel, then kernel row, then kernel column), so the
//! sum each input element receives never depends on scheduling.

use candle_core::{bail, Result};

use super::scratch::with_buffer;
use super::Elem;

/// The shape of one 2-D convolution (groups 1, dilation 1): `n` samples of `c x h x w` in,
/// `o x oh x ow` out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub ph: usize,
    pub pw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    /// The geometry of convolving `x: (n, c, h, w)` with a `(o, c, kh, kw)` weight.
    pub fn new(
        (n, c, h, w): (usize, usize, usize, usize),
        (o, kh, kw): (usize, usize, usize),
        stride: usize,
        (ph, pw): (usize, usize),
    ) -> Result<Self> {
        if stride == 0 || kh == 0 || kw == 0 {
            bail!(
                "conv: stride and kernel size must be positive (stride {stride}, kernel {kh}x{kw})"
            );
        }
        if h + 2 * ph < kh || w + 2 * pw < kw {
            bail!("conv: kernel {kh}x{kw} is larger than the padded input {h}x{w} (padding {ph}, {pw})");
        }
        Ok(ConvGeom {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            ph,
            pw,
            oh: (h + 2 * ph - kh) / stride + 1,
            ow: (w + 2 * pw - kw) / stride + 1,
        })
    }

    /// Rows of the column matrix: the reduction length of the forward product.
    pub fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions per sample.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Input elements per sample.
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Output elements per sample.
    pub fn out_len(&self) -> usize {
        self.o * self.p()
    }

    /// 1x1, stride 1, no padding: the column matrix of one sample is the sample itself.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.ph == 0 && self.pw == 0
    }

    /// Height and width of an input plane with its padding: `(h + 2 ph, w + 2 pw)`.
    pub fn padded(&self) -> (usize, usize) {
        (self.h + 2 * self.ph, self.w + 2 * self.pw)
    }

    /// Copies the input plane `src` (`h x w`) into the interior of `padded` (a plane of
    /// [`ConvGeom::padded`] size), leaving its border as it is: zeroed once, a border stays zero
    /// for every plane copied in after, so a tap reads padding without a branch.
    pub fn pad_plane<T: Elem>(&self, src: &[T], padded: &mut [T]) {
        let wp = self.padded().1;
        for (iy, row) in src.chunks_exact(self.w).enumerate() {
            copy_run(&mut padded[(iy + self.ph) * wp + self.pw..][..self.w], row);
        }
    }
}

/// The output positions `[lo, hi)` along one axis whose input index `o * stride + kk - pad`
/// falls inside `[0, size)`.
fn valid_range(out: usize, size: usize, stride: usize, kk: usize, pad: usize) -> (usize, usize) {
    let lo = if pad > kk {
        (pad - kk).div_ceil(stride)
    } else {
        0
    };
    let hi = if size + pad > kk {
        ((size - 1 + pad - kk) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Fills `col` (`K x (s * P)`) with the patches of the `s` samples in `x` (`s x C x H x W`).
pub(crate) fn im2col<T: Elem>(g: &ConvGeom, x: &[T], col: &mut [T]) {
    im2col_channels(g, x, 0..g.c, col);
}

/// [`im2col`] restricted to the input channels `channels`: the rows of those channels only
/// (`channels.len() * kh * kw` of them), in the same order.
pub(crate) fn im2col_channels<T: Elem>(
    g: &ConvGeom,
    x: &[T],
    channels: std::ops::Range<usize>,
    col: &mut [T],
) {
    debug_assert_eq!(
        col.len(),
        channels.len() * g.kh * g.kw * (x.len() / g.in_len().max(1)) * g.p()
    );
    if g.ow <= GATHER_MAX_OW {
        im2col_gather(g, x, channels, col);
    } else if g.stride == 1 {
        im2col_unit_stride(g, x, channels, col);
    } else {
        im2col_strided(g, x, channels, col);
    }
}

/// The widest output [`im2col_gather`] serves: up to 8 a row of the column matrix is made of
/// runs too short for block copies to pay for their bookkeeping (per-op timers on the
/// discriminator's layers: 4 wide, 2.5x faster; 8 wide with stride 2, 1.5x; 8 wide with stride
/// 1, even; 16 wide, 1.3-1.7x slower).
const GATHER_MAX_OW: usize = 8;

/// Any stride, for narrow outputs (the last layers of a discriminator, 4 and 8 wide): each
/// input plane is copied once into a zero-bordered plane, and every entry of its `kh * kw`
/// rows is then read at an offset computed once per call, so padding needs no branch and a
/// row of the column matrix is one tight loop over `P` entries. Per-row run copies spent most
/// of their time on the bookkeeping of 4-element runs. The same matrix as the direct gather.
fn im2col_gather<T: Elem>(g: &ConvGeom, x: &[T], channels: std::ops::Range<usize>, col: &mut [T]) {
    let n = x.len() / g.in_len().max(1);
    let (p, cols, plane, khw) = (g.p(), n * g.p(), g.h * g.w, g.kh * g.kw);
    let (padded_h, padded_w) = g.padded();
    // Offsets into the padded plane, tap after tap, output position after position; every
    // one is inside it, since an output exists only where its patch fits the padded input.
    let mut offsets = Vec::with_capacity(khw * p);
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    offsets.push((oy * g.stride + ki) * padded_w + ox * g.stride + kj);
                }
            }
        }
    }
    let c0 = channels.start;
    with_buffer(padded_h * padded_w, |padded: &mut [T]| {
        // The border stays zero; each plane rewrites only the interior.
        padded.fill(T::ZERO);
        for c in channels {
            let rows = (c - c0) * khw;
            for sample in 0..n {
                g.pad_plane(&x[(sample * g.c + c) * plane..][..plane], padded);
                for (tap, taps) in offsets.chunks_exact(p).enumerate() {
                    let dst = &mut col[(rows + tap) * cols + sample * p..][..p];
                    for (d, &at) in dst.iter_mut().zip(taps) {
                        *d = padded[at];
                    }
                }
            }
        }
    });
}

/// Stride 1: every kernel tap reads a contiguous run of an input row.
fn im2col_unit_stride<T: Elem>(
    g: &ConvGeom,
    x: &[T],
    channels: std::ops::Range<usize>,
    col: &mut [T],
) {
    let s = x.len() / g.in_len().max(1);
    let (p, cols, plane) = (g.p(), s * g.p(), g.h * g.w);
    let zero = T::ZERO;
    let c0 = channels.start;
    for c in channels {
        for ki in 0..g.kh {
            let (y_lo, y_hi) = valid_range(g.oh, g.h, 1, ki, g.ph);
            for kj in 0..g.kw {
                let (x_lo, x_hi) = valid_range(g.ow, g.w, 1, kj, g.pw);
                let row = ((c - c0) * g.kh + ki) * g.kw + kj;
                let dst_row = &mut col[row * cols..(row + 1) * cols];
                for (sample, dst) in dst_row.chunks_exact_mut(p).enumerate() {
                    let src = &x[(sample * g.c + c) * plane..][..plane];
                    for (oy, d) in dst.chunks_exact_mut(g.ow).enumerate() {
                        if oy < y_lo || oy >= y_hi || x_lo == x_hi {
                            d.fill(zero);
                            continue;
                        }
                        let iy = oy + ki - g.ph;
                        let src_row = &src[iy * g.w..(iy + 1) * g.w];
                        d[..x_lo].fill(zero);
                        d[x_hi..].fill(zero);
                        let ix0 = x_lo + kj - g.pw;
                        let d = &mut d[x_lo..x_hi];
                        copy_run(d, &src_row[ix0..ix0 + d.len()]);
                    }
                }
            }
        }
    }
}

/// Stride `s > 1`: tap `kj` of output column `ox` reads padded input column `s * ox + kj`, so
/// after splitting a zero-padded input row into its `s` phases (columns `≡ 0, 1, .. mod s`),
/// every tap is a contiguous run of one phase (`kj mod s`, from `kj / s`). One strided gather
/// per input row then serves all `kw` taps with plain copies, where gathering each tap's
/// elements one by one was most of the time of a stride-2 layer's im2col. Pure data movement:
/// the same matrix as the direct gather.
fn im2col_strided<T: Elem>(g: &ConvGeom, x: &[T], channels: std::ops::Range<usize>, col: &mut [T]) {
    let n = x.len() / g.in_len().max(1);
    let (p, cols, plane, st) = (g.p(), n * g.p(), g.h * g.w, g.stride);
    // Each phase holds the columns a tap can reach: `ow - 1 + ceil(kw / s)` of them.
    let phase_len = g.ow - 1 + g.kw.div_ceil(st);
    let padded_w = st * phase_len;
    // padded[j] = input column j - pw: the row fills lead..lead + take, the rest stays 0.
    let lead = g.pw.min(padded_w);
    let take = g.w.min(padded_w - lead);
    let c0 = channels.start;
    with_buffer(2 * padded_w, |buf: &mut [T]| {
        let (padded, phases) = buf.split_at_mut(padded_w);
        padded.fill(T::ZERO);
        for c in channels {
            for ki in 0..g.kh {
                let (y_lo, y_hi) = valid_range(g.oh, g.h, st, ki, g.ph);
                let rows = ((c - c0) * g.kh + ki) * g.kw;
                for sample in 0..n {
                    let src = &x[(sample * g.c + c) * plane..][..plane];
                    for oy in 0..g.oh {
                        let at = sample * p + oy * g.ow;
                        if oy < y_lo || oy >= y_hi {
                            for kj in 0..g.kw {
                                col[(rows + kj) * cols + at..][..g.ow].fill(T::ZERO);
                            }
                            continue;
                        }
                        let iy = oy * st + ki - g.ph;
                        copy_run(&mut padded[lead..lead + take], &src[iy * g.w..][..take]);
                        split_phases(padded, phases, st);
                        for kj in 0..g.kw {
                            let phase = &phases[(kj % st) * phase_len..][..phase_len];
                            copy_run(
                                &mut col[(rows + kj) * cols + at..][..g.ow],
                                &phase[kj / st..kj / st + g.ow],
                            );
                        }
                    }
                }
            }
        }
    });
}

/// `phases[ph * len + i] = padded[i * st + ph]` (`padded` is `st * len` long): stride 2, the
/// common case, as pairs, which vectorizes; other strides element by element.
#[inline(always)]
fn split_phases<T: Elem>(padded: &[T], phases: &mut [T], st: usize) {
    let len = padded.len() / st;
    if st == 2 {
        let (even, odd) = phases.split_at_mut(len);
        for ((e, o), pair) in even.iter_mut().zip(odd).zip(padded.chunks_exact(2)) {
            *e = pair[0];
            *o = pair[1];
        }
        return;
    }
    for (ph, phase) in phases.chunks_exact_mut(len).enumerate() {
        for (d, &v) in phase.iter_mut().zip(padded[ph..].iter().step_by(st)) {
            *d = v;
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of an image row (4 to 32 elements here):
/// copied in blocks of 8 that compile to vector moves, where `copy_from_slice` calls `memmove`
/// for each run, and those calls cost more than the copying. A run that is not a multiple of 8
/// ends with one more block, or a pair of 4-blocks, that overlaps what was copied already (it
/// writes the same values again), not with an element-by-element tail.
#[inline(always)]
fn copy_run<T: Elem>(dst: &mut [T], src: &[T]) {
    debug_assert_eq!(dst.len(), src.len());
    let n = dst.len().min(src.len());
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
            i += 8;
        }
        if i < n {
            dst[n - 8..n].copy_from_slice(&src[n - 8..n]);
        }
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..n].copy_from_slice(&src[n - 4..n]);
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    }
}

/// Adds the columns of `col` (`K x (s * P)`) back onto `x` (`s x C x H x W`): the adjoint of
/// [`im2col`]. `x` is accumulated into, not overwritten.
pub(crate) fn col2im<T: Elem>(g: &ConvGeom, col: &[T], x: &mut [T]) {
    let s = x.len() / g.in_len().max(1);
    let (p, cols, plane) = (g.p(), s * g.p(), g.h * g.w);
    debug_assert_eq!(col.len(), g.k() * cols);
    for c in 0..g.c {
        for ki in 0..g.kh {
            let (y_lo, y_hi) = valid_range(g.oh, g.h, g.stride, ki, g.ph);
            for kj in 0..g.kw {
                let (x_lo, x_hi) = valid_range(g.ow, g.w, g.stride, kj, g.pw);
                if x_lo == x_hi || y_lo == y_hi {
                    continue;
                }
                let row = (c * g.kh + ki) * g.kw + kj;
                let src_row = &col[row * cols..(row + 1) * cols];
                for (sample, src) in src_row.chunks_exact(p).enumerate() {
                    let dst = &mut x[(sample * g.c + c) * plane..][..plane];
                    for oy in y_lo..y_hi {
                        let iy = oy * g.stride + ki - g.ph;
                        let dst_row = &mut dst[iy * g.w..(iy + 1) * g.w];
                        let s_row = &src[oy * g.ow + x_lo..oy * g.ow + x_hi];
                        let ix0 = x_lo * g.stride + kj - g.pw;
                        if g.stride == 1 {
                            for (d, &v) in dst_row[ix0..ix0 + s_row.len()].iter_mut().zip(s_row) {
                                *d += v;
                            }
                        } else {
                            let dst = dst_row[ix0..].iter_mut().step_by(g.stride);
                            for (d, &v) in dst.zip(s_row) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }
}
