//! The SLURM backend: each stage that must run becomes one `sbatch` job on a shared filesystem.
//!
//! What stays in `repro` (the coordinator, on the login node): the DAG, freshness, the staging
//! views, hashing, the cache and `repro.lock`, exactly as with [`super::backend::Local`]. What
//! goes to SLURM: only the stage's command lines, wrapped in a generated script that runs them
//! in the staging view. So the staging, lock and cache guarantees are the local executor's: a
//! job writes only into its staging view, and nothing reaches the workspace before `repro` has
//! hashed and stored the outs.
//!
//! The truth about how a job ended is a file the job writes itself, not SLURM's accounting
//! (Nextflow's `.exitcode`; `sacct` needs slurmdbd, and `squeue` forgets a job after
//! `MinJobAge`). The wrapper keeps its files in `<staging>/.repro-slurm/`:
//! - `job.sh`: the wrapper itself (kept for debugging: `sbatch job.sh` reruns it by hand);
//! - `progress`: the stage's fd 3 (JSON progress lines), tailed here and forwarded to the
//!   reporter just as the local pipe is;
//! - `rusage`: one peak-RSS line (KiB) per command line, when GNU `time` is on the node;
//! - `record.json`: job id, host, the GPUs SLURM gave (`CUDA_VISIBLE_DEVICES`), start and end;
//! - `exitcode`: written last, by rename, so its presence means "finished".
//!
//! The stage's stdout and stderr go to the run's log (`.repro/runs/<run>/<stage>.log`), and the
//! wrapper appends one `repro: slurm job ...` line naming the job, host, GPUs and exit code, so
//! a failure message (which quotes the log's tail) names the job. SLURM's own output for the
//! job (`slurmstepd: error: ...`) goes to `<staging>/.repro-slurm/slurm-<id>.out`; when a job
//! fails, its last lines are copied into the stage's log too (a time limit is said there).
//!
//! One poller thread serves all jobs. Every [`TICK`] it reads the cheap local files (progress,
//! `exitcode`); only every so often it asks SLURM, with one batched `squeue -h -j id1,id2,...
//! -o '%i %T %r'` for all jobs in flight, backing off from [`POLL_MIN`] to [`POLL_MAX`] while
//! nothing changes (a busy cluster's controller is shared by everyone); an interrupt asks at
//! once. Each job's state and pending reason reach the reporter as progress messages
//! (`slurm job 12 pending (Resources)`). A job that SLURM no
//! longer lists as pending or running, yet has written no `exitcode` for `lost_grace` (time for
//! a shared filesystem to show the file), is reported as lost: failed, with its id, its last
//! state and the path of SLURM's output for it.
//!
//! Resources are SLURM's to grant ([`Backend::schedules_resources`]): `cpus` becomes
//! `--cpus-per-task`, `mem` `--mem` (MiB, rounded up), `gpus` `--gres=gpu:N`, and SLURM sets
//! `CUDA_VISIBLE_DEVICES`; the wrapper sets `REPRO_CPUS` (and `RAYON_NUM_THREADS` for builtins)
//! from `SLURM_CPUS_PER_TASK`. Partition, account, time limit and extra arguments come from the
//! configuration; extra arguments come last, so they can override anything above them. Where a
//! stage runs never enters its fingerprint.
//!
//! Ctrl-C: [`Backend::interrupt`] sends SIGINT to our running jobs (`scancel --full
//! --signal=INT`, the batch shell and everything it started) and cancels our pending ones;
//! [`Backend::kill`] cancels them all (`scancel`, SIGTERM then SIGKILL after SLURM's
//! `KillWait`) and stops waiting for them. Known limit: a second Ctrl-C (which ends `repro` at
//! once) or a `kill -9` of `repro` leaves its jobs in SLURM; they write only into a staging view
//! that the next run deletes, and their names (`repro:<stage>`) make them easy to find
//! (`squeue -n repro:train@sn`, `scancel -n ...`).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::backend::{Backend, Launch, ProgressFn};
use super::process::{self, Exit};
use crate::progress::{self, Progress};
use crate::spec::Resources;

