//! The three passes of narrow convolutions computed directly, without a column matrix, on CPUs
//! with AVX-512: the same sums in the same order as the im2col, `gemm` and col2im path of
//! [`super::conv`], so the same bits.
//!
//! Why: for the narrow networks the extended profile trains (D widths 4 to 64, G 16), writing
//! the column matrix to memory, `gemm` packing it again, and col2im scattering it back cost as
//! much as the products (per-op timers, D 16 at one thread: im2col and GEMM about equal in the
//! forward; col2im half of the data gradient). Both passes here keep one operand's channels in
//! vector registers and broadcast the other's values, `R` positions sharing each weight load:
//! - [`forward`]: a position's output channels are the lanes; for each row `k` of the would-be
//!   column matrix (input channel, kernel row, kernel column, in that order) the sixteen
//!   channels' weights are one load and the input value one broadcast. Input planes are first
//!   copied into zero-bordered planes, so a padded tap needs no branch and is multiplied by zero
//!   exactly as the column matrix's zero is.
//! - [`backward_data`]: an input position's channels are the lanes, summed channel-last and
//!   transposed back once per sample; for each kernel tap in order, the sum over output channels
//!   of weight vector times broadcast `dy` value, as [`super::conv`]'s GEMM makes each column
//!   entry, then added as col2im adds it.
//! - [`backward_weight_chunk`]: a weight row's output channels are the lanes; for each output
//!   position of a chunk in order, `dy`'s channels are one load and each tap's input value one
//!   broadcast, with `gemm`'s blocks of 512 positions flushed into the gradient as it adds them.
//!
//! Bit-identity with the GEMM path (tested on the models' geometries, and by hashing the outputs
//! of training runs): `gemm` sums each element over its reduction axis in order, one fused
//! multiply-add per step into an accumulator that starts at zero, one block of `kc` steps at a
//! time, and adds each block to the output (to the bias, when there is one). Its `kc` is the
//! whole axis up to 512 (`gemm-common`'s `kernel_params` never picks a smaller block), so the
//! forward and data passes serve reductions of at most 512 and do the same: one accumulator
//! from zero, one FMA per step in order, then one add. The weight pass reduces over a chunk's
//! positions (2,048 and more); it serves only products of at most 64 x 64, for which `gemm`
//! takes `kc = min(k, 512)` without consulting the cache sizes, and flushes at the same blocks.
//!
//! They run only where `gemm` would run its AVX-512 kernel (the FMA is the same instruction
//! either way); elsewhere, for f64, and for the shapes they do not serve or were measured slower
//! on ([`serves`], [`serves_backward_data`], [`serves_backward_weight`]), the GEMM path runs.

use super::im2col::ConvGeom;

/// The largest reduction served: `gemm`'s smallest automatic `kc` (see the module doc).
const MAX_K: usize = 512;
/// Output channels per vector register.
const LANES: usize = 16;
/// The input channels [`backward_data`] serves: from half a register to two (per-pass timers,
/// D 16 at one thread: 3 channels 3x slower than GEMM + col2im, 16 and 32 channels 1.1-1.7x
/// faster, 64 channels up to 1.3x slower).
const DATA_CHANNELS: std::ops::RangeInclusive<usize> = 8..=32;

/// The blocking of one geometry: `nb` registers of output channels, `r` positions per block
/// (a divisor of the output width, so a block never leaves its output row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Blocking {
    nb: usize,
    r: usize,
}

impl Blocking {
    /// At most 16 accumulators; positions first (each shares the weight loads).
    fn of(g: &ConvGeom) -> Option<Self> {
        let nb = g.o.div_ceil(LANES);
        let max_r = match nb {
            1 => 16,
            2 => 8,
            3 | 4 => 4,
            _ => return None,
        };
        let r = [16, 8, 4]
            .into_iter()
            .find(|&r| r <= max_r && g.ow.is_multiple_of(r))?;
        Some(Blocking { nb, r })
    }
}

