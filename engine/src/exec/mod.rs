//! Execution: runs the selected stages of a pipeline and records what they made.
//!
//! [`execute`] is the whole of it for a caller. Inside, each module decides one thing:
//!
//! | module                 | decides                                                                              |
//! |------------------------|--------------------------------------------------------------------------------------|
//! | `scheduler`            | the run: what is checked, launched and recorded, and when (cargo's job queue)        |
//! | `queue`                | when a stage may be looked at: once all its deps finished (cargo's dependency queue) |
//! | `prepare`              | what happens once before the first check: hash the sources, sweep leftover temps     |
//! | `job`                  | one stage on a worker: run or restore it, publish its outs, its new lock entry       |
//! | `staging`              | the view a stage runs in, and moving its outs into the workspace                     |
//! | `resources`            | the tokens (`-j`, cpus, memory, GPU ids) a stage needs to start                      |
//! | `backend`, `slurm`     | where stage processes run: child processes, or one SLURM job per stage               |
//! | `process`, `supervise` | child processes, Ctrl-C, and stages that must not outlive `repro`                    |
//!
//! What must never change silently is listed where it is decided: the order of events, the
//! lock and the failure policy in `scheduler`, the order of effects that keeps a killed stage
//! harmless in [`job`].

pub mod backend;
pub mod job;
mod prepare;
pub mod process;
pub mod queue;
pub mod resources;
pub mod resume;
mod scheduler;
pub mod slurm;
pub mod staging;
pub mod supervise;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::dag::{Dag, StageId};
use crate::events::Sender;
use crate::workspace::Workspace;

use scheduler::Scheduler;

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
    /// `--pull`: a stale stage that the local run cache cannot restore is fetched from this
    /// remote when it holds a run for the same fingerprint (the run cache, shared).
    pub pull: Option<Arc<crate::remote::Remote>>,
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

/// Runs `order` (topologically sorted stage ids) with `opts`, reporting to `events`.
pub fn execute(
    ws: &Workspace,
    dag: &Dag,
    order: &[StageId],
    opts: &Options,
    events: Sender,
) -> Result<Report, ExecError> {
    let mut scheduler = Scheduler::start(ws, dag, order, opts, events)?;
    scheduler.drain()?;
    scheduler.wrap_up()
}
