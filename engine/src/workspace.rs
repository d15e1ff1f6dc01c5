//! The workspace: its root, the `.repro/` state directory, and the project lock.
//!
//! ```text
//! pipeline.yaml
//! repro.lock                 committed: what each stage last ran with and produced
//! .repro/lock                the project lock (flock) + who holds it
//! .repro/cache/v1/           content-addressed store and run cache (see `cache`)
//! .repro/state/              hash cache (see `hash`)
//! .repro/tmp/<run>/          staging directories of running stages
//! .repro/resume/<fp>/        persist outs of unfinished stage runs (see `exec::resume`)
//! .repro/runs/<run>/         one record + log per stage run
//! .repro/.gitignore          `*`: keeps all of `.repro/` out of git
//! ```
//!
//! `.repro/` is machine-local state (gigabytes of cache, logs, a lock): committing it by
//! mistake is easy after `git add .`, and undoing it costs a history rewrite. So the directory
//! carries its own `.gitignore` holding `*`, written by every command that creates or writes
//! state ([`Workspace::prepare_state_dir`]). That works without `repro init`, in a project that
//! is not yet (or never) a git repository, without editing the user's own `.gitignore`, and it
//! moves with the directory; `*` also matches the `.gitignore` itself, so `git status` shows
//! nothing of `.repro/` at all. (pytest's `.pytest_cache/` and DVC's `.dvc/tmp` do the same.)
//!
//! The project lock is an advisory `flock` on `.repro/lock`, held for the whole command by
//! every command that writes (`all`, `run`, `gc`, `verify`). The kernel releases it when the
//! process dies, however it dies, so there is never a stale lock to delete by hand (the DVC and
//! Snakemake complaint). The file's content names the holder (pid, host, command) so a second
//! `repro` can say whom it waits for. The descriptor is close-on-exec, so stage processes never
//! inherit (and never extend) the lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default pipeline file name.
pub const PIPELINE_FILE: &str = "pipeline.yaml";

/// The content of `.repro/.gitignore`.
pub const STATE_GITIGNORE: &str =
    "# Written by repro: .repro/ is this machine's cache, logs and lock, never committed.\n*\n";

/// Errors locating or locking the workspace.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("no `{PIPELINE_FILE}` in `{start}` or any parent directory; run repro inside a project or pass `--file`")]
    NotFound { start: PathBuf },
    #[error("the project is locked by {holder}; wait for it, or run without `--no-wait` to wait")]
    Busy { holder: Holder },
    #[error(transparent)]
    Io(#[from] crate::fsutil::FsError),
}

/// Who holds the project lock (written into `.repro/lock`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub cmd: String,
    pub started: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == 0 {
            write!(f, "another repro process")
        } else {
            write!(
                f,
                "pid {} on `{}` (`{}`, since {})",
                self.pid, self.host, self.cmd, self.started
            )
        }
    }
}

/// A located workspace.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub root: PathBuf,
    pub pipeline_file: PathBuf,
}

impl Workspace {
    /// Finds the workspace: `file` when given (its directory is the root), else the nearest
    /// `pipeline.yaml` from `start` upwards.
    pub fn locate(start: &Path, file: Option<&Path>) -> Result<Workspace, WorkspaceError> {
        if let Some(file) = file {
            let file = if file.is_absolute() {
                file.to_path_buf()
            } else {
                start.join(file)
            };
            if !file.is_file() {
                return Err(WorkspaceError::NotFound { start: file });
            }
            let root = file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| start.to_path_buf());
            return Ok(Workspace {
                root,
                pipeline_file: file,
            });
        }
        let mut dir = start.to_path_buf();
        loop {
            let candidate = dir.join(PIPELINE_FILE);
            if candidate.is_file() {
                return Ok(Workspace {
                    root: dir,
                    pipeline_file: candidate,
                });
            }
            if !dir.pop() {
                return Err(WorkspaceError::NotFound {
                    start: start.to_path_buf(),
                });
            }
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".repro")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.state_dir().join("cache")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.state_dir().join("tmp")
    }
    pub fn resume_dir(&self) -> PathBuf {
        self.state_dir().join("resume")
    }
    pub fn runs_dir(&self) -> PathBuf {
        self.state_dir().join("runs")
    }
    pub fn hash_state_dir(&self) -> PathBuf {
        self.state_dir().join("state")
    }

    /// Creates `.repro/` if needed, with the `.gitignore` that keeps it out of git (see the
    /// module doc); an existing `.gitignore` there is left as it is.
    pub fn prepare_state_dir(&self) -> Result<PathBuf, WorkspaceError> {
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).map_err(crate::fsutil::fs_err("create", &dir))?;
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            crate::fsutil::write_atomic(&ignore, STATE_GITIGNORE.as_bytes())
                .map_err(crate::fsutil::fs_err("write", &ignore))?;
        }
        Ok(dir)
    }

    /// Takes the project lock. When another process holds it: with `wait`, calls `on_wait` with
    /// the holder once and blocks until the lock is free; without, returns [`WorkspaceError::Busy`].
    pub fn lock(
        &self,
        wait: bool,
        on_wait: &dyn Fn(&Holder),
    ) -> Result<ProjectLock, WorkspaceError> {
        let dir = self.prepare_state_dir()?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(crate::fsutil::fs_err("open", &path))?;
        if !try_flock(&file, false) {
            let holder = read_holder(&mut file);
            if !wait {
                return Err(WorkspaceError::Busy { holder });
            }
            on_wait(&holder);
            if !try_flock(&file, true) {
                let source = std::io::Error::last_os_error();
                return Err(WorkspaceError::Io(crate::fsutil::FsError::new(
                    "lock", path, source,
                )));
            }
        }
        let holder = Holder {
            pid: std::process::id(),
            host: hostname(),
            cmd: std::env::args().collect::<Vec<_>>().join(" "),
            started: crate::runrecord::now_rfc3339(),
        };
        let text = serde_json::to_string(&holder).expect("holder serializes");
        // Best effort: the lock itself is the flock; the text only improves the message.
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()));
        Ok(ProjectLock { _file: file })
    }
}

/// Held while a writing command runs; dropping it (or dying) releases the lock.
pub struct ProjectLock {
    _file: File,
}

fn try_flock(file: &File, block: bool) -> bool {
    let op = if block {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return true;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text));
    serde_json::from_str(&text).unwrap_or_default()
}

/// The host name, for lock messages and run records (never for fingerprints).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
