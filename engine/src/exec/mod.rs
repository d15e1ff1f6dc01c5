//! The scheduler: runs the selected stages in dependency order, in parallel where it can.
//!
//! One thread (the caller's) owns all state: the lock file in memory, the resource pool, and each
//! stage's progress through `pending -> ready -> checked -> running -> done | failed | skipped`.
//! A stage is checked for freshness only when every selected upstream stage is done, so its deps
//! are final when they are hashed. Fresh stages finish on the spot; stale ones are restored from
//! the run cache when its entry and objects exist, else run; both go to a worker thread, which
//! reports back over a channel. Only this thread records finished stages: in the lock journal
//! (`lockfile::Journal`), flushed for completions that arrive close together at once, and in
//! `repro.lock`, written whole when the run ends (the run cache, written per stage by the
//! workers, covers the gap if `repro` dies before a flush).
//!
//! Failure policy: a failed stage stops new launches (stages already running finish and are
//! recorded); with `--keep-going` only its downstream stages are skipped. Ctrl-C forwards SIGINT
//! to every running stage, waits for them (and kills them after a grace period, or at once on a
//! second Ctrl-C), records them as interrupted and returns; the project lock is released when
//! the caller drops it.
//!
//! Where stage processes run is the caller's choice ([`Options::backend`]); everything above
//! is the same for every backend. A backend that schedules resources itself (SLURM) gets job
//! slots only from the pool: its scheduler grants cpus, memory and GPU ids, so neither the
//! machine's size nor `--gpus` limits what is submitted.

pub mod backend;
pub mod job;
pub mod process;
pub mod queue;
pub mod resources;
pub mod slurm;
pub mod staging;
pub mod supervise;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::Store;
use crate::dag::{Dag, StageId};
use crate::events::{Event, Sender};
use crate::fingerprint::DirtyReason;
use crate::freshness::{self, State};
use crate::hash::Hasher;
use crate::lockfile::{Journal, LockFile};
use crate::runrecord::RunDir;
use crate::workspace::Workspace;

use job::{Job, JobEnd, Mode, Shared};
use resources::Pool;

/// How `repro all` / `repro run` behave.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stages that run at once at most.
    pub jobs: usize,
    /// Stages to rerun even when fresh.
    pub force: BTreeSet<StageId>,
    pub dry_run: bool,
    pub keep_going: bool,
    /// GPU ids to hand out.
    pub gpus: Vec<u32>,
    /// Serve stale stages from the run cache when their fingerprint was seen before.
    pub run_cache: bool,
    /// Drop lock entries of stages no longer in the pipeline (a full `repro all`).
    pub prune_lock: bool,
    /// Where stage processes run: [`backend::Local`] or a cluster ([`slurm::Slurm`]).
    pub backend: Arc<dyn backend::Backend>,
}

/// What happened, for the exit code.
#[derive(Debug, Default)]
pub struct Report {
    pub failed: Vec<String>,
    pub interrupted: bool,
    pub ran: Vec<String>,
}

/// Errors of the machinery (not of a stage).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Lock(#[from] crate::lockfile::LockFileError),
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("stage `{stage}` needs {needed} GPU(s) but the pool has {available}; pass `--gpus 0,1,...` or set `CUDA_VISIBLE_DEVICES`")]
    NotEnoughGpus {
        stage: String,
        needed: u32,
        available: usize,
    },
    #[error("cannot locate the repro executable to run builtins: {0}")]
    Exe(std::io::Error),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

