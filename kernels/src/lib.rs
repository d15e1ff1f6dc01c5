//! Fast CPU kernels for the ops that dominate training and FID feature extraction: 2-D
//! convolution, transposed convolution, leaky ReLU, the classifier's 2x2 max pool and the FID
//! Inception's 3x3 pools, as candle custom ops.
//!
//! Why: candle 0.11's CPU transposed convolution is a direct loop, and its conv2d backward runs
//! the input gradient through it, so a discriminator step spent most of its time there (about 5x
//! PyTorch on the same cores). Here every convolution, forward or backward, is im2col/col2im
//! around one GEMM from the `gemm` crate ([`conv`]), except the passes of narrow layers on an
//! AVX-512 CPU, computed directly to the same bits ([`direct`]); the transposed convolution is
//! the same passes in another order ([`conv_transpose`]), with the bias fused into both; leaky
//! ReLU is a single pass each way ([`activation`]); training-mode batch norm computes its
//! statistics per channel in one task each ([`batch_norm`]), where candle's `(0, 2, 3)`
//! reductions were a fifth of a generator step.
//!
//! What must never change silently:
//! - **Bit-reproducibility on the CPU.** Work is split into chunks of the batch whose size
//!   depends on the shapes only, each chunk runs a single-threaded GEMM, and the only reduction
//!   across chunks (the weight gradient) is summed in chunk order after the parallel part. The
//!   results are the same bits with any thread count (tested).
//! - **Semantics equal candle's ops** (tested against them, values and gradients): these
//!   functions are drop-in replacements, plus per-axis padding for Inception's 1x7 and 7x1
//!   kernels.
//! - **Other devices keep candle's kernels.** The fast path runs for contiguous-able f32 and f64
//!   tensors on the CPU; anything else (CUDA, f16, ...) goes to candle's own op, so a GPU run is
//!   exactly what candle computes.
//!
//! Supported: groups 1, dilation 1, any kernel size, stride and padding (transposed: output
//! padding 0). The gradients are not themselves differentiable (no double backprop; no model
//! here needs it). A convolution whose input is not on the graph (a data batch) skips its input
//! gradient.
//!
//! Where the time still goes (perf, standard CNN at batch 64): well over half in the GEMM
//! micro-kernel (the `gemm` crate's AVX-512 kernel where the CPU has it, see [`matmul`]: this
//! AMD core splits 512-bit FMAs into two 256-bit halves, so the peak is the AVX2 one, but the 32
//! registers let a tile load less per FMA; per-op timers put the GEMMs of a D step 7-9% below
//! the AVX2 kernel's), then writing and packing the im2col matrix (about a tenth: bound by the
//! stores), col2im, and candle's own work between the kernels. The narrow networks the extended
//! profile trains (D 4 and 16, G 16) spent as much on im2col, packing and col2im as on the
//! products, so most of their passes are now direct ([`direct`]).
//! The weight-gradient pass asks `gemm` for a column-major product so it packs the small `dy`
//! operand rather than gathering the im2col matrix, and splits the input channels across tasks
//! (and, for a layer with few of them, the batch) ([`conv::backward_weight`]); the data-gradient
//! pass transposes the weight once rather than have `gemm` regather it in every chunk
//! ([`conv::backward_data`]). A convolution and the leaky ReLU after it are one graph node
//! ([`conv2d_leaky_relu`]); the activations are branch-free selects, which vectorize (a branch
//! on the sign mispredicted on half the elements and made a 16 MB pass take 8 ms).
//!
//! Outside these kernels the cost is candle's and the allocator's:
//! - candle's backprop accumulated every gradient as `zeros_like` + `add`, two full passes per
//!   activation on the calling thread while the kernels' threads waited, until the workspace
//!   patched it to keep a tensor's first gradient as it is (`vendor/README.md`);
//! - the spectral norm's weight arithmetic was candle ops, a dozen serial passes over the
//!   weights backward, until it became one op ([`spectral_divide`]);
//! - candle's elementwise ops ran on their own spinning thread pool beside rayon's, which took
//!   cores from the kernels' threads, until binaries called [`threads::leave_cores_to_rayon`];
//! - each parallel loop, started from a thread outside rayon's pool, put that thread to sleep
//!   and woke it again, hundreds of times a step, until binaries ran their work on a worker
//!   ([`threads::run_in_pool`]);
//! - every op allocates its output. glibc handed big blocks back to the kernel and page-faulted
//!   them in again each step, until binaries called [`heap::keep_freed_memory`].
//!
//! Measured against the candle ops they replace, per layer, in the same process:
//! `examples/conv_bench.rs`; end to end against PyTorch: `scripts/bench/train_step.sh`,
//! `scripts/bench/inception.sh`. Where a step's kernel time goes, per pass and per piece of
//! one: the `kernel-timers` feature ([`timers`]).

