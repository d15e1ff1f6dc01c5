//! The forward pass of a narrow convolution computed directly, without an im2col matrix, on
//! CPUs with AVX-512: the same sums in the same order as im2col + `gemm`, so the same bits.
//!
//! Why: for the narrow discriminators the extended profile trains (widths 4 to 64), writing the
//! im2col matrix to memory and `gemm` packing it again cost about as much as the products
//! (per-op timers, D 16 at one thread: forward im2col and GEMM about equal). Here the output
//! channels of one position are vector registers: for each row `k` of the would-be column matrix
//! (input channel, kernel row, kernel column, in that order) the weights of sixteen channels are
//! one load, the input value is one broadcast, and `R` positions of an output row share the
//! load. Each sample's input planes are first copied into zero-bordered planes, so a padded tap
//! needs no branch and is multiplied by zero exactly as the column matrix's zero is.
//!
//! Bit-identity with the GEMM path (tested on the models' geometries): `gemm` sums each output
//! element over `k` in row order, one fused multiply-add per row into an accumulator that starts
//! at zero, one block of `kc` rows at a time, and adds each block to the output (to the bias,
//! when there is one). Its `kc` is `k` itself up to 512 rows (`gemm-common`'s `kernel_params`
//! never picks a smaller block), so this kernel serves `K <= 512` only and does the same: one
//! accumulator from zero, one FMA per row in row order, the bias added once at the end.
//! It runs only where `gemm` would run its AVX-512 kernel (the FMA is the same instruction
//! either way); elsewhere, and for f64, the GEMM path runs.

use super::im2col::ConvGeom;

/// The largest reduction served: `gemm`'s smallest automatic `kc` (see the module doc).
const MAX_K: usize = 512;
/// Output channels per vector register.
const LANES: usize = 16;

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

/// Whether [`forward`] computes this geometry (on this CPU).
pub(crate) fn serves(g: &ConvGeom) -> bool {
    g.k() <= MAX_K
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
    for (ch, row) in w.chunks_exact(k).enumerate().take(o) {
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
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
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
                for (iy, row) in src.chunks_exact(g.w).enumerate() {
                    dst[(iy + g.ph) * wp + g.pw..][..g.w].copy_from_slice(row);
                }
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
    let last_base = (g.oh - 1) * g.stride * (g.w + 2 * g.pw) + (g.ow - 1) * g.stride;
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
            let base = oy * g.stride * (g.w + 2 * g.pw) + ox0 * g.stride;
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
