//! The scheduler: runs the selected stages in dependency order, in parallel where it can.
//!
//! It reads like cargo's job queue (`core/compiler/job_queue`). One thread (the caller's) owns
//! all state: the lock file in memory and its journal, the resource pool, the
//! [`DependencyQueue`], and the checked stages waiting for resources. Workers only run or
//! restore a stage ([`job::run`]) and send back how it ended. [`Scheduler::drain`] repeats
//! these steps until nothing is running and nothing more may start:
//!
//! 1. [`Scheduler::check_interrupt`]: the first Ctrl-C stops launching and forwards SIGINT to
//!    every running stage; once [`GRACE`] has passed, or on a second Ctrl-C, the stages are
//!    killed (a third ends `repro` in the signal handler itself). Stopped stages are recorded
//!    as interrupted as their workers report.
//! 2. [`Scheduler::check_ready`]: dequeue ready stages in pipeline order; for each one,
//!    [`Scheduler::decide`] whether it is skipped (a dep failed or was skipped), broken (its
//!    freshness cannot be checked), frozen, fresh, would run (dry run), or stale: a [`Job`]
//!    that restores it from the run cache when the entry and its objects exist, else runs it;
//!    then [`Scheduler::settle`] it. Stale jobs wait in `pending`, at most [`LOOKAHEAD`] of
//!    them; every other verdict finishes the stage on the spot, which may make more ready.
//! 3. [`Scheduler::launch_pending`]: hand pending jobs to worker threads, in pipeline order,
//!    while the pool has their tokens (`-j`, cpus, memory, GPU ids); a job short of cpus or
//!    memory keeps later jobs from taking them, so it is not starved.
//! 4. wait up to [`POLL`] for a worker, then [`Scheduler::on_completion`]: return the tokens,
//!    write the run record, report, record the new lock entry and release the dependents.
//! 5. [`Scheduler::flush_lock`].
//!
//! [`Scheduler::wrap_up`] then accounts for the stages that never started, prunes and writes
//! `repro.lock`, and saves the hash cache.
//!
//! What must never change silently:
//!
//! - **Events.** Every event goes through [`emit`], from this thread, in the order the steps
//!   above produce them (a `Progress` event comes from a worker). A stage is checked only when
//!   every selected upstream stage has finished, so its deps are final when they are hashed.
//! - **The lock.** Only this thread records finished stages, and only successful ones (ran or
//!   restored): a failed or interrupted stage keeps its previous lock entry, and the worker
//!   publishes outs only after they are in the cache and the run cache (see [`job`]), so a
//!   killed or failed stage leaves workspace, cache and lock consistent. A new entry is
//!   appended to the lock journal (`lockfile::Journal`) when its completion is handled; after
//!   each wait for a worker the journal is flushed if it holds new entries and the last flush
//!   is at least [`LOCK_FLUSH_INTERVAL`] old (completions that arrive close together share a
//!   flush), and `repro.lock` is written whole once, at the end, only if an entry changed or
//!   was pruned (a dry run writes neither). The run cache, written per stage by the workers,
//!   covers the gap if `repro` dies before a flush. An interrupted run is recorded the same
//!   way; the project lock is released when the caller drops it.
//! - **Failure policy.** A failed stage stops new launches (stages already running finish and
//!   are recorded); with `--keep-going` only its downstream stages are skipped. After a
//!   failure without `--keep-going`, every stage that did not start is reported as skipped or
//!   not started, so the summary accounts for every stage of the run. An interrupted run
//!   reports only what ran.
//! - **Backends.** Where stage processes run is the caller's choice
//!   ([`super::Options::backend`]); everything above is the same for every backend. A backend
//!   that schedules resources itself (SLURM) gets job slots only from the pool: its scheduler
//!   grants cpus, memory and GPU ids, so neither the machine's size nor `--gpus` limits what is
//!   submitted.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::Store;
use crate::dag::{Dag, StageId};
use crate::events::{emit, Event, Sender};
use crate::fingerprint::DirtyReason;
use crate::freshness::{self, State};
use crate::hash::Hasher;
use crate::lockfile::{Journal, LockEntry, LockFile};
use crate::runrecord::{RunDir, RunRecord};
use crate::workspace::Workspace;

