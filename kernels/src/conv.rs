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
//! `BackwardWeight` sums over the chunks in batch order within each task (and adds any partial
//! sums of batch groups in group order), so every output is the same bits whatever the number of
//! threads or their scheduling.

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

use super::activation;
use super::direct;
use super::im2col::{col2im, im2col, im2col_channels, ConvGeom};
use super::matmul::{matmul, matmul_col_major, View};
use super::scratch::with_buffer;
use super::timers::{geom_key, time};
use super::{check_float, cpu_slice, cpu_slices, map_unary, Elem, Unary};

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

/// Runs `f` on `dy` of `s` samples (`s x O x P`) as the `O x (s P)` matrix the GEMMs read
/// (`dy` itself for one sample, else a reordered copy in a scratch buffer).
fn with_cols<T: Elem, R>(g: &ConvGeom, dy: &[T], f: impl FnOnce(&[T]) -> R) -> R {
    let (o, p) = (g.o, g.p());
    let s = dy.len() / (o * p).max(1);
    if s == 1 {
        return f(dy);
    }
    with_buffer(dy.len(), |out: &mut [T]| {
        for (sample, src) in dy.chunks_exact(o * p).enumerate() {
            for (ch, row) in src.chunks_exact(p).enumerate() {
                out[ch * s * p + sample * p..][..p].copy_from_slice(row);
            }
        }
        f(out)
    })
}

/// The inverse of [`with_cols`]' reordering, writing into `y` (`s x O x P`).
fn cols_to_samples<T: Elem>(g: &ConvGeom, m: &[T], y: &mut [T]) {
    let (o, p) = (g.o, g.p());
    let s = y.len() / (o * p).max(1);
    for (sample, dst) in y.chunks_exact_mut(o * p).enumerate() {
        for (ch, row) in dst.chunks_exact_mut(p).enumerate() {
            row.copy_from_slice(&m[ch * s * p + sample * p..][..p]);
        }
    }
}

/// `dst (cols x rows) = src (rows x cols)^T`, both row-major.
fn transpose<T: Elem>(src: &[T], (rows, cols): (usize, usize), dst: &mut [T]) {
    transpose_columns(src, (rows, cols), 0, dst);
}