/// How long to wait after forwarding SIGINT before killing the stages.
const GRACE: Duration = Duration::from_secs(10);
/// Checked stale stages waiting for resources at most: enough that a stage needing what is
/// taken (a GPU) does not keep the others waiting, few enough that memory stays flat.
const LOOKAHEAD: usize = 256;
/// Completions closer together than this share one flush of the lock journal.
const LOCK_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Runs `order` (topologically sorted stage ids) with `opts`, reporting to `events`.
pub fn execute(
    ws: &Workspace,
    dag: &Dag,
    order: &[StageId],
    opts: &Options,
    events: Sender,
) -> Result<Report, ExecError> {
    let root = &ws.root;
    let mut lock = LockFile::load(root)?;
    // Finished stages are appended to the journal and `repro.lock` is written whole once, at the
    // end: rewriting a 10 MB lock after every stage made long runs quadratic.
    let mut journal = if opts.dry_run {
        None
    } else {
        Some(Journal::start(root, &lock)?)
    };
    let hashed = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hashed);
    let hasher = Arc::new(Hasher::open(&ws.hash_state_dir())?.with_progress(move |n| {
        counter.fetch_add(n, Ordering::Relaxed);
    }));
    let store = Arc::new(Store::open(&ws.cache_dir())?);
    let _ = events.send(Event::Plan {
        stages: order.len(),
    });

    let selected: HashSet<StageId> = order.iter().copied().collect();
    // A cluster grants cpus, memory and GPUs itself: here only the number in flight is bounded.
    let cluster = opts.backend.schedules_resources();
    let mut pool = if cluster {
        Pool::new(opts.jobs, u32::MAX, 0, Vec::new())
    } else {
        Pool::new(
            opts.jobs,
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            resources::total_memory(),
            opts.gpus.clone(),
        )
    };
    if !opts.dry_run && !cluster {
        for &id in order {
            let s = &dag.stages[id];
            if s.resources.gpus as usize > pool.gpu_count() && !s.frozen {
                return Err(ExecError::NotEnoughGpus {
                    stage: s.name.clone(),
                    needed: s.resources.gpus,
                    available: pool.gpu_count(),
                });
            }
        }
    }

    warm_source_deps(dag, order, root, &hasher, &hashed, &events);

    let run = RunDir::new(&ws.runs_dir());
    if !opts.dry_run {
        staging::clean_stale(&ws.tmp_dir(), &run.id);
        sweep_leftover_temps(dag, root, &store, &events);
    }
    let shared = Arc::new(Shared {
        root: root.clone(),
        tmp_dir: ws.tmp_dir(),
        run,
        hasher: Arc::clone(&hasher),
        store: Arc::clone(&store),
        backend: Arc::clone(&opts.backend),
        exe: std::env::current_exe().map_err(ExecError::Exe)?,
        views: staging::Views::of(dag),
        host: crate::workspace::hostname(),
    });

    let mut status = vec![Status::Pending; dag.stages.len()];
    let position: Vec<usize> = {
        let mut p = vec![usize::MAX; dag.stages.len()];
        for (i, &id) in order.iter().enumerate() {
            p[id] = i;
        }
        p
    };
    let mut waiting_on: Vec<usize> = (0..dag.stages.len())
        .map(|id| {
            dag.upstream[id]
                .iter()
                .filter(|u| selected.contains(u))
                .count()
        })
        .collect();
    let mut ready: BTreeSet<(usize, StageId)> = order
        .iter()
        .filter(|&&id| waiting_on[id] == 0)
        .map(|&id| (position[id], id))
        .collect();
    // Dry run: stages that would change, so their downstream is reported too.
    let mut would_change: HashSet<StageId> = HashSet::new();
    // Checked stale stages waiting for tokens, by position in `order`.
    let mut queued: std::collections::BTreeMap<usize, Job> = Default::default();
    let mut grants_running = 0usize;
    let (done_tx, done_rx) = mpsc::channel::<(StageId, Job, JobEnd, crate::runrecord::RunRecord)>();

    let mut report = Report::default();
    let mut stop_launching = false;
    let mut interrupt_at: Option<Instant> = None;
    let mut killed = false;
    let mut lock_dirty = false;
    let mut last_flush = Instant::now() - LOCK_FLUSH_INTERVAL;

    let finish = |id: StageId,
                  ok: bool,
                  status: &mut Vec<Status>,
                  waiting_on: &mut Vec<usize>,
                  ready: &mut BTreeSet<(usize, StageId)>| {
        status[id] = if ok { Status::Done } else { Status::Failed };
        for &d in &dag.downstream[id] {
            if selected.contains(&d) {
                waiting_on[d] -= 1;
                if waiting_on[d] == 0 {
                    ready.insert((position[d], d));
                }
            }
        }
    };

    loop {
        if process::interrupted() && interrupt_at.is_none() {
            interrupt_at = Some(Instant::now());
            stop_launching = true;
            report.interrupted = true;
            shared.backend.interrupt();
        }
        if let Some(t) = interrupt_at {
            if !killed && (t.elapsed() > GRACE || process::urgent()) {
                killed = true;
                shared.backend.kill();
            }
        }

        // Check ready stages; fresh ones complete at once and may make more ready. Stale ones
        // wait in `queued`, which is kept short: checking every ready stage up front held a
        // job per stage in memory (hundreds of MB at 100,000 stages).
        while !stop_launching && queued.len() < LOOKAHEAD {
            let Some((pos, id)) = ready.pop_first() else {
                break;
            };
            let stage = &dag.stages[id];
            if let Some(&up) = dag.upstream[id]
                .iter()
                .find(|u| matches!(status[**u], Status::Failed | Status::Skipped))
            {
                let _ = events.send(Event::Skipped {
                    stage: stage.name.clone(),
                    upstream: dag.stages[up].name.clone(),
                });
                status[id] = Status::Skipped;
                finish(id, false, &mut status, &mut waiting_on, &mut ready);
                status[id] = Status::Skipped;
                continue;
            }
            let upstream_change: Vec<DirtyReason> = dag.upstream[id]
                .iter()
                .filter(|u| would_change.contains(u))
                .map(|&u| DirtyReason::UpstreamStale {
                    stage: dag.stages[u].name.clone(),
                })
                .collect();
            let check = freshness::check(
                stage,
                lock.stages.get(&stage.name),
                root,
                &hasher,
                opts.force.contains(&id),
            );
            let check = match check {
                Ok(c) => c,
                Err(_) if opts.dry_run && !upstream_change.is_empty() => {
                    let _ = events.send(Event::WouldRun {
                        stage: stage.name.clone(),
                        reasons: upstream_change,
                        restore: false,
                    });
                    would_change.insert(id);
                    finish(id, true, &mut status, &mut waiting_on, &mut ready);
                    continue;
                }
                Err(e) => {
                    let _ = events.send(Event::Failed {
                        stage: stage.name.clone(),
                        error: e.to_string(),
                        log: None,
                    });
                    report.failed.push(stage.name.clone());
                    finish(id, false, &mut status, &mut waiting_on, &mut ready);
                    if !opts.keep_going {
                        stop_launching = true;
                    }
                    continue;
                }
            };
            let reasons = match check.state {
                State::Frozen => {
                    let _ = events.send(Event::Frozen {
                        stage: stage.name.clone(),
                    });
                    finish(id, true, &mut status, &mut waiting_on, &mut ready);
                    continue;
                }
                State::Fresh if upstream_change.is_empty() => {
                    let _ = events.send(Event::Fresh {
                        stage: stage.name.clone(),
                    });
                    finish(id, true, &mut status, &mut waiting_on, &mut ready);
                    continue;
                }
                State::Fresh => upstream_change,
                State::Stale(mut r) => {
                    r.extend(upstream_change);
                    r
                }
            };
            // In a dry run, a stage downstream of one that would change is checked against
            // its upstream's outputs as they are now, not as they will be: a run-cache entry
            // for that fingerprint says nothing about what the real run will find, which
            // runs it (or restores it) with other inputs. So it "would run", never "restore".
            let unknowable =
                opts.dry_run && dag.upstream[id].iter().any(|u| would_change.contains(u));
            let restore = if opts.run_cache
                && job::cacheable(stage)
                && !opts.force.contains(&id)
                && !unknowable
            {
                cached_entry(&store, &check.fingerprint)
            } else {
                None
            };
            if opts.dry_run {
                let _ = events.send(Event::WouldRun {
                    stage: stage.name.clone(),
                    reasons,
                    restore: restore.is_some(),
                });
                would_change.insert(id);
                finish(id, true, &mut status, &mut waiting_on, &mut ready);
                continue;
            }
            let mode = match restore {
                Some(entry) => Mode::Restore(Box::new(entry)),
                None => Mode::Run,
            };
            let job = Job {
                stage: stage.clone(),
                inputs: check.inputs,
                fingerprint: check.fingerprint,
                reasons,
                grant: Default::default(),
                mode,
            };
            queued.insert(pos, job);
        }

        // Launch queued stages, in pipeline order, while tokens last. Stop as soon as the pool
        // is full: scanning every queued stage after each completion made a run of many
        // independent stages quadratic.
        if !stop_launching {
            let mut next = 0;
            while !pool.is_full() {
                let Some((&pos, job)) = queued.range(next..).next() else {
                    break;
                };
                next = pos + 1;
                let id = order[pos];
                let resources = if cluster || matches!(job.mode, Mode::Restore(_)) {
                    crate::spec::Resources::default()
                } else {
                    dag.stages[id].resources
                };
                let Some(grant) = pool.try_take(&resources) else {
                    continue;
                };
                let mut job = queued.remove(&pos).expect("just found");
                job.grant = grant;
                status[id] = Status::Running;
                grants_running += 1;
                if let Mode::Run = &job.mode {
                    let _ = events.send(Event::Started {
                        stage: job.stage.name.clone(),
                        reasons: job.reasons.clone(),
                        gpus: job.grant.gpus.clone(),
                    });
                }
                let shared = Arc::clone(&shared);
                let tx = done_tx.clone();
                let ev = events.clone();
                std::thread::spawn(move || {
                    let (end, record) = job::run(&shared, &job, &ev);
                    let _ = tx.send((id, job, end, record));
                });
            }
        }

        if grants_running == 0 && (stop_launching || (ready.is_empty() && queued.is_empty())) {
            break;
        }

        match done_rx.recv_timeout(Duration::from_millis(100)) {
            Ok((id, job, end, record)) => {
                grants_running -= 1;
                let name = job.stage.name.clone();
                pool.release(job.grant.clone());
                if let Err(e) = shared.run.write(&record) {
                    let _ = events.send(Event::Warning {
                        message: format!("cannot write the run record of `{name}`: {e}"),
                    });
                }
                match end {
                    JobEnd::Done { entry, restored } => {
                        if restored {
                            let _ = events.send(Event::Restored {
                                stage: name.clone(),
                                reasons: job.reasons.clone(),
                                deterministic: entry.deterministic,
                            });
                        } else {
                            let _ = events.send(Event::Finished {
                                stage: name.clone(),
                                elapsed: Duration::from_secs_f64(record.wall_seconds),
                            });
                            report.ran.push(name.clone());
                        }
                        if let Some(j) = journal.as_mut() {
                            j.append(&name, &entry);
                        }
                        lock.stages.insert(name, *entry);
                        lock_dirty = true;
                        finish(id, true, &mut status, &mut waiting_on, &mut ready);
                    }
                    JobEnd::Failed { error } => {
                        let log = record.log.as_ref().map(Into::into);
                        let _ = events.send(Event::Failed {
                            stage: name.clone(),
                            error,
                            log,
                        });
                        report.failed.push(name);
                        finish(id, false, &mut status, &mut waiting_on, &mut ready);
                        if !opts.keep_going {
                            stop_launching = true;
                        }
                    }
                    JobEnd::Interrupted => {
                        let _ = events.send(Event::Interrupted { stage: name });
                        status[id] = Status::Failed;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(j) = journal.as_mut() {
            if j.is_dirty() && last_flush.elapsed() >= LOCK_FLUSH_INTERVAL {
                j.flush()?;
                last_flush = Instant::now();
            }
        }
    }

    // Without `--keep-going` a failure stops new launches: say which selected stages did not
    // start, so the summary accounts for every stage of the run.
    if !report.failed.is_empty() && !report.interrupted {
        for &id in order {
            if status[id] != Status::Pending {
                continue;
            }
            let name = dag.stages[id].name.clone();
            match dag.upstream[id]
                .iter()
                .find(|u| matches!(status[**u], Status::Failed | Status::Skipped))
            {
                Some(&up) => {
                    let _ = events.send(Event::Skipped {
                        stage: name,
                        upstream: dag.stages[up].name.clone(),
                    });
                }
                None => {
                    let _ = events.send(Event::NotStarted {
                        stage: name,
                        failed: report.failed[0].clone(),
                    });
                }
            }
            status[id] = Status::Skipped;
        }
    }

    if opts.prune_lock && !opts.dry_run && report.failed.is_empty() && !report.interrupted {
        let before = lock.stages.len();
        lock.stages.retain(|name, _| dag.id(name).is_some());
        lock_dirty |= lock.stages.len() != before;
    }
    if let Some(j) = journal {
        j.finish(root, lock_dirty.then_some(&lock))?;
    }
    hasher.save()?;
    if !opts.dry_run {
        let _ = std::fs::remove_dir(shared.tmp_dir.join(&shared.run.id));
    }
    Ok(report)
}

/// Removes what a killed `repro` left half-written: temp files beside the lock and beside every
/// out (a restore or publish in flight), and in the store. Runs under the project lock, before
/// any stage is checked, so no stage can read a leftover and nothing hashes one.
fn sweep_leftover_temps(dag: &Dag, root: &Path, store: &Store, events: &Sender) {
    let mut dirs: BTreeSet<std::path::PathBuf> = dag
        .stages
        .iter()
        .flat_map(|s| s.outs.iter())
        .filter_map(|o| root.join(&o.path).parent().map(Path::to_path_buf))
        .collect();
    dirs.insert(root.to_path_buf());
    dirs.insert(store.tmp_dir());
    for dir in dirs {
        match crate::fsutil::sweep_temps(&dir) {
            Ok(removed) => {
                for path in removed {
                    let _ = events.send(Event::Warning {
                        message: format!(
                            "removed `{}`, left half-written by an interrupted run",
                            job::relative(root, &path)
                        ),
                    });
                }
            }
            Err(e) => {
                let _ = events.send(Event::Warning {
                    message: format!(
                        "cannot clean leftover temp files in `{}`: {e}",
                        job::relative(root, &dir)
                    ),
                });
            }
        }
    }
}

/// The run-cache entry for `fingerprint`, if it exists and every object it names is stored.
fn cached_entry(store: &Store, fingerprint: &str) -> Option<crate::lockfile::LockEntry> {
    let value = store.run_get(fingerprint).ok()??;
    let entry: crate::lockfile::LockEntry = serde_json::from_value(value).ok()?;
    if entry.fingerprint != fingerprint {
        return None;
    }
    entry
        .outputs
        .values()
        .all(|d| store.contains(&d.into()))
        .then_some(entry)
}

/// Hashes, in parallel and up front, every dep that no stage makes (the sources), so the
/// sequential freshness checks find their digests in the hash cache. Reports the bytes it reads
/// when that takes long enough to be worth a line (a first run over a large dataset).
fn warm_source_deps(
    dag: &Dag,
    order: &[StageId],
    root: &Path,
    hasher: &Hasher,
    hashed: &AtomicU64,
    events: &Sender,
) {
    let producers: std::collections::BTreeSet<&str> = dag
        .stages
        .iter()
        .flat_map(|s| s.outs.iter().map(|o| o.path.as_str()))
        .collect();
    let made_by_a_stage = |dep: &str| {
        producers
            .range(..=dep)
            .next_back()
            .is_some_and(|o| crate::dag::is_within(dep, o))
            || producers
                .range(dep..)
                .next()
                .is_some_and(|o| crate::dag::is_within(o, dep))
    };
    let mut paths: Vec<std::path::PathBuf> = order
        .iter()
        .flat_map(|&id| dag.stages[id].deps.iter())
        .filter(|d| !made_by_a_stage(&d.path))
        .map(|d| root.join(&d.path))
        .collect();
    paths.sort();
    paths.dedup();
    let started = Instant::now();
    let report_after = Duration::from_millis(500);
    std::thread::scope(|scope| {
        let work = scope.spawn(|| hasher.digest_many(&paths));
        while !work.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() >= report_after {
                let bytes = hashed.load(Ordering::Relaxed);
                let _ = events.send(Event::Hashing {
                    bytes,
                    elapsed: started.elapsed(),
                    done: false,
                });
            }
        }
    });
    if started.elapsed() >= report_after {
        let bytes = hashed.load(Ordering::Relaxed);
        let _ = events.send(Event::Hashing {
            bytes,
            elapsed: started.elapsed(),
            done: true,
        });
    }
}