use super::job::{self, Job, JobEnd, Mode, Shared};
use super::queue::{DependencyQueue, Outcome};
use super::resources::{self, Pool};
use super::resume::Resumes;
use super::{prepare, process, staging, ExecError, Options, Report};

/// How long to wait after forwarding SIGINT before killing the stages.
pub const GRACE: Duration = Duration::from_secs(10);
/// Checked stale stages waiting for resources at most: enough that a stage needing what is
/// taken (a GPU) does not keep the others waiting, few enough that memory stays flat.
pub const LOOKAHEAD: usize = 256;
/// Completions closer together than this share one flush of the lock journal.
pub const LOCK_FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How long one step waits for a worker before it looks at Ctrl-C and the journal again.
pub const POLL: Duration = Duration::from_millis(100);

/// What a worker sends back when its job has ended.
struct Completion {
    id: StageId,
    job: Job,
    end: JobEnd,
    record: RunRecord,
}

/// What the check of a ready stage decided.
enum Verdict {
    /// A dep failed or was skipped (`upstream`, the first such one).
    Skip { upstream: StageId },
    /// Its freshness could not be checked (a dep cannot be read or hashed).
    Broken { error: String },
    /// `frozen: true`: never run.
    Frozen,
    /// Nothing changed.
    Fresh,
    /// Dry run: it would run, or be restored from the run cache.
    WouldRun {
        reasons: Vec<DirtyReason>,
        restore: bool,
    },
    /// Stale: restore or run it when the pool has its tokens.
    Stale(Box<Job>),
}

/// The state of one run; see the module documentation.
pub struct Scheduler<'a> {
    dag: &'a Dag,
    order: &'a [StageId],
    opts: &'a Options,
    root: &'a Path,
    events: Sender,

    lock: LockFile,
    /// `None` in a dry run, which records nothing.
    journal: Option<Journal>,
    /// An entry of `lock` changed (or was pruned): `repro.lock` is written at the end.
    lock_dirty: bool,
    last_flush: Instant,

    hasher: Arc<Hasher>,
    store: Arc<Store>,
    shared: Arc<Shared>,
    /// True when the backend grants cpus, memory and GPUs itself: the pool bounds only jobs.
    cluster: bool,
    pool: Pool,

    queue: DependencyQueue,
    /// Checked stale stages waiting for tokens, by position in `order`.
    pending: BTreeMap<usize, Job>,
    /// Jobs handed to workers and not reported back yet.
    running: usize,
    done_tx: mpsc::Sender<Completion>,
    done_rx: mpsc::Receiver<Completion>,
    /// Dry run: stages that would change, so their downstream is reported too.
    would_change: HashSet<StageId>,

    report: Report,
    stop_launching: bool,
    interrupt_at: Option<Instant>,
    killed: bool,
    /// `--pull` failed once (the remote is unreachable, say): not tried again in this run.
    pull_broken: std::cell::Cell<bool>,
}

