//! One pool of worker threads for the CPU work, and the work starts on it.
//!
//! **candle's elementwise ops run on the thread that calls them** instead of a pool of their
//! own ([`leave_cores_to_rayon`]).
//! candle 0.11 runs every elementwise op of 64K elements or more on its "barrier pool", a
//! second set of threads beside rayon's (which runs these kernels). After each op a barrier
//! worker spins (25,000 `spin_loop`s) before it parks, so on a machine with as many cores as
//! threads it takes a core from a rayon worker in the middle of a convolution. `perf` on the
//! small-DCGAN training step (2 cores): 12% of the samples in that spin loop. With candle's
//! pool reduced to the calling thread (`CANDLE_NUM_THREADS=1`), on a quiet machine, in the same
//! benchmark run: D step 1.42x -> 1.29x PyTorch's time (small DCGAN, D and G width 16), 1.39x ->
//! 1.29x (standard CNN), G steps 1.17x -> 1.11x and 1.24x -> 1.25x, Inception features even.
//!
//! Only elementwise ops use that pool, each element computed alone, so results are the same
//! bits either way. A user who sets `CANDLE_NUM_THREADS` keeps their value. It is a process-wide
//! setting read once, when candle first needs its pool, so only binaries call it, first thing
//! in `main`, before any thread starts; a library never does.
//!
//! **The work runs on a worker of the rayon pool** ([`run_in_pool`]). Called from a thread
//! outside the pool (a process's main thread), each of the kernels' parallel loops hands its
//! chunks to the workers and puts the caller to sleep until they are done: a wake-up each way,
//! hundreds of times a training step, and at one thread (how the pipeline trains, one run per
//! core) no parallelism in exchange. From a worker, a loop starts on that worker and the others
//! steal from it. With the allocator's one arena ([`crate::heap`], without which a worker's
//! big allocations page-faulted: Inception lost 16%), interleaved quiet rounds, medians: small
//! DCGAN (width 16) at one thread D step 141 -> 129 ms, G 127 -> 118 ms; at two threads D even,
//! G 71 -> 68 ms; standard CNN at two threads D about 5% and G 3% faster; Inception even.
//! Which chunks exist never depends on the threads, so the bits are the same (a 20-iteration
//! SR-static run's checkpoint and samples, byte for byte, at 1 and 2 threads).

/// The variable candle reads for its elementwise pool's size.
const CANDLE_NUM_THREADS: &str = "CANDLE_NUM_THREADS";

/// Gives candle's elementwise ops no threads of their own (see the module doc), unless the
/// environment already says how many. Returns whether it set the variable.
pub fn leave_cores_to_rayon() -> bool {
    if std::env::var_os(CANDLE_NUM_THREADS).is_some() {
        return false;
    }
    // Sound here: the caller is `main` before it starts any thread (see the module doc).
    std::env::set_var(CANDLE_NUM_THREADS, "1");
    true
}

/// Runs `f` on a worker of a new rayon pool of the usual size (`RAYON_NUM_THREADS`, else one
/// thread a core) and returns what it returns; the kernels' parallel loops inside then use that
/// pool from the thread they start on (see the module doc). Its workers get the stack of a
/// main thread (8 MiB). Should the pool not start, `f` runs here, as it would have before.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().stack_size(8 << 20).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