/// How often the job files (progress, `exitcode`) are read.
pub const TICK: Duration = Duration::from_millis(200);
/// The shortest interval between two `squeue` calls (after a submission or a state change).
pub const POLL_MIN: Duration = Duration::from_millis(500);
/// The longest interval between two `squeue` calls while nothing changes.
pub const POLL_MAX: Duration = Duration::from_secs(15);
/// How much longer the next `squeue` waits when nothing changed.
const POLL_BACKOFF: f64 = 1.5;
/// The directory in the staging view that holds the wrapper's files.
pub const JOB_DIR: &str = ".repro-slurm";

/// Where and how jobs are submitted (`executor:` in `pipeline.yaml`, `--slurm-*` flags).
#[derive(Clone, Debug)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// `--time`, in any form sbatch accepts (`30`, `2:00:00`, `1-0`).
    pub time: Option<String>,
    /// Passed to sbatch as they are, after everything else.
    pub extra_args: Vec<String>,
    /// How long a job that left the queue may take to show its `exitcode` before it is lost.
    pub lost_grace: Duration,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            account: None,
            time: None,
            extra_args: Vec::new(),
            lost_grace: Duration::from_secs(30),
        }
    }
}

/// Errors of talking to SLURM.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `sbatch` ({0}); is the SLURM client installed and on PATH, and `SLURM_CONF` set?")]
    Spawn(std::io::Error),
    #[error("sbatch refused the job ({message}); check the stage's `resources` and the partition, account and `--slurm-arg` settings")]
    Refused { message: String },
    #[error("sbatch printed no job id (it said `{output}`); `--parsable` output was expected")]
    NoJobId { output: String },
}

/// Runs stages as SLURM batch jobs. Cheap to construct; the poller starts with the first job.
pub struct Slurm {
    config: SlurmConfig,
    shared: Arc<Tracker>,
    poller: OnceLock<()>,
}

impl Slurm {
    pub fn new(config: SlurmConfig) -> Slurm {
        Slurm {
            config,
            shared: Arc::new(Tracker::default()),
            poller: OnceLock::new(),
        }
    }

    fn start_poller(&self) {
        self.poller.get_or_init(|| {
            let shared = Arc::clone(&self.shared);
            let grace = self.config.lost_grace;
            std::thread::spawn(move || poll_loop(&shared, grace));
        });
    }
}

/// The jobs in flight, shared by the workers (which submit and wait) and the poller.
#[derive(Default)]
struct Tracker {
    jobs: Mutex<HashMap<String, Tracked>>,
    wake: Condvar,
    /// `interrupt()` was called: jobs that leave the queue are not waited for.
    interrupting: AtomicBool,
    /// `kill()` was called: stop waiting for anything.
    killed: AtomicBool,
}

struct Tracked {
    stage: String,
    dir: PathBuf,
    log: PathBuf,
    progress_offset: u64,
    progress_partial: Vec<u8>,
    on_progress: ProgressFn,
    /// The last state `squeue` reported (`SUBMITTED` until the first poll).
    state: String,
    /// Why SLURM keeps it pending (`Resources`, `Priority`), as `squeue` said it.
    reason: String,
    /// When the job was first seen out of the queue without an `exitcode`.
    gone_since: Option<Instant>,
    done: mpsc::Sender<Exit>,
}

