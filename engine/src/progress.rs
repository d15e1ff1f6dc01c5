//! The progress protocol: how any stage, shell command or builtin, says how far it got.
//!
//! The engine opens a pipe for each stage process and names its file descriptor in
//! `REPRO_PROGRESS_FD` (3 for every local and SLURM stage). A stage writes one JSON object per
//! line, `{"step": 10, "total": 100, "message": "..."}` (every field optional; `total` 0 means
//! unknown), so progress never mixes with the log: `echo '{"step":1,"total":4}' >&3` from a
//! shell command, [`crate::builtin::Context::progress`] from a builtin. Lines that do not parse
//! are ignored. The engine reads them into [`Progress`] events; one reporter shows them.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

/// The environment variable that carries the progress pipe's file descriptor.
pub const FD_ENV: &str = "REPRO_PROGRESS_FD";

/// The descriptor the engine gives every stage process.
pub const FD: i32 = 3;

/// One progress report: a line of the pipe.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    #[serde(default)]
    pub step: u64,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub message: String,
}

impl Progress {
    /// Reads one line of the pipe; `None` for anything that is not a progress object.
    pub fn parse(line: &str) -> Option<Progress> {
        serde_json::from_str(line.trim()).ok()
    }
}

/// The writing end, as a stage sees it: the pipe named by [`FD_ENV`] when the engine set one,
/// else stderr as plain lines (a builtin run by hand).
pub struct ProgressPipe {
    pipe: Mutex<Option<File>>,
}

impl ProgressPipe {
    /// The pipe of this process's environment.
    pub fn from_env() -> Self {
        let pipe = std::env::var(FD_ENV)
            .ok()
            .and_then(|fd| fd.parse::<i32>().ok())
            .filter(|fd| *fd > 2)
            .map(|fd| {
                use std::os::fd::FromRawFd;
                // SAFETY: the engine opened this fd for us and nothing else in the process owns it.
                unsafe { File::from_raw_fd(fd) }
            });
        ProgressPipe {
            pipe: Mutex::new(pipe),
        }
    }

    /// Sends one report. A closed pipe (the engine went away) must not fail the stage.
    pub fn send(&self, step: u64, total: u64, message: &str) {
        let line = Progress {
            step,
            total,
            message: message.to_string(),
        };
        let mut guard = self.pipe.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(pipe) => {
                if let Ok(text) = serde_json::to_string(&line) {
                    let _ = writeln!(pipe, "{text}");
                }
            }
            None => eprintln!("progress: {step}/{total} {message}"),
        }
    }
}