impl<'a> Scheduler<'a> {
    /// Loads the lock, opens the hash cache and the store, announces the plan, refuses a GPU
    /// request the pool cannot meet, hashes the sources and (unless a dry run) cleans what a
    /// killed run left behind. Nothing is checked or run yet.
    pub fn start(
        ws: &'a Workspace,
        dag: &'a Dag,
        order: &'a [StageId],
        opts: &'a Options,
        events: Sender,
    ) -> Result<Scheduler<'a>, ExecError> {
        let root = ws.root.as_path();
        let lock = LockFile::load(root)?;
        // Finished stages are appended to the journal and `repro.lock` is written whole once, at
        // the end: rewriting a 10 MB lock after every stage made long runs quadratic.
        let journal = if opts.dry_run {
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
        emit(
            &events,
            Event::Plan {
                stages: order.len(),
            },
        );

        let cluster = opts.backend.schedules_resources();
        let pool = pool_for(opts, cluster);
        if !opts.dry_run && !cluster {
            refuse_unmeetable_gpus(dag, order, &pool)?;
        }

        prepare::warm_source_deps(dag, order, root, &hasher, &hashed, &events);

        let run = RunDir::new(&ws.runs_dir());
        let resumes = Resumes::new(ws.resume_dir());
        if !opts.dry_run {
            staging::clean_stale(&ws.tmp_dir(), &run.id, &resumes);
            prepare::sweep_leftover_temps(dag, root, &store, &events);
        }
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            tmp_dir: ws.tmp_dir(),
            run,
            hasher: Arc::clone(&hasher),
            store: Arc::clone(&store),
            backend: Arc::clone(&opts.backend),
            exe: std::env::current_exe().map_err(ExecError::Exe)?,
            views: staging::Views::of(dag),
            resumes,
            host: crate::workspace::hostname(),
            stage_env: dag.env.clone(),
        });

        let (done_tx, done_rx) = mpsc::channel();
        Ok(Scheduler {
            dag,
            order,
            opts,
            root,
            events,
            lock,
            journal,
            lock_dirty: false,
            last_flush: Instant::now() - LOCK_FLUSH_INTERVAL,
            hasher,
            store,
            shared,
            cluster,
            pool,
            queue: queue_of(dag, order),
            pending: BTreeMap::new(),
            running: 0,
            done_tx,
            done_rx,
            would_change: HashSet::new(),
            report: Report::default(),
            stop_launching: false,
            interrupt_at: None,
            killed: false,
            pull_broken: std::cell::Cell::new(false),
        })
    }

    /// Runs the steps until nothing is running and nothing more may start. Errs only when the
    /// lock journal cannot be written.
    pub fn drain(&mut self) -> Result<(), ExecError> {
        loop {
            self.check_interrupt();
            self.check_ready();
            self.launch_pending();
            if self.is_over() {
                return Ok(());
            }
            match self.done_rx.recv_timeout(POLL) {
                Ok(done) => self.on_completion(done),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Cannot happen while `self.done_tx` lives; ends the run rather than spin.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            self.flush_lock()?;
        }
    }

    /// True when nothing is running and nothing more may start: the run stopped launching
    /// (failure, Ctrl-C), or no stage is ready or pending.
    fn is_over(&self) -> bool {
        self.running == 0
            && (self.stop_launching || (!self.queue.has_ready() && self.pending.is_empty()))
    }

    /// Step 1, Ctrl-C: the first one stops new launches and asks every running stage to stop;
    /// after [`GRACE`], or at once on a second Ctrl-C, the stages are killed.
    fn check_interrupt(&mut self) {
        if process::interrupted() && self.interrupt_at.is_none() {
            self.interrupt_at = Some(Instant::now());
            self.stop_launching = true;
            self.report.interrupted = true;
            self.shared.backend.interrupt();
        }
        if let Some(t) = self.interrupt_at {
            if !self.killed && (t.elapsed() > GRACE || process::urgent()) {
                self.killed = true;
                self.shared.backend.kill();
            }
        }
    }

    /// Step 2: checks ready stages in pipeline order. Fresh ones complete at once and may make
    /// more ready; stale ones wait in `pending`, which is kept short: checking every ready
    /// stage up front held a job per stage in memory (hundreds of MB at 100,000 stages).
    fn check_ready(&mut self) {
        while !self.stop_launching && self.pending.len() < LOOKAHEAD {
            let Some(id) = self.queue.dequeue() else {
                break;
            };
            let verdict = self.decide(id);
            self.settle(id, verdict);
        }
    }

    /// Whether the dequeued stage `id` is skipped, fresh, frozen, broken, would run (dry run),
    /// or must be restored or run. Reads the lock, the hash cache and the run cache; changes
    /// nothing.
    fn decide(&self, id: StageId) -> Verdict {
        let (dag, opts) = (self.dag, self.opts);
        let stage = &dag.stages[id];
        if let Some(upstream) = self.queue.blame(id) {
            return Verdict::Skip { upstream };
        }
        let upstream_change: Vec<DirtyReason> = dag.upstream[id]
            .iter()
            .filter(|u| self.would_change.contains(u))
            .map(|&u| DirtyReason::UpstreamStale {
                stage: dag.stages[u].name.clone(),
            })
            .collect();
        let check = freshness::check(
            stage,
            &self.dag.env,
            self.lock.stages.get(&stage.name),
            self.root,
            &self.hasher,
            opts.force.contains(&id),
        );
        let check = match check {
            Ok(c) => c,
            // A dry run cannot hash what an upstream stage has not made yet: it would run.
            Err(_) if opts.dry_run && !upstream_change.is_empty() => {
                return Verdict::WouldRun {
                    reasons: upstream_change,
                    restore: false,
                }
            }
            Err(e) => {
                return Verdict::Broken {
                    error: e.to_string(),
                }
            }
        };
        let reasons = match check.state {
            State::Frozen => return Verdict::Frozen,
            State::Fresh if upstream_change.is_empty() => return Verdict::Fresh,
            State::Fresh => upstream_change,
            State::Stale(mut r) => {
                r.extend(upstream_change);
                r
            }
        };
        let restore = self.run_cache_hit(id, &check.fingerprint);
        if opts.dry_run {
            return Verdict::WouldRun {
                reasons,
                restore: restore.is_some(),
            };
        }
        Verdict::Stale(Box::new(Job {
            stage: stage.clone(),
            inputs: check.inputs,
            fingerprint: check.fingerprint,
            reasons,
            grant: Default::default(),
            mode: match restore {
                Some(entry) => Mode::Restore(Box::new(entry)),
                None => Mode::Run,
            },
        }))
    }

    /// The run-cache entry that restores the stale stage `id` (whose fingerprint is
    /// `fingerprint`) instead of running it, if there is one and it may be used.
    fn run_cache_hit(&self, id: StageId, fingerprint: &str) -> Option<LockEntry> {
        let (dag, opts) = (self.dag, self.opts);
        // In a dry run, a stage downstream of one that would change is checked against its
        // upstream's outputs as they are now, not as they will be: a run-cache entry for that
        // fingerprint says nothing about what the real run will find, which runs it (or
        // restores it) with other inputs. So it "would run", never "restore".
        let unknowable = opts.dry_run
            && dag.upstream[id]
                .iter()
                .any(|u| self.would_change.contains(u));
        if opts.run_cache
            && job::cacheable(&dag.stages[id])
            && !opts.force.contains(&id)
            && !unknowable
        {
            cached_entry(&self.store, fingerprint).or_else(|| self.pull_entry(fingerprint))
        } else {
            None
        }
    }

    /// With `--pull`: the remote's run for `fingerprint`, pulled into the local store (its
    /// objects verified), as a run-cache entry. A remote that fails is warned about once and not
    /// asked again in this run: the stages then run here, which is slower but not wrong. A dry
    /// run asks nothing.
    fn pull_entry(&self, fingerprint: &str) -> Option<LockEntry> {
        let remote = self.opts.pull.as_ref()?;
        if self.opts.dry_run || self.pull_broken.get() {
            return None;
        }
        match remote.fetch_run(&self.store, fingerprint, &self.events) {
            Ok(Some(_)) => cached_entry(&self.store, fingerprint),
            Ok(None) => None,
            Err(e) => {
                self.pull_broken.set(true);
                emit(
                    &self.events,
                    Event::Warning {
                        message: format!(
                            "--pull: {e}; nothing more is pulled in this run, the stale stages run here"
                        ),
                    },
                );
                None
            }
        }
    }

    /// Acts on a verdict: reports it and finishes the stage, or (stale) queues its job for
    /// [`Scheduler::launch_pending`].
    fn settle(&mut self, id: StageId, verdict: Verdict) {
        let dag = self.dag;
        let name = dag.stages[id].name.clone();
        match verdict {
            Verdict::Skip { upstream } => {
                emit(
                    &self.events,
                    Event::Skipped {
                        stage: name,
                        upstream: dag.stages[upstream].name.clone(),
                    },
                );
                self.queue.finish(id, Outcome::Skipped);
            }
            Verdict::Broken { error } => {
                emit(
                    &self.events,
                    Event::Failed {
                        stage: name.clone(),
                        error,
                        log: None,
                    },
                );
                self.record_failure(id, name);
            }
            Verdict::Frozen => {
                emit(&self.events, Event::Frozen { stage: name });
                self.queue.finish(id, Outcome::Done);
            }
            Verdict::Fresh => {
                emit(&self.events, Event::Fresh { stage: name });
                self.queue.finish(id, Outcome::Done);
            }
            Verdict::WouldRun { reasons, restore } => {
                emit(
                    &self.events,
                    Event::WouldRun {
                        stage: name,
                        reasons,
                        restore,
                    },
                );
                self.would_change.insert(id);
                self.queue.finish(id, Outcome::Done);
            }
            Verdict::Stale(job) => {
                self.pending.insert(self.position(id), *job);
            }
        }
    }

    /// Step 3: launches pending jobs, in pipeline order, while tokens last. Stops as soon as
    /// the pool is full: scanning every pending job after each completion made a run of many
    /// independent stages quadratic. A job short of cpus or memory sets them aside, so no later
    /// job takes them and it starts once they are free ([`resources::Reserved`]); a job whose
    /// GPU is taken is passed over, not waited for.
    fn launch_pending(&mut self) {
        if self.stop_launching {
            return;
        }
        let mut next = 0;
        let mut reserved = resources::Reserved::default();
        while !self.pool.is_full_after(&reserved) {
            let Some((&pos, job)) = self.pending.range(next..).next() else {
                break;
            };
            next = pos + 1;
            let id = self.order[pos];
            // A restore only copies from the store; a cluster grants resources itself.
            let wanted = if self.cluster || matches!(job.mode, Mode::Restore(_)) {
                crate::spec::Resources::default()
            } else {
                self.dag.stages[id].resources
            };
            let Some(grant) = self.pool.try_take_after(&wanted, &mut reserved) else {
                continue;
            };
            let mut job = self.pending.remove(&pos).expect("just found");
            job.grant = grant;
            self.launch(id, job);
        }
    }

    /// Hands `job`, which holds its grant, to a worker thread.
    fn launch(&mut self, id: StageId, job: Job) {
        self.running += 1;
        if let Mode::Run = &job.mode {
            emit(
                &self.events,
                Event::Started {
                    stage: job.stage.name.clone(),
                    reasons: job.reasons.clone(),
                    gpus: job.grant.gpus.clone(),
                },
            );
        }
        let shared = Arc::clone(&self.shared);
        let done = self.done_tx.clone();
        let events = self.events.clone();
        std::thread::spawn(move || {
            let (end, record) = job::run(&shared, &job, &events);
            let _ = done.send(Completion {
                id,
                job,
                end,
                record,
            });
        });
    }

    /// Step 4: a worker is done. Returns its tokens, writes its run record, reports, records a
    /// success in the lock (in memory and in the journal) and releases the stage's dependents.
    fn on_completion(&mut self, done: Completion) {
        let Completion {
            id,
            job,
            end,
            record,
        } = done;
        self.running -= 1;
        let name = job.stage.name.clone();
        self.pool.release(job.grant.clone());
        if let Err(e) = self.shared.run.write(&record) {
            emit(
                &self.events,
                Event::Warning {
                    message: format!("cannot write the run record of `{name}`: {e}"),
                },
            );
        }
        match end {
            JobEnd::Done { entry, restored } => {
                if restored {
                    emit(
                        &self.events,
                        Event::Restored {
                            stage: name.clone(),
                            reasons: job.reasons.clone(),
                            deterministic: entry.deterministic,
                        },
                    );
                } else {
                    emit(
                        &self.events,
                        Event::Finished {
                            stage: name.clone(),
                            elapsed: Duration::from_secs_f64(record.wall_seconds),
                        },
                    );
                    self.report.ran.push(name.clone());
                }
                self.record_entry(name, *entry);
                self.queue.finish(id, Outcome::Done);
            }
            JobEnd::Failed { error } => {
                let log = record.log.as_ref().map(Into::into);
                emit(
                    &self.events,
                    Event::Failed {
                        stage: name.clone(),
                        error,
                        log,
                    },
                );
                self.record_failure(id, name);
            }
            JobEnd::Interrupted => {
                emit(&self.events, Event::Interrupted { stage: name });
                self.queue.finish(id, Outcome::Interrupted);
            }
        }
    }

    /// A stage's new lock entry: appended to the journal (flushed by
    /// [`Scheduler::flush_lock`]) and kept for `repro.lock`.
    fn record_entry(&mut self, name: String, entry: LockEntry) {
        if let Some(j) = self.journal.as_mut() {
            j.append(&name, &entry);
        }
        self.lock.stages.insert(name, entry);
        self.lock_dirty = true;
    }

    /// A stage failed (or could not be checked): its dependents will be skipped, and without
    /// `--keep-going` nothing new starts.
    fn record_failure(&mut self, id: StageId, name: String) {
        self.report.failed.push(name);
        self.queue.finish(id, Outcome::Failed);
        if !self.opts.keep_going {
            self.stop_launching = true;
        }
    }

    /// Step 5: writes the journal's new entries to disk, unless the last flush was less than
    /// [`LOCK_FLUSH_INTERVAL`] ago.
    fn flush_lock(&mut self) -> Result<(), ExecError> {
        if let Some(j) = self.journal.as_mut() {
            if j.is_dirty() && self.last_flush.elapsed() >= LOCK_FLUSH_INTERVAL {
                j.flush()?;
                self.last_flush = Instant::now();
            }
        }
        Ok(())
    }

    /// Ends the run: accounts for the stages that never started, prunes and writes
    /// `repro.lock`, saves the hash cache and removes the run's staging directory.
    pub fn wrap_up(mut self) -> Result<Report, ExecError> {
        if !self.report.failed.is_empty() && !self.report.interrupted {
            self.report_not_started();
        }
        if self.opts.prune_lock
            && !self.opts.dry_run
            && self.report.failed.is_empty()
            && !self.report.interrupted
        {
            let before = self.lock.stages.len();
            let dag = self.dag;
            self.lock.stages.retain(|name, _| dag.id(name).is_some());
            self.lock_dirty |= self.lock.stages.len() != before;
        }
        if let Some(j) = self.journal.take() {
            j.finish(self.root, self.lock_dirty.then_some(&self.lock))?;
        }
        self.hasher.save()?;
        if !self.opts.dry_run {
            let _ = std::fs::remove_dir(self.shared.tmp_dir.join(&self.shared.run.id));
        }
        Ok(self.report)
    }

    /// Without `--keep-going` a failure stops new launches: says which selected stages did not
    /// start (skipped below a failed or skipped stage, else not started because of the first
    /// failure), so the summary accounts for every stage of the run.
    fn report_not_started(&mut self) {
        let dag = self.dag;
        for &id in self.order {
            if self.queue.is_finished(id) {
                continue;
            }
            let name = dag.stages[id].name.clone();
            let event = match self.queue.blame(id) {
                Some(up) => Event::Skipped {
                    stage: name,
                    upstream: dag.stages[up].name.clone(),
                },
                None => Event::NotStarted {
                    stage: name,
                    failed: self.report.failed[0].clone(),
                },
            };
            emit(&self.events, event);
            self.queue.cancel(id);
        }
    }

    /// The place of `id` in `order`.
    fn position(&self, id: StageId) -> usize {
        self.queue.priority(id)
    }
}