pub(crate) mod activation;
pub(crate) mod batch_norm;
pub(crate) mod conv;
pub(crate) mod conv_transpose;
pub(crate) mod direct;
pub mod heap;
pub(crate) mod im2col;
pub(crate) mod matmul;
pub(crate) mod pool;
pub(crate) mod pool3x3;
pub(crate) mod scratch;
pub(crate) mod spectral_div;
pub mod threads;
pub mod timers;

#[cfg(test)]
mod tests;

use std::ops::{AddAssign, Mul};

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, DType, Layout, Result, Tensor, WithDType};

/// The float types the kernels are compiled for.
pub(crate) trait Elem: WithDType + AddAssign + Mul<Output = Self> {
    const ZERO: Self;
    const ONE: Self;
    /// This type's per-thread scratch buffers ([`scratch`]).
    fn pool() -> &'static scratch::Pool<Self>;
    /// The slice as `f32`s when this type is `f32` (the kernels with an f32-only fast path).
    fn f32s(s: &[Self]) -> Option<&[f32]>;
    /// [`Elem::f32s`] for a mutable slice.
    fn f32s_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

impl Elem for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn pool() -> &'static scratch::Pool<Self> {
        &scratch::F32_POOL
    }
    fn f32s(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    fn f32s_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn pool() -> &'static scratch::Pool<Self> {
        &scratch::F64_POOL
    }
    fn f32s(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn f32s_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// A `len`-element vector of zeros for a kernel's output, zeroed by the rayon threads in
/// parallel: `vec![ZERO; len]` has glibc `memset` it on the calling thread while the other
/// threads wait, which came to about 1% of a D step. Below 64K elements the `memset` is
/// cheaper than waking the threads.
pub(crate) fn zeroed<T: Elem>(len: usize) -> Vec<T> {
    use rayon::iter::ParallelExtend;
    if len < 1 << 16 {
        return vec![T::ZERO; len];
    }
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(T::ZERO, len));
    v
}

/// Elements per parallel task of an elementwise kernel: large enough to amortize scheduling,
/// small enough to split a discriminator's activations across both cores.
pub(crate) const CHUNK: usize = 1 << 15;

/// `out[i] = f(x[i], a[i])` in parallel chunks of [`CHUNK`] (an elementwise kernel's one pass;
/// `a` may be `x` itself). Each element alone, so the thread count cannot change a bit.
pub(crate) fn map_pairs<T: Elem>(x: &[T], a: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    use rayon::prelude::*;
    let mut out = zeroed(x.len());
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(a.par_chunks(CHUNK)))
        .for_each(|(out, (x, a))| {
            for ((o, &x), &a) in out.iter_mut().zip(x).zip(a) {
                *o = f(x, a);
            }
        });
    out
}

/// The contiguous data of a CPU storage as a slice.
pub(crate) fn cpu_slice<'a, T: Elem>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: operand is not contiguous (the caller must make it so)"),
    }
}