/// Whether [`forward`] computes this geometry (on this CPU). Besides `K <= 512`: products
/// that `gemm` sends to its other kernels, whose sums differ, stay with it (a reduction of at
/// most 2 rows, one output channel, one output position).
pub(crate) fn serves(g: &ConvGeom) -> bool {
    (3..=MAX_K).contains(&g.k())
        && g.o >= 2
        && g.p() >= 2
        && (g.stride == 1 || g.stride == 2)
        && !g.is_pointwise()
        && Blocking::of(g).is_some()
        && avx512()
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> bool {
    false
}

/// The weights as the kernel reads them: row `k` holds the `nb * 16` output channels' weights
/// of column-matrix row `k` (zero beyond `O`).
pub(crate) fn weights(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (k, o) = (g.k(), g.o);
    let width = o.div_ceil(LANES) * LANES;
    let mut wt = vec![0.0; k * width];
    for (ch, row) in w.chunks_exact(k).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            wt[i * width + ch] = v;
        }
    }
    wt
}

/// `y (s x O x OH x OW) = conv(x (s x C x H x W), w) [+ bias]` for the samples of `x`, with `wt`
/// from [`weights`]. Only for a geometry [`serves`] accepts.
pub(crate) fn forward(g: &ConvGeom, x: &[f32], wt: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let blocking = Blocking::of(g).expect("serves() checked the geometry");
    let (hp, wp) = g.padded();
    let plane = hp * wp;
    // The column-matrix rows' offsets into the padded planes, in row order.
    let mut taps = Vec::with_capacity(g.k());
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                taps.push(c * plane + ki * wp + kj);
            }
        }
    }
    super::scratch::with_buffer(g.c * plane, |padded: &mut [f32]| {
        padded.fill(0.0);
        for (xs, ys) in x
            .chunks_exact(g.in_len())
            .zip(y.chunks_exact_mut(g.out_len()))
        {
            for (src, dst) in xs
                .chunks_exact(g.h * g.w)
                .zip(padded.chunks_exact_mut(plane))
            {
                g.pad_plane(src, dst);
            }
            sample(g, blocking, padded, &taps, wt, bias, ys);
        }
    });
}

/// One sample: every block of `r` positions of every output row.
fn sample(
    g: &ConvGeom,
    b: Blocking,
    padded: &[f32],
    taps: &[usize],
    wt: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    // The last element any block reads, so that the kernel's unchecked loads are in bounds.
    let last_tap = taps.last().copied().unwrap_or(0);
    let wp = g.padded().1;
    let last_base = (g.oh - 1) * g.stride * wp + (g.ow - 1) * g.stride;
    assert!(
        last_tap + last_base < padded.len(),
        "direct conv: taps leave the planes"
    );
    assert_eq!(
        wt.len(),
        taps.len() * b.nb * LANES,
        "direct conv: weight rows"
    );
    let p = g.p();
    let mut acc = [0.0f32; 16 * LANES];
    for oy in 0..g.oh {
        for ox0 in (0..g.ow).step_by(b.r) {
            let base = oy * g.stride * wp + ox0 * g.stride;
            // SAFETY: `serves` checked AVX-512; every load is at `base + tap + i * stride` for
            // `i < r`, at most `last_base + last_tap` (asserted above), and the weight loads
            // stay within `wt` (asserted above); `acc` holds `r * nb * 16 <= 256` values.
            unsafe {
                block(
                    g.stride,
                    b,
                    padded[base..].as_ptr(),
                    taps,
                    wt.as_ptr(),
                    &mut acc,
                )
            };
            let width = b.nb * LANES;
            for o in 0..g.o {
                let out = &mut y[o * p + oy * g.ow + ox0..][..b.r];
                for (i, v) in out.iter_mut().enumerate() {
                    let sum = acc[i * width + o];
                    *v = match bias {
                        Some(bias) => bias[o] + sum,
                        None => sum,
                    };
                }
            }
        }
    }
}