impl Backend for Slurm {
    fn run(&self, launch: Launch<'_>, on_progress: ProgressFn) -> std::io::Result<Exit> {
        if process::interrupted() || self.shared.killed.load(Ordering::SeqCst) {
            return Ok(Exit::default());
        }
        let dir = launch.staging_dir.join(JOB_DIR);
        std::fs::create_dir_all(&dir)?;
        crate::fsutil::write_atomic(
            &dir.join("job.sh"),
            wrapper_script(&launch, &dir).as_bytes(),
        )?;
        let args = sbatch_args(
            &self.config,
            launch.stage,
            &launch.resources,
            launch.cwd,
            &dir,
        );
        let out = Command::new("sbatch")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| std::io::Error::other(SlurmError::Spawn(e)))?;
        if !out.status.success() {
            let message = String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; ");
            return Err(std::io::Error::other(SlurmError::Refused { message }));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(id) = parse_job_id(&stdout) else {
            return Err(std::io::Error::other(SlurmError::NoJobId {
                output: stdout.trim().to_string(),
            }));
        };
        on_progress(Progress {
            step: 0,
            total: 0,
            message: format!("slurm job {id} submitted"),
        });
        let (tx, rx) = mpsc::channel();
        {
            let mut jobs = lock(&self.shared.jobs);
            jobs.insert(
                id.clone(),
                Tracked {
                    stage: launch.stage.to_string(),
                    dir: dir.clone(),
                    log: launch.log_path.to_path_buf(),
                    progress_offset: 0,
                    progress_partial: Vec::new(),
                    on_progress,
                    state: "SUBMITTED".into(),
                    reason: String::new(),
                    gone_since: None,
                    done: tx,
                },
            );
        }
        self.start_poller();
        self.shared.wake.notify_all();
        // An interrupt that arrived while sbatch ran missed this job: cancel it now.
        if process::interrupted() || self.shared.interrupting.load(Ordering::SeqCst) {
            scancel(&[], std::slice::from_ref(&id));
        }
        match rx.recv() {
            Ok(exit) => Ok(exit),
            Err(_) => Err(std::io::Error::other(format!(
                "lost track of slurm job {id} of stage `{}`",
                launch.stage
            ))),
        }
    }

    fn interrupt(&self) {
        self.shared.interrupting.store(true, Ordering::SeqCst);
        let (running, pending): (Vec<_>, Vec<_>) = {
            let jobs = lock(&self.shared.jobs);
            jobs.iter()
                .map(|(id, t)| (id.clone(), t.state.clone()))
                .partition(|(_, state)| state != "PENDING" && state != "SUBMITTED")
        };
        let ids = |v: Vec<(String, String)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        let (running, pending) = (ids(running), ids(pending));
        // Pending jobs have no process to signal; a job that started since the last poll is
        // also cancelled, which is what an interrupt asks for anyway.
        scancel(&running, &pending);
        self.shared.wake.notify_all();
    }

    fn kill(&self) {
        self.shared.killed.store(true, Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.shared.jobs).keys().cloned().collect();
        scancel(&[], &ids);
        self.shared.wake.notify_all();
    }

    fn name(&self) -> &'static str {
        "slurm"
    }

    fn schedules_resources(&self) -> bool {
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `scancel --full --signal=INT` for `signal_ids`, plain `scancel` for `cancel_ids`. Failures
/// are ignored: a job that already ended cannot be cancelled, and the poller sees it end.
fn scancel(signal_ids: &[String], cancel_ids: &[String]) {
    if !signal_ids.is_empty() {
        let _ = Command::new("scancel")
            .args(["--full", "--signal=INT"])
            .args(signal_ids)
            .stdin(std::process::Stdio::null())
            .output();
    }
    if !cancel_ids.is_empty() {
        let _ = Command::new("scancel")
            .args(cancel_ids)
            .stdin(std::process::Stdio::null())
            .output();
    }
}

/// The job id from `sbatch --parsable` output (`123` or `123;cluster`).
pub fn parse_job_id(stdout: &str) -> Option<String> {
    let first = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let id = first.split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

/// sbatch's arguments for one stage: the stage's resources, then the configuration, then the
/// extra arguments (last, so they override), then the wrapper script.
pub fn sbatch_args(
    config: &SlurmConfig,
    stage: &str,
    resources: &Resources,
    cwd: &Path,
    job_dir: &Path,
) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name=repro:{stage}"),
        format!("--chdir={}", cwd.display()),
        format!("--output={}", job_dir.join("slurm-%j.out").display()),
        "--ntasks=1".to_string(),
        format!("--cpus-per-task={}", resources.cpus.max(1)),
    ];
    if resources.mem > 0 {
        args.push(format!("--mem={}M", resources.mem.div_ceil(1 << 20)));
    }
    if resources.gpus > 0 {
        args.push(format!("--gres=gpu:{}", resources.gpus));
    }
    if let Some(p) = &config.partition {
        args.push(format!("--partition={p}"));
    }
    if let Some(a) = &config.account {
        args.push(format!("--account={a}"));
    }
    if let Some(t) = &config.time {
        args.push(format!("--time={t}"));
    }
    args.extend(config.extra_args.iter().cloned());
    args.push(job_dir.join("job.sh").display().to_string());
    args
}

