//! The stage supervisor: a small process between `repro` and a stage's command, so that no
//! process of a stage outlives the stage, nor `repro`.
//!
//! A process group alone cannot promise that. `PR_SET_PDEATHSIG` reaches only the direct child
//! (a shell that does not `exec` its last command leaves the real command running, reparented
//! to PID 1, when `repro` is killed), and a stage may start processes that leave its group
//! (`setsid`, daemons). So every local stage process runs as
//! `repro __supervise -- PROGRAM ARGS...`, and the supervisor:
//!
//! - becomes a *child subreaper* (`PR_SET_CHILD_SUBREAPER`): every orphaned descendant of the
//!   stage is reparented to it, not to PID 1, so it can always find them;
//! - starts the command in a process group of its own and forwards SIGINT, SIGTERM, SIGHUP and
//!   SIGQUIT to that group (repro signals the supervisor's group, which holds only the
//!   supervisor);
//! - on [`KILL_NOW`] kills everything at once. `repro` sends it when its grace period is over or
//!   on a second Ctrl-C, and the kernel sends it when `repro` dies, however it dies: the
//!   supervisor's first act is to block the signals it waits for and to set
//!   `PR_SET_PDEATHSIG = KILL_NOW`, then to check that `repro` is still its parent. A signal
//!   that arrives before that ends the supervisor by its default action, before the stage's
//!   command has started: nothing is left behind either way;
//! - when the command ends, kills whatever it left running (its group, then every remaining
//!   descendant, until none is left), says so on stderr (the stage's log), and exits the way
//!   the command did: the same exit code, or the same signal, so `repro` records the truth.
//!
//! `repro` starts the supervisor without a `pre_exec` hook, so std uses posix_spawn: its cost
//! does not grow with repro's memory (a fork copies the page tables of a process that, on a
//! 100,000-stage run, holds hundreds of MB). The progress pipe arrives as the supervisor's
//! stdin, and the supervisor moves it to fd 3 (and /dev/null to stdin) for the stage.
//!
//! The peak RSS that `repro` reads from `wait4` covers the supervisor's waited-for descendants,
//! so it still measures the stage. Everything here is plain syscalls on one thread: the
//! supervisor waits with `sigwaitinfo` on a blocked signal set, so no handler runs concurrently
//! with anything.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The hidden subcommand that runs the supervisor.
pub const SUBCOMMAND: &str = "__supervise";

/// Kill the stage and everything it started, now. Sent by `repro` (grace period over, second
/// Ctrl-C) and by the kernel when `repro` dies.
pub const KILL_NOW: libc::c_int = libc::SIGUSR1;

/// The signals the supervisor waits for (blocked from before its `exec` until it exits).
const WAITED: [libc::c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    KILL_NOW,
];

/// The supervisor's main: runs `command` (program and arguments) and returns only when it
/// cannot start it (exit code 127); otherwise exits the process as the command ended. `parent`
/// is the pid of the `repro` that started it: when it is already gone, the command never starts.
pub fn run(parent: i32, command: &[OsString]) -> i32 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("repro: {SUBCOMMAND} needs a command");
        return 127;
    };
    let set = signal_set(&WAITED);
    // SAFETY: plain syscalls on valid arguments.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_PDEATHSIG, KILL_NOW as libc::c_ulong);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong);
        // Checked after PDEATHSIG is set: a parent that died before would never send it.
        if libc::getppid() != parent {
            eprintln!("repro: the repro process that started this stage is gone; not starting it");
            return 137;
        }
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The progress pipe (our stdin) becomes the stage's fd 3; its stdin is /dev/null.
            if libc::dup2(0, crate::progress::FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            if null < 0 || libc::dup2(null, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if null != 0 {
                libc::close(null);
            }
            let empty = signal_set(&[]);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c.id() as i32,
        Err(e) => {
            eprintln!("repro: cannot start `{}`: {e}", program.to_string_lossy());
            return 127;
        }
    };

    let status = loop {
        match wait_signal(&set) {
            libc::SIGCHLD => {
                if let Some(status) = reap(child) {
                    break status;
                }
            }
            KILL_NOW => {
                // SAFETY: signalling our own child's group.
                unsafe { libc::killpg(child, libc::SIGKILL) };
            }
            sig => {
                // SAFETY: as above.
                unsafe { libc::killpg(child, sig) };
            }
        }
    };

    let left = kill_descendants(child);
    if left > 0 {
        eprintln!(
            "repro: the stage's command ended but left {left} process(es) running; killed them \
             (a stage must not outlive its command)"
        );
    }
    exit_like(status)
}

/// Reaps every child that has ended; returns the main command's wait status once it ended.
fn reap(main: i32) -> Option<libc::c_int> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == main && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
            found = Some(status);
        }
    }
}

/// Kills the main command's group and every remaining descendant (orphans are reparented to
/// this subreaper as their parents die) until no child is left; returns how many processes
/// were still running.
fn kill_descendants(group: i32) -> usize {
    let me = std::process::id() as i32;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let alive = descendants_of(me);
        // SAFETY: signalling the stage's own group (ESRCH when it is empty) and our own
        // descendants.
        unsafe { libc::killpg(group, libc::SIGKILL) };
        for &pid in &alive {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        seen.extend(alive);
        let mut status = 0;
        // SAFETY: valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // ECHILD: no child left, so no descendant either (a living descendant has a living
            // parent below us, or is our child).
            return seen.len();
        }
    }
}

/// The running (not zombie) processes below `root`, from one scan of `/proc`.
fn descendants_of(root: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if let Some((state, ppid)) = stat_field(pid) {
            if state != 'Z' && state != 'X' {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            found.push(c);
            queue.push(c);
        }
    }
    found
}

/// State and parent pid from `/proc/PID/stat` (`pid (comm) state ppid ...`; comm may hold
/// spaces and parentheses, so parse after the last `)`).
fn stat_field(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Waits for one of `set` (blocked) and returns its number.
fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    loop {
        // SAFETY: `set` is initialised; a null info pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig > 0 {
            return sig;
        }
    }
}

/// Ends this process the way the command ended: its exit code, or its signal.
fn exit_like(status: libc::c_int) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: plain syscalls; no core file for a signal the command already died of.
        unsafe {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let only = signal_set(&[sig]);
            libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(libc::WEXITSTATUS(status));
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before any use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}