/// The resource pool: `-j` job slots, and this machine's cpus and memory and the GPU ids to hand
/// out, unless a cluster grants those itself (then only the number in flight is bounded).
fn pool_for(opts: &Options, cluster: bool) -> Pool {
    if cluster {
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
    }
}

/// The selected stages (`order`), each waiting for its selected upstream stages.
fn queue_of(dag: &Dag, order: &[StageId]) -> DependencyQueue {
    let selected: HashSet<StageId> = order.iter().copied().collect();
    let mut queue = DependencyQueue::new(dag.stages.len());
    for &id in order {
        let deps = dag.upstream[id].iter().copied();
        queue.enqueue(id, deps.filter(|u| selected.contains(u)));
    }
    queue
}

/// Refuses, before anything runs, a stage that asks for more GPUs than the pool holds (a frozen
/// stage never runs, so it asks for nothing).
fn refuse_unmeetable_gpus(dag: &Dag, order: &[StageId], pool: &Pool) -> Result<(), ExecError> {
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
    Ok(())
}

/// The run-cache entry for `fingerprint`, if it exists and every object it names is stored.
fn cached_entry(store: &Store, fingerprint: &str) -> Option<LockEntry> {
    let value = store.run_get(fingerprint).ok()??;
    let entry: LockEntry = serde_json::from_value(value).ok()?;
    if entry.fingerprint != fingerprint {
        return None;
    }
    entry
        .outputs
        .values()
        .all(|d| store.contains(&d.into()))
        .then_some(entry)
}
