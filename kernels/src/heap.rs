//! Keeping freed tensor memory in the process, so a training step does not page-fault its way
//! through every new activation.
//!
//! Every op allocates its output, and a step frees almost all of them again. glibc's malloc
//! serves blocks above its mmap threshold (128 KiB at start, rising only as big blocks are
//! freed) with a fresh `mmap` and trims the top of the heap back to the kernel once more than
//! twice that is free, so the next step touches brand-new pages, each a page fault that the
//! kernel answers with a zeroed page. In the training-step benchmark that was 1.0M faults in 16
//! steps and about 8% of the samples in the kernel's fault path; after, 0.13M faults.
//!
//! [`keep_freed_memory`] pins both thresholds: blocks up to 32 MiB (glibc's maximum, above any
//! activation of the benchmark models) come from the heap, and up to 1 GiB of free heap stays
//! mapped for reuse. What it costs: the process keeps up to that much memory it no longer uses.
//!
//! It also gives every thread the one main arena (`M_ARENA_MAX = 1`). The work runs on a rayon
//! worker ([`crate::threads::run_in_pool`]), and glibc gives a thread other than the main one
//! an arena of its own, made of 64 MiB heaps that are unmapped again when they empty: the
//! thresholds above did not hold there, and FID features, whose activations are tens of MiB,
//! page-faulted twice as much (Inception 8.6 instead of 10.3 images/s). The kernels' threads
//! allocate rarely (their buffers are reused), so sharing one arena costs no measurable wait.
//! It is a process-wide setting, so only binaries call it, before their first allocation of
//! note; a library never does. Other allocators or C libraries: a no-op.

/// glibc's largest accepted mmap threshold (`DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of the heap kept before trimming.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Tells the C allocator to keep freed blocks for reuse, in one arena for all threads (see the
/// module doc). Returns whether the settings took (false off glibc).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes two allocator parameters; it is thread-safe in glibc
        // and returns 0 when it rejects a value.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_ARENA_MAX, 1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