/// A one-operand kernel written once for both float types: [`map_unary`] picks the type.
pub(crate) trait Unary {
    fn run<T: Elem>(&self, x: &[T]) -> Vec<T>;
}

/// A two-operand kernel written once for both float types: [`map_binary`] picks the type.
pub(crate) trait Binary {
    fn run<T: Elem>(&self, a: &[T], b: &[T]) -> Vec<T>;
}

/// An error naming `op` unless `s` holds f32 or f64, the types the kernels are compiled for.
pub(crate) fn check_float(op: &str, s: &CpuStorage) -> Result<()> {
    match s {
        CpuStorage::F32(_) | CpuStorage::F64(_) => Ok(()),
        _ => bail!("{op}: only f32 and f64 are supported, got {:?}", s.dtype()),
    }
}

/// `kernel` on the data of `s` as f32 or f64; any other dtype is an error naming `op`.
pub(crate) fn map_unary(
    op: &str,
    (s, l): (&CpuStorage, &Layout),
    kernel: impl Unary,
) -> Result<CpuStorage> {
    check_float(op, s)?;
    Ok(match s {
        CpuStorage::F32(_) => CpuStorage::F32(kernel.run(cpu_slice(op, s, l)?)),
        _ => CpuStorage::F64(kernel.run(cpu_slice(op, s, l)?)),
    })
}

/// `kernel` on the data of two storages of one float dtype; anything else is an error naming
/// `op`.
pub(crate) fn map_binary(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    kernel: impl Binary,
) -> Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => {
            let (a, b) = cpu_slices::<f32>(op, s1, l1, s2, l2)?;
            CpuStorage::F32(kernel.run(a, b))
        }
        (CpuStorage::F64(_), CpuStorage::F64(_)) => {
            let (a, b) = cpu_slices::<f64>(op, s1, l1, s2, l2)?;
            CpuStorage::F64(kernel.run(a, b))
        }
        _ => bail!(
            "{op}: only f32 and f64 operands of one dtype are supported, got {:?} and {:?}",
            s1.dtype(),
            s2.dtype()
        ),
    })
}

/// [`cpu_slice`] of two operands.
pub(crate) fn cpu_slices<'a, T: Elem>(
    op: &str,
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<(&'a [T], &'a [T])> {
    Ok((cpu_slice(op, s1, l1)?, cpu_slice(op, s2, l2)?))
}

/// Whether the fast kernels handle these operands (else candle's op runs).
fn fast(ts: &[&Tensor]) -> bool {
    let dtype = ts[0].dtype();
    matches!(dtype, DType::F32 | DType::F64)
        && ts.iter().all(|t| t.device().is_cpu() && t.dtype() == dtype)
}

/// `conv2d(x, w) [+ b]` (groups 1, dilation 1) with padding `(ph, pw)` on the two spatial axes.
///
/// `x: (N, C, H, W)`, `w: (O, C, kh, kw)`, `b: (O)`; differentiable in all.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: (usize, usize),
) -> Result<Tensor> {
    conv2d_activated(x, w, b, stride, pad, None)
}

/// `leaky_relu(conv2d(x, w) [+ b], slope)` as one op on the CPU ([`conv::Conv2d`]: the same
/// values, one graph node, two full passes fewer backward); `slope >= 0` (0 is ReLU).
pub fn conv2d_leaky_relu(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: (usize, usize),
    slope: f64,
) -> Result<Tensor> {
    if slope.is_nan() || slope < 0.0 {
        bail!("conv2d_leaky_relu: the slope must be >= 0, got {slope}");
    }
    conv2d_activated(x, w, b, stride, pad, Some(slope))
}