/// `dst (n x rows) = src[.., c0..c0 + n]^T` for a row-major `rows x cols` `src`, with `n` from
/// `dst`'s length, in 8 x 8 blocks; the ragged edges element by element. An f32 block on a CPU
/// with AVX is eight 8-wide loads, 24 shuffles and eight stores ([`transpose_block_avx`]);
/// otherwise it is read into registers row by row and written out column by column. A copy
/// either way, so the same bits.
pub(super) fn transpose_columns<T: Elem>(
    src: &[T],
    (rows, cols): (usize, usize),
    c0: usize,
    dst: &mut [T],
) {
    const B: usize = 8;
    #[cfg(target_arch = "x86_64")]
    let avx = std::arch::is_x86_feature_detected!("avx");
    let n = dst.len() / rows.max(1);
    for r0 in (0..rows).step_by(B) {
        let rh = B.min(rows - r0);
        for j0 in (0..n).step_by(B) {
            let jw = B.min(n - j0);
            if rh < B || jw < B {
                for r in r0..r0 + rh {
                    for j in j0..j0 + jw {
                        dst[j * rows + r] = src[r * cols + c0 + j];
                    }
                }
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if avx {
                if let (Some(src), Some(dst)) = (T::f32s(src), T::f32s_mut(dst)) {
                    let (at, to) = ((r0 * cols + c0 + j0), (j0 * rows + r0));
                    // SAFETY: the CPU has AVX (checked above), and the block lies inside both
                    // slices: `r0 + 8 <= rows`, `c0 + j0 + 8 <= cols`, `j0 + 8 <= n`.
                    assert!(
                        at + (B - 1) * cols + B <= src.len()
                            && to + (B - 1) * rows + B <= dst.len()
                    );
                    unsafe { transpose_block_avx(&src[at..], cols, &mut dst[to..], rows) };
                    continue;
                }
            }
            let mut block = [[T::ZERO; B]; B];
            for (i, row) in block.iter_mut().enumerate() {
                row.copy_from_slice(&src[(r0 + i) * cols + c0 + j0..][..B]);
            }
            for j in 0..B {
                let out: &mut [T; B] = (&mut dst[(j0 + j) * rows + r0..][..B])
                    .try_into()
                    .expect("a block of B");
                for (o, row) in out.iter_mut().zip(&block) {
                    *o = row[j];
                }
            }
        }
    }
}

/// `dst[j * dst_stride + i] = src[i * src_stride + j]` for `i, j < 8`: the classic AVX 8 x 8
/// transpose (unpack pairs of rows, shuffle pairs of pairs, swap 128-bit halves).
///
/// # Safety
/// The CPU must have AVX, and both 8 x 8 blocks must lie inside their slices.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_block_avx(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    use std::arch::x86_64::{
        _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let r = |i: usize| _mm256_loadu_ps(s.add(i * src_stride));
    let (r0, r1, r2, r3, r4, r5, r6, r7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    let (u0, u1) = (
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
    );
    let (u2, u3) = (
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    );
    let (u4, u5) = (
        _mm256_shuffle_ps::<0x44>(t4, t6),
        _mm256_shuffle_ps::<0xEE>(t4, t6),
    );
    let (u6, u7) = (
        _mm256_shuffle_ps::<0x44>(t5, t7),
        _mm256_shuffle_ps::<0xEE>(t5, t7),
    );
    let columns = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (j, c) in columns.into_iter().enumerate() {
        _mm256_storeu_ps(d.add(j * dst_stride), c);
    }
}

/// A timer's key: what is timed, and the geometry ([`super::timers`]).
fn key(what: &str, g: &ConvGeom) -> String {
    format!("{what} {}", geom_key(g))
}

/// Sets every `row`-long row of `m` (rows cycling through the channels) to its channel's bias,
/// so a GEMM or col2im can accumulate onto it (no separate pass for the bias).
fn fill_bias<T: Elem>(m: &mut [T], row: usize, bias: Option<&[T]>) {
    let Some(bias) = bias else { return };
    for (i, r) in m.chunks_exact_mut(row.max(1)).enumerate() {
        r.fill(bias[i % bias.len()]);
    }
}

/// `y (N x O x OH x OW) = conv(x (N x C x H x W), w (O x C x kh x kw)) [+ bias (O)]`: directly
/// where [`direct`] serves the geometry, else im2col + GEMM; the same bits either way.
pub(crate) fn forward<T: Elem>(g: &ConvGeom, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let mut y = super::zeroed(g.n * g.out_len());
    if !y.is_empty() && !forward_direct(g, x, w, bias, &mut y) {
        forward_gemm(g, x, w, bias, &mut y);
    }
    y
}

/// [`direct::forward`] over the batch's chunks, when it serves this geometry and element type;
/// `false` (and `y` untouched) when it does not.
pub(crate) fn forward_direct<T: Elem>(
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) -> bool {
    direct::serves(g) && DirectPass::FORWARD.run(g, x, w, bias, y)
}

/// One chunk of a direct pass: geometry, the chunk's input, the laid-out weights, the bias, the
/// chunk's output.
type DirectChunk = fn(&ConvGeom, &[f32], &[f32], Option<&[f32]>, &mut [f32]);

/// A direct pass: its timer label, how it lays out the weights (once), how it runs one chunk of
/// the batch, and whether it reads the convolution's output side (`dy`) and writes its input
/// side (`dx`), or the other way round.
struct DirectPass {
    label: &'static str,
    prepare: fn(&ConvGeom, &[f32]) -> Vec<f32>,
    chunk: DirectChunk,
    backward: bool,
}

impl DirectPass {
    const FORWARD: DirectPass = DirectPass {
        label: "forward direct",
        prepare: direct::weights,
        chunk: direct::forward,
        backward: false,
    };
    const BACKWARD_DATA: DirectPass = DirectPass {
        label: "backward-data direct",
        prepare: direct::backward_data_weights,
        chunk: direct::backward_data,
        backward: true,
    };

    /// Runs over the batch's chunks in parallel, `src` to `dst`; `false` (and `dst` untouched)
    /// when `T` is not `f32`.
    fn run<T: Elem>(
        &self,
        g: &ConvGeom,
        src: &[T],
        w: &[T],
        bias: Option<&[T]>,
        dst: &mut [T],
    ) -> bool {
        let (Some(src), Some(w), Some(dst)) = (T::f32s(src), T::f32s(w), T::f32s_mut(dst)) else {
            return false;
        };
        let bias = bias.and_then(T::f32s);
        let wt = (self.prepare)(g, w);
        let (src_len, dst_len) = match self.backward {
            false => (g.in_len(), g.out_len()),
            true => (g.out_len(), g.in_len()),
        };
        let cs = chunk_samples(g);
        dst.par_chunks_mut(cs * dst_len)
            .zip(src.par_chunks(cs * src_len))
            .for_each(|(d, s)| time(|| key(self.label, g), || (self.chunk)(g, s, &wt, bias, d)));
        true
    }
}

/// The forward pass as im2col + GEMM, chunk by chunk, into `y`.
pub(crate) fn forward_gemm<T: Elem>(
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    let cs = chunk_samples(g);
    let (k, p) = (g.k(), g.p());
    y.par_chunks_mut(cs * g.out_len())
        .zip(x.par_chunks(cs * g.in_len()))
        .for_each(|(yc, xc)| {
            let s = yc.len() / g.out_len();
            let cols = s * p;
            let wv = View::rows(w, k);
            let acc = bias.is_some();
            if g.is_pointwise() && s == 1 {
                fill_bias(yc, p, bias);
                matmul((g.o, p, k), yc, acc, wv, View::rows(xc, p));
                return;
            }
            with_buffer(k * cols, |col: &mut [T]| {
                time(|| key("forward im2col", g), || im2col(g, xc, col));
                if s == 1 {
                    fill_bias(yc, p, bias);
                    time(
                        || key("forward gemm", g),
                        || matmul((g.o, cols, k), yc, acc, wv, View::rows(col, cols)),
                    );
                } else {
                    with_buffer(g.o * cols, |tmp: &mut [T]| {
                        fill_bias(tmp, cols, bias);
                        time(
                            || key("forward gemm", g),
                            || matmul((g.o, cols, k), tmp, acc, wv, View::rows(col, cols)),
                        );
                        cols_to_samples(g, tmp, yc);
                    });
                }
            });
        });
}

/// `dx (N x C x H x W)` from `dy (N x O x OH x OW)` and `w (O x C x kh x kw)` [`+ bias (C)`:
/// the transposed convolution's bias].
///
/// `w^T` is made once per pass (`K x O`, row-major): read as `w` with row stride `K`, `gemm`
/// would repack it by a strided gather in every chunk, which for the small-grid layers (a
/// transposed convolution's forward) cost as much as the product.
pub(crate) fn backward_data<T: Elem>(
    g: &ConvGeom,
    dy: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let mut dx = super::zeroed(g.n * g.in_len());
    if !dx.is_empty() && !backward_data_direct(g, dy, w, bias, &mut dx) {
        backward_data_gemm(g, dy, w, bias, &mut dx);
    }
    dx
}

/// [`direct::backward_data`] over the batch's chunks, when it serves this geometry and element
/// type; `false` (and `dx` untouched) when it does not.
pub(crate) fn backward_data_direct<T: Elem>(
    g: &ConvGeom,
    dy: &[T],
    w: &[T],
    bias: Option<&[T]>,
    dx: &mut [T],
) -> bool {
    direct::serves_backward_data(g) && DirectPass::BACKWARD_DATA.run(g, dy, w, bias, dx)
}

/// The data gradient as GEMM + col2im, chunk by chunk, into `dx` (zeros).
pub(crate) fn backward_data_gemm<T: Elem>(
    g: &ConvGeom,
    dy: &[T],
    w: &[T],
    bias: Option<&[T]>,
    dx: &mut [T],
) {
    let cs = chunk_samples(g);
    let (k, p) = (g.k(), g.p());
    with_buffer(w.len(), |w_t: &mut [T]| {
        time(
            || key("backward-data w^T", g),
            || transpose_par(w, (g.o, k), w_t),
        );
        let w_t = &*w_t;
        dx.par_chunks_mut(cs * g.in_len())
            .zip(dy.par_chunks(cs * g.out_len()))
            .for_each(|(dxc, dyc)| {
                let s = dxc.len() / g.in_len();
                let cols = s * p;
                let wt = View::rows(w_t, g.o);
                fill_bias(dxc, g.h * g.w, bias);
                with_cols(g, dyc, |dym| {
                    if g.is_pointwise() && s == 1 {
                        matmul((k, p, g.o), dxc, bias.is_some(), wt, View::rows(dym, p));
                        return;
                    }
                    with_buffer(k * cols, |dcol: &mut [T]| {
                        time(
                            || key("backward-data gemm", g),
                            || matmul((k, cols, g.o), dcol, false, wt, View::rows(dym, cols)),
                        );
                        time(|| key("backward-data col2im", g), || col2im(g, dcol, dxc));
                    });
                });
            });
    });
}

/// [`transpose`] split over blocks of `src` columns (so of `dst` rows) as parallel tasks.
fn transpose_par<T: Elem>(src: &[T], (rows, cols): (usize, usize), dst: &mut [T]) {
    const BLOCK: usize = 64;
    if rows == 0 || cols == 0 {
        return;
    }
    dst.par_chunks_mut(BLOCK * rows)
        .enumerate()
        .for_each(|(b, out)| transpose_columns(src, (rows, cols), b * BLOCK, out));
}

/// Input channels per task of [`backward_weight`]: a function of the geometry alone, about
/// [`MIN_CHUNKS`] tasks, each with enough im2col rows for an efficient GEMM.
fn channels_per_task(g: &ConvGeom) -> usize {
    let min_rows: usize = 64;
    let by_rows = min_rows.div_ceil(g.kh * g.kw);
    g.c.div_ceil(MIN_CHUNKS).max(by_rows).clamp(1, g.c.max(1))
}

/// `dw (O x C x kh x kw)` from `x (N x C x H x W)` and `dy (N x O x OH x OW)`.
///
/// The tasks split the input channels (so the rows of `dw^T`), each summing over the batch,
/// chunk after chunk in batch order, into its rows directly: no per-chunk partial products. Only
/// when the channels make fewer than `MIN_CHUNKS / 2` tasks (a first layer's 3 input channels
/// make one) is the batch also cut into groups, whose partial sums are added in group order.
/// Either way every element's sum has the same order whatever the thread count. Each
/// product is computed transposed (`K x O`, [`matmul_col_major`]) from `dy` transposed to
/// positions x channels, so `gemm` packs the small `dy` operand from unit stride instead of
/// gathering the large im2col matrix; one parallel transpose makes `dw` at the end.
///
/// Where [`direct`] serves a task's rows, its share of a chunk is computed directly, to the
/// same bits.
pub(crate) fn backward_weight<T: Elem>(g: &ConvGeom, x: &[T], dy: &[T]) -> Vec<T> {
    backward_weight_by(g, x, dy, true)
}

/// [`backward_weight`], with `direct` false always by im2col + GEMM (the tests' reference).
pub(crate) fn backward_weight_by<T: Elem>(g: &ConvGeom, x: &[T], dy: &[T], direct: bool) -> Vec<T> {
    let (k, p, khw) = (g.k(), g.p(), g.kh * g.kw);
    let mut dw = super::zeroed(g.o * k);
    if g.n == 0 || dw.is_empty() {
        return dw;
    }
    // dy as (N P) x O: element (o, q) of the O x (N P) matrix at q * O + o.
    // Scratch buffers of the calling thread: both are fully written before they are read.
    with_buffer(dy.len(), |dyt: &mut [T]| {
        dyt.par_chunks_mut(g.out_len())
            .zip(dy.par_chunks(g.out_len()))
            .for_each(|(dst, src)| {
                time(
                    || key("backward-weight dy^T", g),
                    || transpose(src, (g.o, p), dst),
                )
            });
        let dyt = &*dyt;
        let cs = chunk_samples(g);
        let cpt = channels_per_task(g);
        // Sums the products of the batch chunks `chunks` for channel task `task` into `part`
        // (overwritten by the first chunk's product: no zero fill).
        let accumulate = |part: &mut [T], task: usize, chunks: std::ops::Range<usize>| {
            let c0 = task * cpt;
            let rows = part.len() / g.o;
            let channels = c0..c0 + rows / khw;
            let pairs = x.chunks(cs * g.in_len()).zip(dyt.chunks(cs * g.out_len()));
            for (i, (xc, dytc)) in pairs.skip(chunks.start).take(chunks.len()).enumerate() {
                let cols = dytc.len() / g.o;
                let dyv = View {
                    data: dytc,
                    rs: 1,
                    cs: g.o,
                };
                let acc = i > 0;
                if g.is_pointwise() && cols == p {
                    // One sample: its own rows are its im2col matrix.
                    let xs = &xc[channels.start * p..channels.end * p];
                    let xt = View::transposed(xs, p);
                    matmul_col_major((g.o, rows, p), part, acc, dyv, xt);
                    continue;
                }
                if direct && direct::serves_backward_weight(g, rows) {
                    if let (Some(xf), Some(dyf), Some(partf)) =
                        (T::f32s(xc), T::f32s(dytc), T::f32s_mut(part))
                    {
                        time(
                            || key("backward-weight direct", g),
                            || {
                                direct::backward_weight_chunk(
                                    g,
                                    xf,
                                    channels.clone(),
                                    dyf,
                                    partf,
                                    acc,
                                )
                            },
                        );
                        continue;
                    }
                }
                with_buffer(rows * cols, |col: &mut [T]| {
                    time(
                        || key("backward-weight im2col", g),
                        || im2col_channels(g, xc, channels.clone(), col),
                    );
                    let colt = View::transposed(col, cols);
                    time(
                        || key("backward-weight gemm", g),
                        || matmul_col_major((g.o, rows, cols), part, acc, dyv, colt),
                    );
                });
            }
        };
        let task_len = cpt * khw * g.o;
        let (tasks, chunks) = (dw.len().div_ceil(task_len), g.n.div_ceil(cs));
        // With few channel tasks (a first layer's 3 input channels make one), the batch is also
        // cut into groups, each summing its chunks into a partial `dw^T` of its own; the
        // partials are then added in group order. Both splits depend on the geometry alone.
        let per_group = match tasks >= MIN_CHUNKS / 2 {
            true => chunks,
            false => chunks.div_ceil(MIN_CHUNKS.div_ceil(tasks)),
        };
        let groups = chunks.div_ceil(per_group);
        with_buffer(k * g.o, |dwt: &mut [T]| {
            if groups == 1 {
                dwt.par_chunks_mut(task_len)
                    .enumerate()
                    .for_each(|(task, part)| accumulate(part, task, 0..chunks));
            } else {
                with_buffer(groups * dwt.len(), |partials: &mut [T]| {
                    partials
                        .par_chunks_mut(dwt.len())
                        .enumerate()
                        .for_each(|(group, partial)| {
                            let range = group * per_group..((group + 1) * per_group).min(chunks);
                            for (task, part) in partial.chunks_mut(task_len).enumerate() {
                                accumulate(part, task, range.clone());
                            }
                        });
                    let mut partials = partials.chunks_exact(dwt.len());
                    dwt.copy_from_slice(partials.next().expect("at least one group"));
                    for partial in partials {
                        for (d, &v) in dwt.iter_mut().zip(partial) {
                            *d += v;
                        }
                    }
                });
            }
            time(
                || key("backward-weight dw^T", g),
                || transpose_par(dwt, (k, g.o), &mut dw),
            );
        });
    });
    dw
}

/// The bias gradient: `db (C)` = the sum of `dy (N x C x ...)` over all but the channel axis.
///
/// Each channel is one task summing in sample-then-position order, so the result does not
/// depend on the thread count. (candle's `sum_keepdim((0, 2, 3))` is an index-arithmetic loop
/// that cost as much as a convolution here.)
pub(crate) fn channel_sum<T: Elem>(dy: &[T], (n, c, plane): (usize, usize, usize)) -> Vec<T> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut total = T::ZERO;
            for sample in 0..n {
                let row = &dy[(sample * c + ch) * plane..][..plane];
                // Eight partial sums: vectorizable, and still a fixed order.
                let mut lanes = [T::ZERO; 8];
                let mut chunks = row.chunks_exact(8);
                for chunk in &mut chunks {
                    for (l, &v) in lanes.iter_mut().zip(chunk) {
                        *l += v;
                    }
                }
                for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
                    *l += v;
                }
                let mut part = T::ZERO;
                for l in lanes {
                    part += l;
                }
                total += part;
            }
            total
        })
        .collect()
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
    fn name(&self) -> &'static str {
        match self.kind {
            PassKind::Forward => "fast-conv2d-forward",
            PassKind::BackwardData => "fast-conv2d-backward-data",
            PassKind::BackwardWeight => "fast-conv2d-backward-weight",
        }
    }

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

    fn run<T: Elem>(&self, a: &[T], b: &[T], bias: Option<&[T]>) -> Vec<T> {
        let g = &self.geom;
        match self.kind {
            PassKind::Forward => forward(g, a, b, bias),
            PassKind::BackwardData => backward_data(g, a, b, bias),
            PassKind::BackwardWeight => backward_weight(g, a, b),
        }
    }

    /// Checks the operands against the geometry and runs the pass on their dtype.
    pub(crate) fn dispatch(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (a, b, out) = self.shapes();
        if l1.dims() != a || l2.dims() != b {
            bail!(
                "{name}: operands {:?} and {:?} do not match the geometry {:?}",
                l1.dims(),
                l2.dims(),
                self.geom
            );
        }
        let bias_len = match self.kind {
            PassKind::Forward => self.geom.o,
            PassKind::BackwardData => self.geom.c,
            PassKind::BackwardWeight => 0,
        };
        if let Some((_, l3)) = bias {
            if l3.dims().iter().product::<usize>() != bias_len {
                bail!(
                    "{name}: bias {:?} does not have {bias_len} elements",
                    l3.dims()
                );
            }
        }
        fn typed<T: Elem>(
            pass: &Pass,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            bias: Option<(&CpuStorage, &Layout)>,
        ) -> Result<Vec<T>> {
            let name = pass.name();
            let (a, b) = cpu_slices::<T>(name, s1, l1, s2, l2)?;
            let bias = match bias {
                Some((s3, l3)) => Some(cpu_slice::<T>(name, s3, l3)?),
                None => None,
            };
            Ok(time(
                || key(&format!("{} (pass)", pass.name()), &pass.geom),
                || pass.run(a, b, bias),
            ))
        }
        let same = |s: &CpuStorage| s.dtype() == s1.dtype();
        if !same(s2) || bias.is_some_and(|(s3, _)| !same(s3)) {
            bail!("{name}: operands of different dtypes");
        }
        check_float(name, s1)?;
        let storage = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(typed(self, (s1, l1), (s2, l2), bias)?),
            _ => CpuStorage::F64(typed(self, (s1, l1), (s2, l2), bias)?),
        };
        Ok((storage, Shape::from(out.to_vec())))
    }
}

