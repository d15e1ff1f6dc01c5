//! Wall-clock timers per kernel pass and per piece of a pass (im2col, GEMM, col2im, transposes),
//! for finding where a training step's time goes. Built only with the `kernel-timers` feature:
//! without it [`time`] is `f()` and [`take`] returns nothing, so release builds carry no cost.
//!
//! Keys name the piece and the geometry, e.g. `forward gemm c=64 h=32 o=64 k=4 s=2`. A piece
//! timed inside a rayon task is summed over the threads that ran it (thread-time, not wall
//! time); a pass is timed on the calling thread (wall time). Timing never changes what a
//! kernel computes.
//!
//! `cargo run --release -p stages --no-default-features --features kernel-timers --example
//! train_step -- 10 steps` prints the table after the D steps and after the G steps.

use super::im2col::ConvGeom;

/// One timer's total: its key, how many times it ran, and the seconds summed over the runs.
pub type Total = (String, u64, f64);

/// The geometry part of a key.
pub(crate) fn geom_key(g: &ConvGeom) -> String {
    format!(
        "c={} h={} o={} k={}x{} s={}",
        g.c, g.h, g.o, g.kh, g.kw, g.stride
    )
}

#[cfg(feature = "kernel-timers")]
mod enabled {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::Total;

    static TOTALS: Mutex<Vec<Total>> = Mutex::new(Vec::new());

    /// Runs `f`, adding its wall time to the timer `key()`.
    pub(crate) fn time<R>(key: impl FnOnce() -> String, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let out = f();
        let seconds = start.elapsed().as_secs_f64();
        let key = key();
        let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        match totals.iter_mut().find(|t| t.0 == key) {
            Some(t) => {
                t.1 += 1;
                t.2 += seconds;
            }
            None => totals.push((key, 1, seconds)),
        }
        out
    }

    /// The totals since the last call, largest first; the timers restart from zero.
    pub fn take() -> Vec<Total> {
        let mut totals = std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()));
        totals.sort_by(|a, b| b.2.total_cmp(&a.2));
        totals
    }
}

#[cfg(feature = "kernel-timers")]
pub use enabled::take;
#[cfg(feature = "kernel-timers")]
pub(crate) use enabled::time;

/// Runs `f` (timers are not built in).
#[cfg(not(feature = "kernel-timers"))]
#[inline(always)]
pub(crate) fn time<R>(_key: impl FnOnce() -> String, f: impl FnOnce() -> R) -> R {
    f()
}

/// Nothing: timers are not built in.
#[cfg(not(feature = "kernel-timers"))]
pub fn take() -> Vec<Total> {
    Vec::new()
}

/// Takes the totals (as [`take`]) and prints them on stderr as milliseconds per `unit`, over
/// `count` of them, e.g. `eprint_per("D step", 23)`; prints nothing when timers are not built in.
pub fn eprint_per(unit: &str, count: usize) {
    let totals = take();
    if totals.is_empty() {
        return;
    }
    eprintln!("kernel timers, ms per {unit} over {count} {unit}s (pieces: summed over threads):");
    for (key, runs, seconds) in totals {
        let per = seconds * 1e3 / count as f64;
        eprintln!("{per:9.2} ms {runs:6} runs  {key}");
    }
}
