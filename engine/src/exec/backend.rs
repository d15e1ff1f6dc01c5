//! Where a stage's processes run: the seam between the scheduler and an executor.
//!
//! The scheduler, the staging views, the cache and the lock are the same for every executor;
//! a [`Backend`] only decides *where* the stage's command lines run and reports how they ended.
//! [`Local`] runs them as child processes of `repro`; a cluster backend submits them as jobs on a
//! shared filesystem. A backend runs one stage's invocations in order, stopping at the first
//! failure, with the given working directory, environment and log file, and forwards the
//! stage's progress reports.

use std::path::{Path, PathBuf};

use super::process::{self, Exit, Running};
use super::resources::Grant;
use crate::progress::Progress;
use crate::spec::Resources;

/// One stage ready to run in its staging view.
pub struct Launch<'a> {
    pub stage: &'a str,
    /// Program and arguments of each command line, run in order.
    pub invocations: Vec<(PathBuf, Vec<String>)>,
    pub cwd: &'a Path,
    /// The root of the stage's staging view (`cwd` is it, or its `wdir` inside it). A backend
    /// may keep its own files for the job here; they are never outs.
    pub staging_dir: &'a Path,
    pub env: Vec<(String, String)>,
    pub log_path: &'a Path,
    pub grant: &'a Grant,
    /// What the stage declared; a backend that schedules resources itself maps it to its own
    /// requests.
    pub resources: Resources,
}

/// Receives a stage's progress reports (from any thread).
pub type ProgressFn = std::sync::Arc<dyn Fn(Progress) + Send + Sync + 'static>;

/// An executor of stage processes.
pub trait Backend: Send + Sync {
    /// Runs the invocations in order and returns how the last one that ran ended (its wall
    /// time and peak RSS accumulated over all of them).
    fn run(&self, launch: Launch<'_>, on_progress: ProgressFn) -> std::io::Result<Exit>;
    /// Ctrl-C arrived: ask every running stage to stop.
    fn interrupt(&self);
    /// The grace period is over: stop every running stage now.
    fn kill(&self);
    /// A short name for messages (`local`, `slurm`).
    fn name(&self) -> &'static str;
    /// True when the backend's own scheduler grants cpus, memory and GPUs (a cluster): the
    /// scheduler then bounds only how many stages are in flight, hands out no GPU ids, and
    /// leaves a request larger than this machine to the backend to accept or refuse.
    fn schedules_resources(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs stages as child processes of this `repro`, each under a supervisor
/// ([`super::supervise`]).
pub struct Local {
    running: Running,
    /// The `repro` binary that runs the supervisor.
    exe: PathBuf,
}

impl Local {
    /// A local backend whose supervisors are run by `exe` (this very binary).
    pub fn new(exe: PathBuf) -> Local {
        Local {
            running: Running::default(),
            exe,
        }
    }
}

impl Backend for Local {
    fn run(&self, launch: Launch<'_>, on_progress: ProgressFn) -> std::io::Result<Exit> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log_path)?;
        let mut total = Exit::default();
        for (program, args) in launch.invocations {
            let spec = process::Spec {
                stage: launch.stage,
                supervisor: &self.exe,
                program: &program,
                args,
                cwd: launch.cwd,
                env: launch.env.clone(),
                log: &log,
            };
            let forward = std::sync::Arc::clone(&on_progress);
            let exit = process::run(spec, &self.running, move |p| forward(p))?;
            total.wall += exit.wall;
            total.peak_rss_kib = total.peak_rss_kib.max(exit.peak_rss_kib);
            total.code = exit.code;
            total.signal = exit.signal;
            if !exit.success() || process::interrupted() {
                break;
            }
        }
        Ok(total)
    }

    fn interrupt(&self) {
        self.running.interrupt_all();
    }

    fn kill(&self) {
        self.running.kill_all();
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
