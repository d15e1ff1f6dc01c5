//! Running one stage process: under a supervisor, with a progress pipe, rusage, and signals.
//!
//! Each stage process runs under the stage supervisor ([`super::supervise`], `repro
//! __supervise -- PROGRAM ARGS`), started in a new process group, so that a terminal's Ctrl-C
//! reaches only `repro`, which then decides:
//! - the first SIGINT or SIGTERM: forward SIGINT to every running stage (the supervisor passes
//!   it on to the stage's own group), wait for them, record them as interrupted;
//! - the second: kill every running stage at once ([`super::supervise::KILL_NOW`]) and still
//!   record them, then exit 130;
//! - the third: exit 130 at once. The supervisors, tied to `repro`'s death by
//!   `PR_SET_PDEATHSIG`, kill their stages then, as they do after a `kill -9` of `repro`.
//!
//! So no process of a stage outlives `repro`, nor its own stage: whatever the command leaves
//! running when it exits is killed by its supervisor.
//!
//! Progress travels on fd 3 by the [`crate::progress`] protocol; stdout and stderr both go to
//! the stage's log file.
//!
//! The exit status and the peak RSS come from `wait4`, which std's `Child::wait` does not expose.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::supervise;
use crate::progress::{self, Progress};

/// How many SIGINT/SIGTERM arrived.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// True once SIGINT or SIGTERM arrived; checked by the scheduler and by waiting workers.
pub fn interrupted() -> bool {
    SIGNALS.load(Ordering::SeqCst) >= 1
}

/// True once a second SIGINT/SIGTERM arrived: stop the stages now, without a grace period.
pub fn urgent() -> bool {
    SIGNALS.load(Ordering::SeqCst) >= 2
}

/// Installs the handlers: the first SIGINT/SIGTERM sets [`interrupted`] (the scheduler forwards
/// it to the stages and shuts down cleanly), the second [`urgent`] (the scheduler kills the
/// stages and records them), a third ends `repro` at once.
pub fn install_signal_handlers() -> std::io::Result<()> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls `_exit`, both async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, || {
                if SIGNALS.fetch_add(1, Ordering::SeqCst) + 1 >= 3 {
                    signal_hook::low_level::exit(crate::exit_code::INTERRUPTED);
                }
            })?;
        }
    }
    Ok(())
}

/// The process groups of running stages, so the scheduler can signal them.
#[derive(Clone, Default)]
pub struct Running {
    groups: Arc<Mutex<HashMap<String, i32>>>,
}

impl Running {
    fn insert(&self, stage: &str, pgid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stage.to_string(), pgid);
    }
    fn remove(&self, stage: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stage);
    }
    /// Asks every running stage to stop: SIGINT, which each supervisor forwards to its stage.
    pub fn interrupt_all(&self) {
        self.signal_all(libc::SIGINT);
    }
    /// Kills every running stage and everything it started, now.
    pub fn kill_all(&self) {
        self.signal_all(supervise::KILL_NOW);
    }
    /// Sends `signal` to every running stage's supervisor (alone in its process group).
    fn signal_all(&self, signal: i32) {
        for &pgid in self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            // SAFETY: plain syscall; a group that is already gone yields ESRCH, which is fine.
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
    }
}

/// How a stage process ended.
#[derive(Clone, Debug, Default)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub peak_rss_kib: u64,
    pub wall: Duration,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "exit code 3" / "killed by signal 9".
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "ended in an unknown way".into(),
        }
    }
}

/// A command ready to run as a stage process.
pub struct Spec<'a> {
    pub stage: &'a str,
    /// The `repro` binary, which runs the supervisor.
    pub supervisor: &'a Path,
    pub program: &'a Path,
    pub args: Vec<String>,
    pub cwd: &'a Path,
    pub env: Vec<(String, String)>,
    pub log: &'a File,
}

/// Runs the process to completion; `on_progress` is called from a reader thread.
pub fn run(
    spec: Spec<'_>,
    running: &Running,
    on_progress: impl Fn(Progress) + Send + 'static,
) -> std::io::Result<Exit> {
    let (read_fd, write_fd) = pipe()?;
    let mut cmd = Command::new(spec.supervisor);
    // No `pre_exec`: std then starts the supervisor with posix_spawn (vfork-like), whose cost
    // does not grow with repro's memory, as a fork's page-table copy does on a long run. The
    // progress pipe travels as the supervisor's stdin; it moves it to fd 3 for the stage.
    cmd.arg(supervise::SUBCOMMAND)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(spec.program)
        .args(&spec.args)
        .current_dir(spec.cwd)
        .process_group(0)
        .stdin(Stdio::from(write_fd))
        .stdout(Stdio::from(spec.log.try_clone()?))
        .stderr(Stdio::from(spec.log.try_clone()?))
        .env(progress::FD_ENV, progress::FD.to_string())
        .env("REPRO_STAGE", spec.stage);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd.spawn()?;
    // `cmd` still holds the pipe's write end: drop it, or the reader never sees EOF.
    drop(cmd);
    let pid = child.id() as i32;
    running.insert(spec.stage, pid);

    let reader = std::thread::spawn(move || {
        let file = File::from(read_fd);
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            if let Some(p) = Progress::parse(&line) {
                on_progress(p);
            }
        }
    });

    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value for the out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        // SAFETY: waiting for our own child; status and usage are valid out-pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break rc;
    };
    running.remove(spec.stage);
    let wall = started.elapsed();
    // Descendants may still hold the pipe; never let them block the scheduler.
    let _ = reader_join_with_timeout(reader, Duration::from_secs(2));
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Ok(Exit {
        code,
        signal,
        peak_rss_kib: usage.ru_maxrss.max(0) as u64,
        wall,
    })
}

fn reader_join_with_timeout(handle: std::thread::JoinHandle<()>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = handle.join();
    true
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these two fresh descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
