//! The contract between the engine and a builtin stage kind.
//!
//! A builtin is a plain function over a [`Context`]: it reads its params (the stage's `with:`
//! map, already interpolated by the engine), reads its deps and writes its outs through paths
//! relative to the current directory (the engine runs it inside the stage's staging directory),
//! and reports progress through [`Context::progress`]. It never prints to stdout for the user:
//! stdout and stderr go to the stage's log file.
//!
//! Progress travels on a dedicated pipe whose fd the engine names in `REPRO_PROGRESS_FD`, one
//! JSON object per line (`{"step":10,"total":100,"message":"..."}`), so progress never mixes with
//! the log. Without that variable (a builtin run by hand), progress goes to stderr as plain lines.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The environment variable that carries the progress pipe's file descriptor.
pub const PROGRESS_FD_ENV: &str = "REPRO_PROGRESS_FD";

/// One builtin stage kind.
pub struct Builtin {
    /// The name used in `pipeline.yaml` (`builtin: train-gan`).
    pub kind: &'static str,
    /// Enters the fingerprint: bump when results change meaning for the same params.
    pub version: u32,
    /// One line for `repro builtin --list`.
    pub summary: &'static str,
    /// Runs the stage inside its staging directory.
    pub run: fn(&Context) -> Result<(), StageError>,
}

/// Why a builtin stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The `with:` params do not fit the kind (unknown key, wrong type, bad value).
    #[error("invalid params for builtin `{kind}`: {message}")]
    Params { kind: String, message: String },
    /// A file could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Any failure of the domain code, with its own typed error as the source.
    #[error(transparent)]
    Domain(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StageError {
    /// Wraps a domain module's typed error.
    pub fn domain(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Domain(Box::new(err))
    }

    /// An I/O error with the path and what was being done to it.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io { action, path: path.into(), source }
    }

    /// Whether the error is the user's params rather than the stage's work (exit code 2, not 1).
    pub fn is_params(&self) -> bool {
        matches!(self, StageError::Params { .. })
    }
}

/// What a running builtin sees of the engine.
pub struct Context {
    kind: String,
    params: Map<String, Value>,
    progress: Mutex<Option<File>>,
}

impl Context {
    /// A context for `kind` with the given `with:` params. Progress goes to the pipe named by
    /// `REPRO_PROGRESS_FD` when the engine set one, else to stderr.
    pub fn new(kind: &str, params: Map<String, Value>) -> Self {
        let progress = std::env::var(PROGRESS_FD_ENV)
            .ok()
            .and_then(|fd| fd.parse::<i32>().ok())
            .filter(|fd| *fd > 2)
            .map(|fd| {
                use std::os::fd::FromRawFd;
                // SAFETY: the engine opened this fd for us and nothing else in the process owns it.
                unsafe { File::from_raw_fd(fd) }
            });
        Context { kind: kind.to_string(), params, progress: Mutex::new(progress) }
    }

    /// The builtin kind being run.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The raw `with:` map.
    pub fn raw_params(&self) -> &Map<String, Value> {
        &self.params
    }

    /// The `with:` map deserialized into the kind's own params type. Use
    /// `#[serde(deny_unknown_fields)]` on it so a misspelled key is an error naming the key.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, StageError> {
        serde_json::from_value(Value::Object(self.params.clone())).map_err(|e| StageError::Params {
            kind: self.kind.clone(),
            message: e.to_string(),
        })
    }

    /// Reports progress: `step` of `total` (0 when unknown), with a short message.
    pub fn progress(&self, step: u64, total: u64, message: &str) {
        let line = serde_json::json!({ "step": step, "total": total, "message": message });
        let mut guard = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            // A closed pipe (the engine went away) must not fail the stage.
            Some(pipe) => {
                let _ = writeln!(pipe, "{line}");
            }
            None => eprintln!("progress: {step}/{total} {message}"),
        }
    }
}
