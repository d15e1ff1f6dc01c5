//! The one place that calls the `gemm` crate: a bounds-checked, single-threaded matrix product
//! on slices with arbitrary strides.
//!
//! The kernels parallelize over fixed chunks of the batch themselves and call this with
//! `Parallelism::None`, so how many threads run never changes which products are summed in which
//! order: that is what keeps CPU training bit-reproducible. `gemm` itself is unsafe (raw
//! pointers and strides); the asserts here are what make the safe wrapper sound.
//!
//! `gemm` is built with its `x86-v4` feature, so on a CPU with AVX-512 it runs its AVX-512
//! micro-kernel (64 x 6 tiles, 32 registers) instead of the AVX2 one (16 x 6): 7-9% less GEMM
//! time per D step on this project's Zen 4 machines, where both have the same peak. The
//! kernel, and so the order of the sums, is picked at run time from the CPU's features: results
//! are bit-reproducible across thread counts on one machine, not across CPUs with and without
//! AVX-512.

use gemm::Parallelism;

use super::Elem;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> View<'a, T> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major `rows x cols` matrix (so it reads as `cols x rows`).
    pub fn transposed(data: &'a [T], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst (m x n, row-major) = [dst +] lhs (m x k) * rhs (k x n)`.
///
/// # Panics
/// When a view is too short for its shape: a bug in the caller, never a user input.
pub(crate) fn matmul<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: View<'_, T>,
    rhs: View<'_, T>,
) {
    product((m, n, k), (dst, n, 1), accumulate, lhs, rhs);
}

/// [`matmul`] with `dst` column-major (`dst` holds the `n x m` transpose, row-major).
///
/// `gemm` works in column-major order and transposes a row-major problem, which makes it pack
/// `rhs` as its left operand: when `rhs` has unit stride along `k` (a transposed im2col matrix)
/// that packing is a strided gather. Asking for the transposed output keeps the operands as
/// they are, so the left operand is packed from unit stride along `m`.
///
/// # Panics
/// When a view is too short for its shape: a bug in the caller, never a user input.
pub(crate) fn matmul_col_major<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: View<'_, T>,
    rhs: View<'_, T>,
) {
    product((m, n, k), (dst, 1, m), accumulate, lhs, rhs);
}

/// `dst = [dst +] lhs * rhs` with `dst (i, j)` at `i * rs + j * cs`, one of them `1` and the
/// other the extent of the opposite axis (a dense row- or column-major matrix).
fn product<T: Elem>(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs, dst_cs): (&mut [T], usize, usize),
    accumulate: bool,
    lhs: View<'_, T>,
    rhs: View<'_, T>,
) {
    assert!(dst.len() >= m * n, "matmul: dst too short");
    assert!(
        (dst_rs, dst_cs) == (n, 1) || (dst_rs, dst_cs) == (1, m),
        "matmul: dst must be dense"
    );
    assert!(lhs.fits(m, k), "matmul: lhs too short");
    assert!(rhs.fits(k, n), "matmul: rhs too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    let as_isize = |v: usize| isize::try_from(v).expect("matrix stride fits isize");
    // SAFETY: the asserts above bound every index `gemm` touches: dst (i, j) at
    // i * dst_rs + j * dst_cs < m * n (a dense layout), lhs (i, p) and rhs (p, j) inside their
    // slices by `fits`; dst does not alias the inputs (it is a unique borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            as_isize(dst_cs),
            as_isize(dst_rs),
            accumulate,
            lhs.data.as_ptr(),
            as_isize(lhs.cs),
            as_isize(lhs.rs),
            rhs.data.as_ptr(),
            as_isize(rhs.cs),
            as_isize(rhs.rs),
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
