//! The seam between the executor and the user interface.
//!
//! Workers never print. Everything the executor has to say travels as an [`Event`] over a channel
//! to one reporter (see `reporter`), which decides how to show it: progress bars on a terminal,
//! plain lines in a log, JSON lines for machines. A new kind of output is a new variant here, never
//! a `println!` in the executor.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::fingerprint::DirtyReason;

/// Something that happened to the pipeline or to one stage.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The run considers `stages` stages.
    Plan { stages: usize },
    /// Another repro holds the project lock; this one waits.
    WaitingForLock { holder: String },
    /// Inputs and outs match `repro.lock`; nothing to do.
    Fresh { stage: String },
    /// `frozen: true`: never run, whatever changed.
    Frozen { stage: String },
    /// The stage is about to run, and why.
    Started {
        stage: String,
        reasons: Vec<DirtyReason>,
        gpus: Vec<u32>,
    },
    /// The stage reported progress (`step` of `total`, 0 when unknown).
    Progress {
        stage: String,
        step: u64,
        total: u64,
        message: String,
    },
    /// Outputs restored from the run cache instead of running.
    Restored {
        stage: String,
        reasons: Vec<DirtyReason>,
        deterministic: bool,
    },
    /// The stage ran and its outs were published.
    Finished {
        stage: String,
        #[serde(serialize_with = "secs")]
        elapsed: Duration,
    },
    /// The stage failed; its previous outputs and lock entry are untouched.
    Failed {
        stage: String,
        error: String,
        log: Option<PathBuf>,
    },
    /// Not run because an upstream stage failed.
    Skipped { stage: String, upstream: String },
    /// Not started because a stage it does not depend on (`failed`) failed first and the run
    /// stopped launching (no `--keep-going`).
    NotStarted { stage: String, failed: String },
    /// Stopped by Ctrl-C.
    Interrupted { stage: String },
    /// `--dry-run`: the stage would run (or be restored), and why.
    WouldRun {
        stage: String,
        reasons: Vec<DirtyReason>,
        restore: bool,
    },
    /// Inputs are being hashed for the first time (or after they changed): `bytes` so far.
    Hashing {
        bytes: u64,
        #[serde(serialize_with = "secs")]
        elapsed: Duration,
        done: bool,
    },
    /// Objects moving to or from a remote: `objects` of `total` handled so far (copied or found
    /// already there), `bytes` copied.
    Transfer {
        remote: String,
        direction: Direction,
        objects: u64,
        total: u64,
        bytes: u64,
        done: bool,
    },
    /// A warning that does not stop the run.
    Warning { message: String },
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Push,
    Pull,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Where workers send events.
pub type Sender = std::sync::mpsc::Sender<Event>;

/// Sends `event` to the reporter: the one way the executor reports. A reporter that has gone
/// away (its thread ended) is not the run's problem: the event is dropped and the run goes on.
pub fn emit(to: &Sender, event: Event) {
    let _ = to.send(event);
}