/// Dispatches one block to the kernel compiled for its stride and blocking.
///
/// # Safety
/// AVX-512F is available; `x` and `wt` are valid for the loads [`kernel`] makes.
#[cfg(target_arch = "x86_64")]
unsafe fn block(
    stride: usize,
    b: Blocking,
    x: *const f32,
    taps: &[usize],
    wt: *const f32,
    acc: &mut [f32; 16 * LANES],
) {
    match (stride, b.nb, b.r) {
        (1, 1, 16) => kernel::<1, 16, 1>(x, taps, wt, acc),
        (1, 1, 8) => kernel::<1, 8, 1>(x, taps, wt, acc),
        (1, 1, 4) => kernel::<1, 4, 1>(x, taps, wt, acc),
        (1, 2, 8) => kernel::<1, 8, 2>(x, taps, wt, acc),
        (1, 2, 4) => kernel::<1, 4, 2>(x, taps, wt, acc),
        (1, 3, 4) => kernel::<1, 4, 3>(x, taps, wt, acc),
        (1, 4, 4) => kernel::<1, 4, 4>(x, taps, wt, acc),
        (2, 1, 16) => kernel::<2, 16, 1>(x, taps, wt, acc),
        (2, 1, 8) => kernel::<2, 8, 1>(x, taps, wt, acc),
        (2, 1, 4) => kernel::<2, 4, 1>(x, taps, wt, acc),
        (2, 2, 8) => kernel::<2, 8, 2>(x, taps, wt, acc),
        (2, 2, 4) => kernel::<2, 4, 2>(x, taps, wt, acc),
        (2, 3, 4) => kernel::<2, 4, 3>(x, taps, wt, acc),
        (2, 4, 4) => kernel::<2, 4, 4>(x, taps, wt, acc),
        other => unreachable!("no direct kernel for (stride, nb, r) = {other:?}"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block(
    _: usize,
    _: Blocking,
    _: *const f32,
    _: &[usize],
    _: *const f32,
    _: &mut [f32; 16 * LANES],
) {
    unreachable!("serves() is false off x86-64")
}

/// `R` positions (input `x + i * ST` for position `i`, plus each tap) times `NB * 16` output
/// channels: for each tap in order, one weight load per register and one broadcast per position,
/// each accumulator one FMA; the sums land in `acc` position-major (`NB * 16` per position).
///
/// # Safety
/// AVX-512F is available; `x + tap + i * ST` is readable for every tap and `i < R`, and `wt`
/// holds `taps.len() * NB * 16` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const ST: usize, const R: usize, const NB: usize>(
    x: *const f32,
    taps: &[usize],
    wt: *const f32,
    acc: &mut [f32; 16 * LANES],
) {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps};
    use std::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};
    let mut sums = [[_mm512_setzero_ps(); NB]; R];
    for (k, &tap) in taps.iter().enumerate() {
        let row = x.add(tap);
        let w = wt.add(k * NB * LANES);
        let mut wv = [_mm512_setzero_ps(); NB];
        for (j, v) in wv.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(w.add(j * LANES));
        }
        for (i, s) in sums.iter_mut().enumerate() {
            let xb = _mm512_set1_ps(*row.add(i * ST));
            for (j, s) in s.iter_mut().enumerate() {
                *s = _mm512_fmadd_ps(wv[j], xb, *s);
            }
        }
    }
    for (i, s) in sums.iter().enumerate() {
        for (j, v) in s.iter().enumerate() {
            _mm512_storeu_ps(acc.as_mut_ptr().add((i * NB + j) * LANES), *v);
        }
    }
}