/// `s` as one single-quoted word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: runs the stage's command lines in order in the staging view (stopping at
/// the first failure), with fd 3 on the progress file and stdout/stderr on the run's log, and
/// writes `record.json` and then `exitcode`. Plain POSIX `sh`, so any node can run it.
pub fn wrapper_script(launch: &Launch<'_>, job_dir: &Path) -> String {
    let q = |p: &Path| sh_quote(&p.to_string_lossy());
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str(&format!(
        "# repro: the SLURM job of stage `{}` (generated; see engine/src/exec/slurm.rs)\n",
        launch.stage.replace('\n', " ")
    ));
    s.push_str(&format!("J={}\n", q(job_dir)));
    s.push_str(&format!(
        "cd {} || {{ echo \"repro: cannot enter the staging view on $(hostname); is the workspace on a filesystem the nodes share?\" >&2; exit 127; }}\n",
        q(launch.cwd)
    ));
    s.push_str(&format!(
        "export REPRO_STAGE={} {}={}\n",
        sh_quote(launch.stage),
        progress::FD_ENV,
        progress::FD
    ));
    for (k, v) in &launch.env {
        // SLURM assigns the GPUs; never override what it set.
        if k == "CUDA_VISIBLE_DEVICES" {
            continue;
        }
        s.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    let builtin = launch.env.iter().any(|(k, _)| k == "RAYON_NUM_THREADS");
    s.push_str("if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then\n");
    s.push_str("  export REPRO_CPUS=\"$SLURM_CPUS_PER_TASK\"\n");
    if builtin {
        s.push_str("  export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"\n");
    }
    s.push_str("fi\n");
    s.push_str(&format!(
        "exec 3>>\"$J/progress\" >>{} 2>&1\n",
        q(launch.log_path)
    ));
    // With a trap, sh waits for the running command to end before handling the signal, so an
    // interrupted stage still gets its exitcode written.
    s.push_str("stopped=\ntrap 'stopped=1' INT TERM\n");
    s.push_str("started=$(date +%s)\nrc=0\n");
    s.push_str(
        "step() {\n  if [ -x /usr/bin/time ]; then /usr/bin/time -a -o \"$J/rusage\" -f %M \"$@\"\n  else \"$@\"; fi\n}\n",
    );
    for (program, args) in &launch.invocations {
        let mut words = vec![q(program)];
        words.extend(args.iter().map(|a| sh_quote(a)));
        s.push_str(&format!(
            "if [ \"$rc\" = 0 ] && [ -z \"$stopped\" ]; then step {}; rc=$?; fi\n",
            words.join(" ")
        ));
    }
    s.push_str("ended=$(date +%s)\nhost=$(hostname 2>/dev/null || echo unknown)\n");
    s.push_str(
        "echo \"repro: slurm job ${SLURM_JOB_ID:-?} on $host (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}) ended with exit code $rc\"\n",
    );
    s.push_str(
        "printf '{\"job_id\": \"%s\", \"host\": \"%s\", \"gpus\": \"%s\", \"started\": %s, \"ended\": %s, \"exit_code\": %s}\\n' \\\n  \"${SLURM_JOB_ID:-}\" \"$host\" \"${CUDA_VISIBLE_DEVICES:-}\" \"$started\" \"$ended\" \"$rc\" >\"$J/record.json.tmp\" && mv \"$J/record.json.tmp\" \"$J/record.json\"\n",
    );
    s.push_str("echo \"$rc\" >\"$J/exitcode.tmp\" && mv \"$J/exitcode.tmp\" \"$J/exitcode\"\n");
    s.push_str("exit \"$rc\"\n");
    s
}

/// SLURM states in which a job is still queued or running: its `exitcode` may yet come.
fn in_flight(state: &str) -> bool {
    !matches!(
        state,
        "GONE"
            | "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "OUT_OF_MEMORY"
    )
}

/// Parses `squeue -h -o '%i %T %r'` lines into id -> (state, reason).
pub fn parse_squeue(text: &str) -> HashMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let id = it.next()?.trim();
            let state = it.next()?.trim();
            let reason = it.next().unwrap_or("").trim();
            (!id.is_empty() && !state.is_empty())
                .then(|| (id.to_string(), (state.to_string(), reason.to_string())))
        })
        .collect()
}