fn conv2d_activated(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: (usize, usize),
    slope: Option<f64>,
) -> Result<Tensor> {
    if fast(&[x, w]) && b.is_none_or(|b| fast(&[x, b])) {
        let op = conv::Conv2d { stride, pad, slope };
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        return match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
            None => x.apply_op2(&w, op),
        };
    }
    let (ph, pw) = pad;
    let y = if ph == pw {
        x.conv2d(w, ph, stride, 1, 1)?
    } else {
        // candle pads both axes alike; pad the input by hand for asymmetric padding.
        x.pad_with_zeros(2, ph, ph)?
            .pad_with_zeros(3, pw, pw)?
            .conv2d(w, 0, stride, 1, 1)?
    };
    let y = add_channel_bias(y, b)?;
    match slope {
        Some(slope) => leaky_relu(&y, slope),
        None => Ok(y),
    }
}

/// `conv_transpose2d(x, w) [+ b]` (groups 1, dilation 1, output padding 0) with padding `pad`.
///
/// `x: (N, C_in, H, W)`, `w: (C_in, C_out, kh, kw)`, `b: (C_out)`; differentiable in all.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    if fast(&[x, w]) && b.is_none_or(|b| fast(&[x, b])) {
        let op = conv_transpose::ConvTranspose2d {
            stride,
            pad: (pad, pad),
        };
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        return match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
            None => x.apply_op2(&w, op),
        };
    }
    add_channel_bias(x.conv_transpose2d(w, pad, 0, stride, 1)?, b)
}

fn add_channel_bias(y: Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

/// Training-mode batch norm over the channels of `x: (N, C, H, W)`: returns `y`, and the batch
/// mean and biased variance (`(C)` each, detached) for the running statistics.
///
/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, differentiable in `x`, `gamma`, `beta`.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = x.dim(1)?;
    if fast(&[x, gamma, beta]) {
        let x = x.contiguous()?;
        let y = x.apply_op3(
            &gamma.contiguous()?,
            &beta.contiguous()?,
            batch_norm::BatchNormTrain { eps },
        )?;
        let moments = x.apply_op1_no_bwd(&batch_norm::ChannelMoments)?;
        return Ok((y, moments.get(0)?, moments.get(1)?));
    }
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
    let inv = var.affine(1.0, eps)?.sqrt()?.recip()?;
    let y = centered
        .broadcast_mul(&inv)?
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    Ok((y, mean.detach().flatten_all()?, var.detach().flatten_all()?))
}

/// Leaky ReLU with negative slope `slope`, one pass each way on the CPU.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if fast(&[x]) {
        return x.contiguous()?.apply_op1(activation::LeakyRelu { slope });
    }
    // The candle-ops version for other devices: ReLU itself for slope 0 (one op, and no
    // `inf * 0` in it), three vectorized ops otherwise.
    if slope == 0.0 {
        return x.relu();
    }
    x.relu()?.affine(1.0 - slope, 0.0)? + x.affine(slope, 0.0)?
}

/// A 2x2 max pool with stride 2 that drops an odd last row and column (PyTorch's and Keras'
/// floor mode), with the gradient of a max: 1 at the maximum (at every tied one). One pass each
/// way on the CPU ([`pool`]); elsewhere the same thing from candle ops (`narrow`, a reshape to
/// `(n, c, h/2, 2, w/2, 2)` and two max reductions), whose results it matches bit for bit.
///
/// candle's own `max_pool2d` gives the same values but a wrong gradient: its backward scales the
/// gradient by 1/4 (it multiplies by the share of maxima in a window where it should divide),
/// and it maps the pooled grid back to the input by nearest-neighbour upsampling to the full
/// size, so on an 11x11 map it assumes windows (rows 0-2, 3-4, ...) that are not the ones pooled
/// (0-1, 2-3, ..., 8-9) and sends gradient to the wrong pixels.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    if fast(&[x]) {
        return x.contiguous()?.apply_op1(pool::MaxPool2);
    }
    max_pool2_candle(x)
}

/// [`max_pool2`] from candle ops.
fn max_pool2_candle(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = x.narrow(2, 0, 2 * h2)?.narrow(3, 0, 2 * w2)?;
    x.reshape((b, c, h2, 2, w2, 2))?.max(5)?.max(3)
}