/// Whether [`backward_data`] computes this geometry (on this CPU): the reduction is over the
/// `O` output channels, at most 512 and (as for [`serves`]) at least 3, and one output position
/// would be a matrix-vector product, which `gemm` sums otherwise.
pub(crate) fn serves_backward_data(g: &ConvGeom) -> bool {
    (3..=MAX_K).contains(&g.o)
        && g.p() >= 2
        && DATA_CHANNELS.contains(&g.c)
        && (g.stride == 1 || g.stride == 2)
        && !g.is_pointwise()
        && avx512()
}

/// The weights as [`backward_data`] reads them: for each kernel tap `(ki, kj)`, for each output
/// channel `o`, the input channels' weights in `ceil(C / 16) * 16` lanes (zero beyond `C`).
pub(crate) fn backward_data_weights(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (khw, width) = (g.kh * g.kw, g.c.div_ceil(LANES) * LANES);
    let mut wt = vec![0.0; khw * g.o * width];
    for (o, filters) in w.chunks_exact(g.c * khw).enumerate() {
        for (c, taps) in filters.chunks_exact(khw).enumerate() {
            for (tap, &v) in taps.iter().enumerate() {
                wt[(tap * g.o + o) * width + c] = v;
            }
        }
    }
    wt
}

/// `dx (s x C x H x W) = conv^T(dy (s x O x OH x OW), w) [+ bias (C)]` (the transposed
/// convolution's bias), `wt` from [`backward_data_weights`]; every element of `dx` is written.
/// Only for a geometry [`serves_backward_data`] accepts.
///
/// The same bits as GEMM + col2im: there each column-matrix entry is `sum_o w[o][k] dy[o][pos]`
/// in `o` order from zero (`gemm`'s `kc` is `O`, at most 512), and col2im adds the entries an
/// input element receives in kernel-row, then kernel-column order. Here each element's taps are
/// visited in that order, each tap's sum made in its own accumulator from zero, then added.
///
/// A block is `R` input columns of one row and one stride phase (`phase + st * m`), which every
/// tap of the phase maps to `R` consecutive output columns. Near the edges a tap reaches only
/// some of a block's columns: the kernel computes its sum for all of them (reading zeros from
/// the padded copy of `dy`'s rows) and adds it only where it reaches, as col2im adds nothing
/// there.
pub(crate) fn backward_data(
    g: &ConvGeom,
    dy: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    dx: &mut [f32],
) {
    let nb = g.c.div_ceil(LANES);
    let width = nb * LANES;
    let (st, r) = (g.stride, block_positions(nb));
    let plane = g.h * g.w;
    // dy's rows with `pad` zero columns on each side: every block's reads stay inside.
    let pad = g.kw + r;
    let row = g.ow + 2 * pad;
    let padded_plane = g.oh * row;
    // (ki, kj, oy, first output column reached from the phase's column 0) of one input row and
    // phase, in tap order; then (weight offset, dy offset, positions reached) of one block.
    let mut row_taps: Vec<(usize, usize, usize, isize)> = Vec::with_capacity(g.kh * g.kw);
    let mut taps: Vec<(usize, usize, u32)> = Vec::with_capacity(g.kh * g.kw);
    // One sample's dx channel-last (`width` lanes a position), so that a block's sums are
    // vector loads and stores; plus room past the end for a last block's unstored positions.
    let sums_len = (plane + r * st) * width;
    // Where every element's sum starts: col2im adds onto zeros, or onto the bias.
    let mut start = vec![0.0; width];
    if let Some(bias) = bias {
        start[..g.c].copy_from_slice(bias);
    }
    super::scratch::with_buffer(g.o * padded_plane + sums_len, |buf: &mut [f32]| {
        let (dyp, sums) = buf.split_at_mut(g.o * padded_plane);
        dyp.fill(0.0);
        sums.fill(0.0);
        for (dys, dxs) in dy
            .chunks_exact(g.out_len())
            .zip(dx.chunks_exact_mut(g.in_len()))
        {
            for (src, dst) in dys.chunks_exact(g.ow).zip(dyp.chunks_exact_mut(row)) {
                dst[pad..pad + g.ow].copy_from_slice(src);
            }
            for position in sums[..plane * width].chunks_exact_mut(width) {
                position.copy_from_slice(&start);
            }
            for iy in 0..g.h {
                for phase in 0..st.min(g.w) {
                    row_taps.clear();
                    for ki in 0..g.kh {
                        let Some(oy) = source(iy, ki, g.ph, st, g.oh) else {
                            continue;
                        };
                        for kj in 0..g.kw {
                            if let Some(first) = shifted(phase, kj, g.pw, st) {
                                row_taps.push((ki, kj, oy, first));
                            }
                        }
                    }
                    if row_taps.is_empty() {
                        continue;
                    }
                    let count = (g.w - phase).div_ceil(st);
                    for m in (0..count).step_by(r) {
                        let live = r.min(count - m) as isize;
                        taps.clear();
                        for &(ki, kj, oy, first) in &row_taps {
                            // Positions `i` in `[lo, hi)` reach output columns `[0, OW)`.
                            let start = first + m as isize;
                            let lo = (-start).clamp(0, live);
                            let hi = (g.ow as isize - start).clamp(0, live);
                            if lo < hi {
                                let reached = (1u32 << hi) - (1u32 << lo);
                                let w_off = (ki * g.kw + kj) * g.o * width;
                                let d_off = oy * row + (pad as isize + start) as usize;
                                taps.push((w_off, d_off, reached));
                            }
                        }
                        if taps.is_empty() {
                            continue;
                        }
                        let at = (iy * g.w + phase + st * m) * width;
                        for &(w_off, d_off, _) in &taps {
                            assert!(w_off + g.o * width <= wt.len(), "direct conv: weights");
                            assert!(d_off % row + r <= row, "direct conv: dy rows");
                        }
                        assert!(at + ((r - 1) * st + 1) * width <= sums.len());
                        // SAFETY: AVX-512 was checked by `serves_backward_data`; the asserts
                        // bound every access: weights below `w_off + O * width`; dy at
                        // `d_off + oc * padded_plane + i` for `oc < O`, `i < R`, inside row
                        // `d_off / row` of plane `oc` (`dyp` holds `O` planes); sums at
                        // `at + i * st * width + j`, `j < width`.
                        unsafe {
                            data_block(
                                (nb, r, st),
                                &taps,
                                (g.o, padded_plane),
                                wt.as_ptr(),
                                dyp.as_ptr(),
                                sums[at..].as_mut_ptr(),
                            )
                        };
                    }
                }
            }
            super::conv::transpose_columns(&sums[..plane * width], (plane, width), 0, dxs);
        }
    });
}

