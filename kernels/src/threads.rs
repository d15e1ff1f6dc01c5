//! One pool of worker threads for the CPU work: candle's elementwise ops run on the thread
//! that calls them instead of a pool of their own.
//!
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