impl CustomOp2 for Pass {
    fn name(&self) -> &'static str {
        self.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.dispatch((s1, l1), (s2, l2), None)
    }
}

/// A [`Pass`] plus a bias (`Forward`: per output channel; `BackwardData`: per input channel).
impl CustomOp3 for Pass {
    fn name(&self) -> &'static str {
        self.name()
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
        self.dispatch((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// `(N, C, ...) -> (C)`: [`channel_sum`] as a candle op without gradient.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "fast-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.dims();
        if dims.len() < 2 {
            bail!("{}: expected at least 2 dims, got {dims:?}", self.name());
        }
        struct Sum((usize, usize, usize));
        impl Unary for Sum {
            fn run<T: Elem>(&self, dy: &[T]) -> Vec<T> {
                channel_sum(dy, self.0)
            }
        }
        let nc = (dims[0], dims[1], dims[2..].iter().product());
        let storage = map_unary(self.name(), (s, l), Sum(nc))?;
        Ok((storage, Shape::from(dims[1])))
    }
}

/// `grad()` when `operand` is on the graph, else `None`: no data gradient for a data batch, no
/// weight or bias gradient for a parameter the caller froze (D's, in G's step).
pub(crate) fn grad_of(
    operand: &Tensor,
    grad: impl FnOnce() -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    operand.track_op().then(grad).transpose()
}

/// A bias's gradient, the channel sums of `dy`, when the bias is on the graph.
pub(crate) fn bias_grad(b: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
    grad_of(b, || dy.apply_op1_no_bwd(&ChannelSum))
}

/// `conv2d(x, w)` with explicit per-axis padding, differentiable in both operands, and
/// optionally a leaky ReLU (slope `>= 0`; 0 is ReLU) applied in place to the output.
///
/// With the activation fused the layer is one graph node instead of two: no second output
/// buffer forward, and backward the activation's gradient is one pass over `dy` using the
/// output's sign (which is the pre-activation's for a slope `>= 0`), with no separate gradient
/// for the pre-activation for candle's backprop to allocate and accumulate (`zeros_like` +
/// `add`, two more full passes). The values are the same bits as the two ops in sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2d {
    pub stride: usize,
    pub pad: (usize, usize),
    pub slope: Option<f64>,
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

impl Conv2d {
    fn pass(&self, kind: PassKind, x: &[usize], w: &[usize]) -> Result<Pass> {
        Ok(Pass {
            kind,
            geom: self.geom(x, w)?,
        })
    }