/// Positions per block of [`backward_data`] for `nb` registers of input channels: a sum and a
/// tap accumulator per position and register, 16 of the 32 registers.
fn block_positions(nb: usize) -> usize {
    match nb {
        1 => 8,
        _ => 4,
    }
}

/// The output index `o` with `o * st + k - pad = i`, if there is one in `[0, out)`.
fn source(i: usize, k: usize, pad: usize, st: usize, out: usize) -> Option<usize> {
    let num = (i + pad).checked_sub(k)?;
    (num.is_multiple_of(st) && num / st < out).then_some(num / st)
}

/// The output column tap `kj` reaches from input column `phase` (possibly negative: the first
/// columns of the phase reach none), if the phase and tap agree modulo the stride.
fn shifted(phase: usize, kj: usize, pad: usize, st: usize) -> Option<isize> {
    let num = (phase + pad) as isize - kj as isize;
    (num.rem_euclid(st as isize) == 0).then_some(num.div_euclid(st as isize))
}

/// Dispatches one block to the backward-data kernel compiled for its shape.
///
/// # Safety
/// As [`data_kernel`].
#[cfg(target_arch = "x86_64")]
unsafe fn data_block(
    (nb, r, st): (usize, usize, usize),
    taps: &[(usize, usize, u32)],
    op: (usize, usize),
    wt: *const f32,
    dy: *const f32,
    sums: *mut f32,
) {
    let step = st * nb * LANES;
    match (nb, r) {
        (1, 8) => data_kernel::<8, 1>(taps, op, wt, dy, (sums, step)),
        (2, 4) => data_kernel::<4, 2>(taps, op, wt, dy, (sums, step)),
        other => unreachable!("no backward-data kernel for (nb, r) = {other:?}"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn data_block(
    _: (usize, usize, usize),
    _: &[(usize, usize, u32)],
    _: (usize, usize),
    _: *const f32,
    _: *const f32,
    _: *mut f32,
) {
    unreachable!("serves_backward_data() is false off x86-64")
}

/// `R` input positions times `NB * 16` input channels, position `i`'s sums at
/// `sums + i * step`: for each tap in order, `sum_o w[tap][o] * dy[o][d_off + i]` in its own
/// accumulator from zero, one FMA per output channel, then added to the sums of each position
/// `i` the tap reaches (bit `i` of its mask).
///
/// # Safety
/// AVX-512F is available; for every tap, `wt + w_off` holds `O * NB * 16` values and
/// `dy + d_off + oc * plane + i` is readable for `oc < O`, `i < R`; `sums + i * step + j` is
/// writable for `i < R`, `j < NB * 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn data_kernel<const R: usize, const NB: usize>(
    taps: &[(usize, usize, u32)],
    (o, plane): (usize, usize),
    wt: *const f32,
    dy: *const f32,
    (out, step): (*mut f32, usize),
) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps};
    use std::arch::x86_64::{_mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    let mut sums = [[_mm512_setzero_ps(); NB]; R];
    for (i, s) in sums.iter_mut().enumerate() {
        for (j, v) in s.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(out.add(i * step + j * LANES));
        }
    }
    for &(w_off, d_off, reached) in taps {
        let mut t = [[_mm512_setzero_ps(); NB]; R];
        let mut w = wt.add(w_off);
        let mut d = dy.add(d_off);
        for _ in 0..o {
            let mut wv = [_mm512_setzero_ps(); NB];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(w.add(j * LANES));
            }
            for (i, t) in t.iter_mut().enumerate() {
                let db = _mm512_set1_ps(*d.add(i));
                for (j, t) in t.iter_mut().enumerate() {
                    *t = _mm512_fmadd_ps(wv[j], db, *t);
                }
            }
            w = w.add(NB * LANES);
            d = d.add(plane);
        }
        for (i, (s, t)) in sums.iter_mut().zip(&t).enumerate() {
            if reached & (1 << i) != 0 {
                for (s, t) in s.iter_mut().zip(t) {
                    *s = _mm512_add_ps(*s, *t);
                }
            }
        }
    }
    for (i, s) in sums.iter().enumerate() {
        for (j, v) in s.iter().enumerate() {
            _mm512_storeu_ps(out.add(i * step + j * LANES), *v);
        }
    }
}

