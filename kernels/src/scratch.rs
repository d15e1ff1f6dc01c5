//! Per-thread reusable buffers for the kernels' temporaries (im2col matrices, reordered
//! gradients), so a training step does not allocate, zero and page-fault in tens of megabytes
//! per layer: profiles showed the kernel zeroing fresh pages at about a tenth of a step.
//!
//! A buffer handed out is **not** zeroed: it holds whatever the last user left. Every caller
//! overwrites all of it before reading (im2col writes every element; a GEMM with
//! `accumulate = false` writes all of `dst`). Buffers only grow; each rayon worker keeps at most
//! a few, as large as the largest layer it has run, and so does the thread that calls a kernel
//! (the transposed `dy` and weights the parallel tasks share read-only).

use std::cell::RefCell;
use std::thread::LocalKey;

use super::Elem;

/// Where a float type keeps its free buffers.
pub(crate) type Pool<T> = LocalKey<RefCell<Vec<Vec<T>>>>;

thread_local! {
    pub(crate) static F32_POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    pub(crate) static F64_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a `len`-element buffer of unspecified contents, then keeps it for reuse.
pub(crate) fn with_buffer<T: Elem, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let pool = T::pool();
    let mut buf = pool.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, T::ZERO);
    }
    let out = f(&mut buf[..len]);
    pool.with(|p| p.borrow_mut().push(buf));
    out
}