/// The FID Inception's 3x3 max pool with stride 2 and no padding (candle's
/// `max_pool2d_with_stride(3, 2)`), one parallel pass on the CPU ([`pool3x3`], bit for bit
/// candle's), candle's op elsewhere. Forward only.
pub fn max_pool3x3_stride2(x: &Tensor) -> Result<Tensor> {
    if fast(&[x]) {
        return x
            .contiguous()?
            .apply_op1_no_bwd(&pool3x3::Pool3x3::MaxStride2);
    }
    x.max_pool2d_with_stride(3, 2)
}

/// 3x3 max pool, stride 1, padding 1 with `-inf` (PyTorch's `max_pool2d(x, 3, 1, 1)`), one
/// parallel pass on the CPU ([`pool3x3`]); elsewhere from candle ops (`-inf` borders, then
/// candle's pool), which it matches bit for bit. Forward only.
pub fn max_pool3x3_same(x: &Tensor) -> Result<Tensor> {
    if fast(&[x]) {
        return x.contiguous()?.apply_op1_no_bwd(&pool3x3::Pool3x3::MaxSame);
    }
    max_pool3x3_same_candle(x)
}

fn max_pool3x3_same_candle(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let col = Tensor::full(f32::NEG_INFINITY, (n, c, h, 1), x.device())?.to_dtype(x.dtype())?;
    let x = Tensor::cat(&[&col, x, &col], 3)?;
    let row = Tensor::full(f32::NEG_INFINITY, (n, c, 1, w + 2), x.device())?.to_dtype(x.dtype())?;
    let x = Tensor::cat(&[&row, &x, &row], 2)?;
    x.max_pool2d_with_stride(3, 1)
}

/// 3x3 average pool, stride 1, padding 1, dividing by the number of unpadded pixels in each
/// window (TF's, and PyTorch's `count_include_pad=False`), one parallel pass on the CPU
/// ([`pool3x3`]); elsewhere from candle ops (zero padding, candle's pool, which divides by 9,
/// and a multiply by `9 / count`), which it matches bit for bit. Forward only.
pub fn avg_pool3x3_same_exclude_pad(x: &Tensor) -> Result<Tensor> {
    if fast(&[x]) {
        return x
            .contiguous()?
            .apply_op1_no_bwd(&pool3x3::Pool3x3::AvgSameExcludePad);
    }
    avg_pool3x3_same_exclude_pad_candle(x)
}

fn avg_pool3x3_same_exclude_pad_candle(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let mut inv = Vec::with_capacity(h * w);
    for i in 0..h {
        for j in 0..w {
            inv.push(pool3x3::nine_over_count((i, h), (j, w)));
        }
    }
    let inv = Tensor::from_vec(inv, (1, 1, h, w), x.device())?.to_dtype(x.dtype())?;
    let padded = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    padded.avg_pool2d_with_stride(3, 1)?.broadcast_mul(&inv)
}

/// The spectral norm's `w / sigma` with `sigma = u^T m v`, for `w: (O, ...)` viewed as the
/// matrix `m: (O, K)`, `u: (O, 1)`, `v: (K, 1)`, shaped like `w`: one graph node on the CPU
/// whose values and gradient are the bits of candle's
/// `m.broadcast_div(&u.t()?.matmul(&m)?.matmul(v)?)?.reshape(w.shape())`, its backward in
/// parallel passes ([`spectral_div`]); that expression elsewhere. `u` and `v` are constants
/// (detached): the gradient flows to `w` only, through both the numerator and `sigma`.
pub fn spectral_divide(w: &Tensor, u: &Tensor, v: &Tensor) -> Result<Tensor> {
    spectral_div::divide(w, u, v)
}

/// ReLU, one pass each way on the CPU (the gradient at exactly 0 is 0, as in PyTorch); candle's
/// own `relu` elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    leaky_relu(x, 0.0)
}
