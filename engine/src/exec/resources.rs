//! Resource tokens: how many stages may run at once, and which GPUs each one gets.
//!
//! A stage runs when a job slot (`-j`), its `cpus`, its `mem` and its `gpus` are all free. GPUs
//! are handed out as *ids* from a pool (`--gpus 0,1`, else `CUDA_VISIBLE_DEVICES` at start, else
//! none) and the stage sees exactly its ids in `CUDA_VISIBLE_DEVICES`: two training stages on a
//! two-GPU box get one GPU each instead of both fighting over GPU 0. A request larger than the
//! machine (more cpus or memory than it has) is clamped so the stage can still run alone; a
//! request for more GPUs than the pool holds is an error before anything runs.
//!
//! A stage short of cpus or memory is not overtaken for good: the scheduler offers the pending
//! stages in pipeline order, and one that does not fit sets its cpus and memory aside
//! ([`Reserved`]) for the rest of that pass, so later stages start only on what it leaves.
//! Without that, a stage asking for two cpus never started while one-cpu stages kept taking each
//! cpu as it came free (the extended profile's classifier waited behind all eight trainings). A
//! stage waiting only for a GPU sets nothing aside: CPU-only stages go on around it.

use crate::spec::Resources;

/// What one running stage holds.
#[derive(Clone, Debug, Default)]
pub struct Grant {
    pub cpus: u32,
    pub mem: u64,
    pub gpus: Vec<u32>,
}

/// Cpus and memory set aside, during one pass over the pending stages, for the stages earlier
/// in pipeline order that did not fit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reserved {
    cpus: u32,
    mem: u64,
}

/// The free tokens.
#[derive(Debug)]
pub struct Pool {
    jobs_free: usize,
    cpus_total: u32,
    cpus_free: u32,
    mem_total: u64,
    mem_free: u64,
    gpus_free: Vec<u32>,
    gpus_total: usize,
}

impl Pool {
    pub fn new(jobs: usize, cpus: u32, mem: u64, gpus: Vec<u32>) -> Pool {
        Pool {
            jobs_free: jobs.max(1),
            cpus_total: cpus.max(1),
            cpus_free: cpus.max(1),
            mem_total: mem,
            mem_free: mem,
            gpus_total: gpus.len(),
            gpus_free: gpus,
        }
    }

    /// Number of GPU ids in the pool.
    pub fn gpu_count(&self) -> usize {
        self.gpus_total
    }

    /// Takes the tokens for `r` if they are all free.
    pub fn try_take(&mut self, r: &Resources) -> Option<Grant> {
        self.try_take_after(r, &mut Reserved::default())
    }

    /// Takes the tokens for `r` if they are free beside what earlier waiting stages set aside
    /// (`reserved`). If `r` is short of cpus or memory (and not of GPUs), it sets its own
    /// aside in turn.
    pub fn try_take_after(&mut self, r: &Resources, reserved: &mut Reserved) -> Option<Grant> {
        let cpus = r.cpus.clamp(1, self.cpus_total);
        let mem = if self.mem_total == 0 {
            0
        } else {
            r.mem.min(self.mem_total)
        };
        let gpus = r.gpus as usize;
        let short = self.cpus_free.saturating_sub(reserved.cpus) < cpus
            || self.mem_free.saturating_sub(reserved.mem) < mem;
        if self.gpus_free.len() < gpus {
            return None;
        }
        if short {
            reserved.cpus += cpus;
            reserved.mem += mem;
            return None;
        }
        if self.jobs_free == 0 {
            return None;
        }
        self.jobs_free -= 1;
        self.cpus_free -= cpus;
        self.mem_free -= mem;
        let ids: Vec<u32> = self.gpus_free.drain(..gpus).collect();
        Some(Grant {
            cpus,
            mem,
            gpus: ids,
        })
    }

    /// Returns a grant's tokens.
    pub fn release(&mut self, g: Grant) {
        self.jobs_free += 1;
        self.cpus_free += g.cpus;
        self.mem_free += g.mem;
        self.gpus_free.extend(g.gpus);
        self.gpus_free.sort_unstable();
    }

    /// True when nothing is taken (so a stage that does not fit now never will).
    /// No further stage can start now: every job slot or every cpu is taken (each stage takes
    /// at least one cpu).
    pub fn is_full(&self) -> bool {
        self.is_full_after(&Reserved::default())
    }

    /// [`Pool::is_full`] once `reserved` is set aside.
    pub fn is_full_after(&self, reserved: &Reserved) -> bool {
        self.jobs_free == 0 || self.cpus_free <= reserved.cpus
    }

    pub fn is_idle(&self) -> bool {
        self.cpus_free == self.cpus_total
            && self.gpus_free.len() == self.gpus_total
            && self.mem_free == self.mem_total
    }
}

/// The GPU ids to hand out: `--gpus`, else `CUDA_VISIBLE_DEVICES` at start, else none.
pub fn gpu_pool(flag: Option<&[u32]>) -> Vec<u32> {
    if let Some(ids) = flag {
        return ids.to_vec();
    }
    std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Total memory in bytes from `/proc/meminfo` (0 when unknown: memory then limits nothing).
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|kb| kb.parse::<u64>().ok())
                })
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_handed_out_by_id() {
        let mut pool = Pool::new(4, 8, 0, vec![0, 1]);
        let r = Resources {
            cpus: 1,
            gpus: 1,
            mem: 0,
        };
        let a = pool.try_take(&r).unwrap();
        let b = pool.try_take(&r).unwrap();
        assert_eq!((a.gpus.clone(), b.gpus.clone()), (vec![0], vec![1]));
        assert!(pool.try_take(&r).is_none(), "a third GPU stage waits");
        pool.release(a);
        assert_eq!(pool.try_take(&r).unwrap().gpus, vec![0]);
    }

    #[test]
    fn oversized_cpu_requests_run_alone() {
        let mut pool = Pool::new(4, 2, 0, vec![]);
        let big = Resources {
            cpus: 16,
            gpus: 0,
            mem: 0,
        };
        let g = pool.try_take(&big).unwrap();
        assert_eq!(g.cpus, 2);
        assert!(pool.try_take(&Resources::default()).is_none());
        pool.release(g);
        assert!(pool.is_idle());
    }

    #[test]
    fn a_stage_short_of_cpus_keeps_them_from_later_stages() {
        let mut pool = Pool::new(8, 4, 0, vec![0]);
        let one = Resources::default();
        let four = Resources {
            cpus: 4,
            gpus: 0,
            mem: 0,
        };
        let first = pool.try_take(&one).unwrap();
        let mut reserved = Reserved::default();
        assert!(pool.try_take_after(&four, &mut reserved).is_none());
        assert!(
            pool.try_take_after(&one, &mut reserved).is_none(),
            "a later stage may not take the waiting stage's cpus"
        );
        assert!(pool.is_full_after(&reserved));
        pool.release(first);
        let mut reserved = Reserved::default();
        assert_eq!(pool.try_take_after(&four, &mut reserved).unwrap().cpus, 4);
    }

    #[test]
    fn a_stage_waiting_for_a_gpu_sets_nothing_aside() {
        let mut pool = Pool::new(8, 4, 0, vec![0]);
        let gpu = Resources {
            cpus: 2,
            gpus: 1,
            mem: 0,
        };
        let _held = pool.try_take(&gpu).unwrap();
        let mut reserved = Reserved::default();
        assert!(pool.try_take_after(&gpu, &mut reserved).is_none());
        assert!(pool
            .try_take_after(&Resources::default(), &mut reserved)
            .is_some());
    }
}