/// Whether [`backward_weight_chunk`] computes this geometry's weight gradient, `rows` rows of
/// `dw^T` a task (on this CPU). `gemm` picks its `kc` without the cache sizes only for products
/// of at most 64 x 64 (`kc = min(k, 512)`), so only tasks of at most 64 rows and `O <= 64`
/// are served: the 4x4 and first-layer convolutions of the narrow discriminators.
pub(crate) fn serves_backward_weight(g: &ConvGeom, rows: usize) -> bool {
    rows <= 64
        && [16, 32, 64].contains(&g.o)
        && g.kh == g.kw
        && weight_rows_per_block(g).is_some()
        && g.p() >= 2
        && (g.stride == 1 || g.stride == 2)
        && !g.is_pointwise()
        && avx512()
}

/// Kernel rows per block of [`backward_weight_chunk`]: `rk * kw * nb` accumulators, at most 16,
/// `rk` dividing `kh` (3x3 with one register of output channels, 4x4 with one, two or four).
fn weight_rows_per_block(g: &ConvGeom) -> Option<usize> {
    match (g.kw, g.o / LANES) {
        (3, 1) => Some(3),
        (4, 1) => Some(4),
        (4, 2) => Some(2),
        (4, 4) => Some(1),
        _ => None,
    }
}