/// How a finished job ended, from the files its wrapper wrote; `None` while `exitcode` is absent.
fn read_exit(dir: &Path) -> Option<Exit> {
    let text = std::fs::read_to_string(dir.join("exitcode")).ok()?;
    let code: i32 = text.trim().parse().ok()?;
    let peak_rss_kib = std::fs::read_to_string(dir.join("rusage"))
        .map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let wall = std::fs::read_to_string(dir.join("record.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| Some(v["ended"].as_u64()?.saturating_sub(v["started"].as_u64()?)))
        .map(Duration::from_secs)
        .unwrap_or_default();
    Some(Exit {
        code: Some(code),
        signal: None,
        peak_rss_kib,
        wall,
    })
}

/// Forwards the complete new lines of the job's progress file.
fn tail_progress(t: &mut Tracked) {
    let Ok(mut f) = std::fs::File::open(t.dir.join("progress")) else {
        return;
    };
    if f.seek(SeekFrom::Start(t.progress_offset)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() || buf.is_empty() {
        return;
    }
    t.progress_offset += buf.len() as u64;
    t.progress_partial.extend_from_slice(&buf);
    let Some(last_newline) = t.progress_partial.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let complete: Vec<u8> = t.progress_partial.drain(..=last_newline).collect();
    for line in String::from_utf8_lossy(&complete).lines() {
        if let Some(p) = Progress::parse(line) {
            (t.on_progress)(p);
        }
    }
}

/// Appends a note to the stage's log, so the failure message (its tail) carries it.
fn note_in_log(log: &Path, note: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "repro: {note}");
    }
}

/// Copies the tail of SLURM's own output for a failed job (`slurmstepd: error: *** JOB 5
/// CANCELLED DUE TO TIME LIMIT ***`) into the stage's log, where the failure message shows it.
fn relay_slurm_output(t: &Tracked, id: &str) {
    let path = t.dir.join(format!("slurm-{id}.out"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &lines[lines.len().saturating_sub(5)..] {
        note_in_log(&t.log, &format!("slurm: {line}"));
    }
}

fn poll_loop(shared: &Tracker, lost_grace: Duration) {
    let mut interval = POLL_MIN;
    let mut next_squeue = Instant::now();
    let mut saw_interrupt = false;
    loop {
        let mut jobs = lock(&shared.jobs);
        while jobs.is_empty() {
            jobs = shared.wake.wait(jobs).unwrap_or_else(|p| p.into_inner());
            interval = POLL_MIN;
            next_squeue = Instant::now() + POLL_MIN;
        }
        let killed = shared.killed.load(Ordering::SeqCst);
        let interrupting = shared.interrupting.load(Ordering::SeqCst);
        if interrupting && !saw_interrupt {
            // Cancelled pending jobs are seen gone only by squeue: ask now, not after backoff.
            saw_interrupt = true;
            interval = POLL_MIN;
            next_squeue = Instant::now();
        }
        let mut finished: Vec<(String, Exit)> = Vec::new();
        for (id, t) in jobs.iter_mut() {
            tail_progress(t);
            if let Some(exit) = read_exit(&t.dir) {
                if !exit.success() {
                    relay_slurm_output(t, id);
                }
                finished.push((id.clone(), exit));
            } else if killed {
                finished.push((
                    id.clone(),
                    Exit {
                        signal: Some(libc::SIGKILL),
                        ..Exit::default()
                    },
                ));
            } else if let Some(since) = t.gone_since {
                if interrupting || since.elapsed() >= lost_grace {
                    let note = format!(
                        "slurm job {id} of stage `{}` left the queue in state {} without writing its exit code; slurm's output for it is `{}` (if that file is missing, check that the workspace is on a filesystem the nodes share)",
                        t.stage,
                        t.state,
                        t.dir.join(format!("slurm-{id}.out")).display()
                    );
                    note_in_log(&t.log, &note);
                    finished.push((id.clone(), Exit::default()));
                }
            }
        }
        for (id, exit) in finished {
            if let Some(t) = jobs.remove(&id) {
                let _ = t.done.send(exit);
            }
        }
        let ids: Vec<String> = jobs.keys().cloned().collect();
        drop(jobs);

        if !ids.is_empty() && Instant::now() >= next_squeue {
            let states = squeue(&ids);
            let mut changed = false;
            let mut jobs = lock(&shared.jobs);
            if let Some(states) = states {
                for (id, t) in jobs.iter_mut() {
                    let Some((state, reason)) = states
                        .get(id)
                        .cloned()
                        .or_else(|| ids.contains(id).then(|| ("GONE".into(), String::new())))
                    else {
                        continue;
                    };
                    if state != t.state || reason != t.reason {
                        changed = true;
                        let why = match reason.as_str() {
                            "" | "None" => String::new(),
                            r => format!(" ({r})"),
                        };
                        (t.on_progress)(Progress {
                            step: 0,
                            total: 0,
                            message: format!("slurm job {id} {}{why}", state.to_lowercase()),
                        });
                        t.state = state;
                        t.reason = reason;
                    }
                    if !in_flight(&t.state) && t.gone_since.is_none() {
                        t.gone_since = Some(Instant::now());
                    }
                }
            }
            drop(jobs);
            interval = if changed {
                POLL_MIN
            } else {
                interval.mul_f64(POLL_BACKOFF).min(POLL_MAX)
            };
            next_squeue = Instant::now() + interval;
        }
        let jobs = lock(&shared.jobs);
        // A submission or an interrupt wakes the poller early.
        let (jobs, _) = shared
            .wake
            .wait_timeout(jobs, TICK)
            .unwrap_or_else(|p| p.into_inner());
        drop(jobs);
    }
}

/// One batched `squeue` for `ids`: id -> (state, reason) for the jobs SLURM still lists. `None` when
/// `squeue` itself failed (controller down): nothing is concluded from that.
fn squeue(ids: &[String]) -> Option<HashMap<String, (String, String)>> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i %T %r", "-j", &ids.join(",")])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if out.status.success() {
        return Some(parse_squeue(&String::from_utf8_lossy(&out.stdout)));
    }
    // When every id is unknown (all purged after MinJobAge), squeue fails with this message.
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .contains("Invalid job id")
        .then(|| parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::resources::Grant;

    #[test]
    fn resources_and_config_map_to_sbatch_arguments() {
        let config = SlurmConfig {
            partition: Some("gpu".into()),
            account: Some("lab".into()),
            time: Some("2:00:00".into()),
            extra_args: vec!["--qos=high".into(), "--cpus-per-task=8".into()],
            ..SlurmConfig::default()
        };
        let r = Resources {
            cpus: 4,
            gpus: 2,
            mem: (3 << 30) + 1,
        };
        let args = sbatch_args(
            &config,
            "train@sn",
            &r,
            Path::new("/w/s"),
            Path::new("/w/s/.j"),
        );
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=repro:train@sn",
                "--chdir=/w/s",
                "--output=/w/s/.j/slurm-%j.out",
                "--ntasks=1",
                "--cpus-per-task=4",
                "--mem=3073M",
                "--gres=gpu:2",
                "--partition=gpu",
                "--account=lab",
                "--time=2:00:00",
                "--qos=high",
                "--cpus-per-task=8",
                "/w/s/.j/job.sh",
            ]
        );
        let plain = sbatch_args(
            &SlurmConfig::default(),
            "a",
            &Resources::default(),
            Path::new("/w"),
            Path::new("/w/.j"),
        );
        assert!(!plain.iter().any(|a| a.starts_with("--mem")
            || a.starts_with("--gres")
            || a.starts_with("--partition")));
    }

    #[test]
    fn job_ids_and_queue_states_are_parsed() {
        assert_eq!(parse_job_id("123\n"), Some("123".into()));
        assert_eq!(parse_job_id("45;cluster\n"), Some("45".into()));
        assert_eq!(parse_job_id("Submitted batch job 9\n"), None);
        assert_eq!(parse_job_id(""), None);
        let states = parse_squeue("12 RUNNING None\n13 PENDING Resources\n14 PENDING\n\n");
        let get = |id: &str| states.get(id).map(|(s, r)| (s.as_str(), r.as_str()));
        assert_eq!(get("12"), Some(("RUNNING", "None")));
        assert_eq!(get("13"), Some(("PENDING", "Resources")));
        assert_eq!(get("14"), Some(("PENDING", "")));
        assert_eq!(states.len(), 3);
        assert!(in_flight("PENDING") && in_flight("COMPLETING") && !in_flight("NODE_FAIL"));
    }

    /// The wrapper runs under plain `sh` without SLURM: the same script a node would run.
    #[test]
    fn the_wrapper_runs_the_lines_in_order_and_writes_exitcode_progress_and_log() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path().join("view");
        let job = cwd.join(JOB_DIR);
        std::fs::create_dir_all(&job).unwrap();
        let log = tmp.path().join("stage.log");
        let grant = Grant::default();
        let sh = |line: &str| {
            (
                PathBuf::from("/bin/sh"),
                vec!["-c".to_string(), line.to_string()],
            )
        };
        let launch = Launch {
            stage: "it's",
            invocations: vec![
                sh("echo \"$GREETING $REPRO_STAGE\"; echo '{\"step\": 1, \"total\": 2}' >&3"),
                sh("echo second > second.txt; exit 3"),
                sh("echo never > never.txt"),
            ],
            cwd: &cwd,
            staging_dir: &cwd,
            env: vec![
                ("GREETING".into(), "it's $HOME".into()),
                ("CUDA_VISIBLE_DEVICES".into(), "7".into()),
            ],
            log_path: &log,
            grant: &grant,
            resources: Resources::default(),
        };
        let script = wrapper_script(&launch, &job);
        assert!(!script.contains("CUDA_VISIBLE_DEVICES='7'"), "{script}");
        std::fs::write(job.join("job.sh"), &script).unwrap();
        let status = Command::new("/bin/sh")
            .arg(job.join("job.sh"))
            .env_remove("SLURM_JOB_ID")
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3), "{script}");
        let exit = read_exit(&job).expect("exitcode written");
        assert_eq!(exit.code, Some(3));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("it's $HOME it's\n"), "{text}");
        assert!(text.contains("ended with exit code 3"), "{text}");
        assert!(cwd.join("second.txt").exists() && !cwd.join("never.txt").exists());

        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let mut t = Tracked {
            stage: "it's".into(),
            dir: job.clone(),
            log,
            progress_offset: 0,
            progress_partial: Vec::new(),
            on_progress: Arc::new(move |p: Progress| {
                let _ = lock(&tx).send((p.step, p.total));
            }),
            state: "RUNNING".into(),
            reason: String::new(),
            gone_since: None,
            done: mpsc::channel().0,
        };
        tail_progress(&mut t);
        assert_eq!(rx.try_recv().ok(), Some((1, 2)));
        // A half-written line waits for its newline.
        std::fs::write(
            job.join("progress"),
            "{\"step\": 1, \"total\": 2}\n{\"step\": 2,",
        )
        .unwrap();
        tail_progress(&mut t);
        assert!(rx.try_recv().is_err());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(job.join("progress"))
            .unwrap();
        std::io::Write::write_all(&mut f, b" \"total\": 2}\n").unwrap();
        tail_progress(&mut t);
        assert_eq!(rx.try_recv().ok(), Some((2, 2)));
    }
}