    /// The operation's output as computed by the pass, with the fused activation applied.
    fn activate(&self, (mut storage, shape): (CpuStorage, Shape)) -> (CpuStorage, Shape) {
        match (&mut storage, self.slope) {
            (CpuStorage::F32(y), Some(slope)) => activation::forward_in_place(y, slope as f32),
            (CpuStorage::F64(y), Some(slope)) => activation::forward_in_place(y, slope),
            _ => {}
        }
        (storage, shape)
    }

    /// The gradient at the convolution's output: `dy` through the fused activation, if any,
    /// read off the sign of the layer's output `y`.
    fn pre_activation_grad(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let dy = dy.contiguous()?;
        match self.slope {
            Some(slope) => y.apply_op2_no_bwd(&dy, &activation::LeakyReluGrad { slope }),
            None => Ok(dy),
        }
    }

    /// `(dx, dw)`, each one pass, each only for an operand on the graph ([`grad_of`]).
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let pass = |kind| self.pass(kind, x.dims(), w.dims());
        Ok((
            grad_of(x, || dy.apply_op2_no_bwd(w, &pass(PassKind::BackwardData)?))?,
            grad_of(w, || {
                x.apply_op2_no_bwd(dy, &pass(PassKind::BackwardWeight)?)
            })?,
        ))
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
        let pass = self.pass(PassKind::Forward, l1.dims(), l2.dims())?;
        Ok(self.activate(pass.dispatch((s1, l1), (s2, l2), None)?))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, &self.pre_activation_grad(y, dy)?)
    }
}

/// `conv2d(x, w) + b` with the bias added inside the kernel and its gradient one pass.
impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "fast-conv2d-bias"
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
        let pass = self.pass(PassKind::Forward, l1.dims(), l2.dims())?;
        Ok(self.activate(pass.dispatch((s1, l1), (s2, l2), Some((s3, l3)))?))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = self.pre_activation_grad(y, dy)?;
        let (dx, dw) = self.grads(x, w, &dy)?;
        Ok((dx, dw, bias_grad(b, &dy)?))
    }
}