/// One task's and one chunk's share of the weight gradient: `part` (`rows x O`, the rows of
/// `dw^T` of the input channels `channels`) gets `sum_q col[r][q] * dyt[q][o]` over the chunk's
/// columns `q` (samples, then output positions), from `xc` (`s x C x H x W`) and `dyt`
/// (`s * P x O`); onto what `part` holds when `accumulate`, else in its place.
///
/// The same bits as im2col + `gemm` (`m = O`, `n = rows`, `k = s * P`, all but `k` at most 64):
/// `gemm` sums `k` in blocks of `kc = min(k, 512)`, each from zero in column order with one FMA
/// a column, and adds each block to the output (the first one replaces it unless `accumulate`).
pub(crate) fn backward_weight_chunk(
    g: &ConvGeom,
    xc: &[f32],
    channels: std::ops::Range<usize>,
    dyt: &[f32],
    part: &mut [f32],
    accumulate: bool,
) {
    let rk = weight_rows_per_block(g).expect("serves_backward_weight() checked the geometry");
    let s = xc.len() / g.in_len();
    let (hp, wp) = g.padded();
    let plane = hp * wp;
    let cols = s * g.p();
    let kc = cols.min(MAX_K);
    let khw = g.kh * g.kw;
    assert_eq!(dyt.len(), cols * g.o, "direct conv: dy^T");
    assert_eq!(
        part.len(),
        channels.len() * khw * g.o,
        "direct conv: dw^T rows"
    );
    // The last padded element a block reads, from its first: the kernel's unchecked loads.
    let reach = ((g.oh - 1) * g.stride + rk - 1) * wp + (g.ow - 1) * g.stride + g.kw - 1;
    super::scratch::with_buffer(s * plane, |padded: &mut [f32]| {
        padded.fill(0.0);
        for (ci, c) in channels.enumerate() {
            for (sample, dst) in padded.chunks_exact_mut(plane).enumerate() {
                g.pad_plane(&xc[(sample * g.c + c) * g.h * g.w..][..g.h * g.w], dst);
            }
            for ki0 in (0..g.kh).step_by(rk) {
                let rows = &mut part[(ci * khw + ki0 * g.kw) * g.o..][..rk * g.kw * g.o];
                assert!((s - 1) * plane + ki0 * wp + reach < padded.len());
                let shape = WeightShape {
                    samples: s,
                    oh: g.oh,
                    ow: g.ow,
                    stride: g.stride,
                    wp,
                    plane,
                    o: g.o,
                    kc,
                };
                // SAFETY: AVX-512 was checked by `serves_backward_weight`; the planes are read
                // at most `reach` past each sample's block start (asserted above), `dyt` at
                // `q * O + j < cols * O`, and `rows` holds the `rk * kw * O` values written.
                unsafe {
                    weight_block(
                        (g.kw, rk),
                        &shape,
                        padded[ki0 * wp..].as_ptr(),
                        dyt.as_ptr(),
                        rows.as_mut_ptr(),
                        accumulate,
                    )
                };
            }
        }
    });
}

/// The sizes [`weight_kernel`] walks.
struct WeightShape {
    samples: usize,
    oh: usize,
    ow: usize,
    stride: usize,
    wp: usize,
    plane: usize,
    o: usize,
    kc: usize,
}

/// Dispatches one block of kernel rows to the weight kernel compiled for its shape.
///
/// # Safety
/// As [`weight_kernel`].
#[cfg(target_arch = "x86_64")]
unsafe fn weight_block(
    (kw, rk): (usize, usize),
    shape: &WeightShape,
    x: *const f32,
    dyt: *const f32,
    dst: *mut f32,
    accumulate: bool,
) {
    match (kw, rk, shape.o / LANES) {
        (3, 3, 1) => weight_kernel::<3, 3, 1>(shape, x, dyt, dst, accumulate),
        (4, 4, 1) => weight_kernel::<4, 4, 1>(shape, x, dyt, dst, accumulate),
        (4, 2, 2) => weight_kernel::<4, 2, 2>(shape, x, dyt, dst, accumulate),
        (4, 1, 4) => weight_kernel::<4, 1, 4>(shape, x, dyt, dst, accumulate),
        other => unreachable!("no weight kernel for (kw, rk, nb) = {other:?}"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn weight_block(
    _: (usize, usize),
    _: &WeightShape,
    _: *const f32,
    _: *const f32,
    _: *mut f32,
    _: bool,
) {
    unreachable!("serves_backward_weight() is false off x86-64")
}

/// `RK` kernel rows of `KW` taps times `NB * 16` output channels: for each column `q` of the
/// chunk in order, `NB` loads of `dyt[q]` and one broadcast per tap, one FMA per accumulator;
/// every `kc` columns (and at the end) the accumulators are added to `dst` (row `rk * KW + kj`,
/// `O` values a row), or replace it the first time unless `accumulate`, and restart from zero.
///
/// # Safety
/// AVX-512F is available; `x` (the block's first kernel row in the first sample's padded
/// plane) is readable at every tap of every position of every sample; `dyt` holds
/// `samples * oh * ow * O` values; `dst` has room for `RK * KW * O`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_kernel<const KW: usize, const RK: usize, const NB: usize>(
    shape: &WeightShape,
    x: *const f32,
    dyt: *const f32,
    dst: *mut f32,
    accumulate: bool,
) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps};
    use std::arch::x86_64::{_mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    let o = shape.o;
    let mut sums = [[[_mm512_setzero_ps(); NB]; KW]; RK];
    let mut holds = accumulate;
    let mut flush = |sums: &mut [[[std::arch::x86_64::__m512; NB]; KW]; RK]| {
        for (rk, row) in sums.iter_mut().enumerate() {
            for (kj, tap) in row.iter_mut().enumerate() {
                for (j, v) in tap.iter_mut().enumerate() {
                    let at = dst.add((rk * KW + kj) * o + j * LANES);
                    let out = if holds {
                        _mm512_add_ps(_mm512_loadu_ps(at), *v)
                    } else {
                        *v
                    };
                    _mm512_storeu_ps(at, out);
                    *v = _mm512_setzero_ps();
                }
            }
        }
        holds = true;
    };
    let mut q = 0;
    for sample in 0..shape.samples {
        let plane = x.add(sample * shape.plane);
        for oy in 0..shape.oh {
            let row0 = plane.add(oy * shape.stride * shape.wp);
            for ox in 0..shape.ow {
                let d = dyt.add(q * o);
                let mut dv = [_mm512_setzero_ps(); NB];
                for (j, v) in dv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(d.add(j * LANES));
                }
                let base = row0.add(ox * shape.stride);
                for (rk, row) in sums.iter_mut().enumerate() {
                    let taps = base.add(rk * shape.wp);
                    for (kj, tap) in row.iter_mut().enumerate() {
                        let xb = _mm512_set1_ps(*taps.add(kj));
                        for (j, v) in tap.iter_mut().enumerate() {
                            *v = _mm512_fmadd_ps(dv[j], xb, *v);
                        }
                    }
                }
                q += 1;
                if q % shape.kc == 0 {
                    flush(&mut sums);
                }
            }
        }
    }
    if q % shape.kc != 0 {
        flush(&mut sums);
    }
}
