//! One unit of work on a worker thread: run a stage (or restore it from the run cache) and
//! produce its new lock entry.
//!
//! The order of effects is what makes a failure or a kill safe:
//! 1. build the staging view and run the stage's process(es) there;
//! 2. on success, hash every out in the staging view and store it in the cache;
//! 3. record the run-cache entry (fingerprint -> outs), so a crash from here on is recovered by
//!    a restore instead of a rerun;
//! 4. rename the outs into the workspace;
//! 5. return the lock entry; the scheduler writes `repro.lock`.
//!
//! Nothing touches the workspace before step 4, and nothing claims success before step 5.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::cache::Store;
use crate::events::{emit, Event, Sender};
use crate::fingerprint::{DigestRecord, DirtyReason, Inputs};
use crate::fsutil;
use crate::hash::Hasher;
use crate::lockfile::LockEntry;
use crate::runrecord::{now_rfc3339, Outcome, RunDir, RunRecord};
use crate::spec::{Action, Stage};

use super::process;
use super::resources::Grant;
use super::resume::{self, Resumes};
use super::staging;

/// What a worker needs from the run, shared by all workers.
pub struct Shared {
    pub root: PathBuf,
    pub tmp_dir: PathBuf,
    pub run: RunDir,
    pub hasher: Arc<Hasher>,
    pub store: Arc<Store>,
    /// Where the stage processes run (local children, or a cluster).
    pub backend: Arc<dyn super::backend::Backend>,
    /// This binary, which runs builtins as `repro builtin KIND --with JSON`.
    pub exe: PathBuf,
    /// Every stage's outs, to keep undeclared ones out of staging views, and what the views
    /// of this run share.
    pub views: staging::Views,
    /// The persist outs of stages that did not finish, for their next run.
    pub resumes: Resumes,
    pub host: String,
    /// What every stage is told about how the pipeline was loaded ([`crate::dag::Dag::env`]).
    pub stage_env: BTreeMap<String, String>,
}

/// Whether the job runs the stage or restores it.
pub enum Mode {
    Run,
    Restore(Box<LockEntry>),
}

/// A stage ready to go to a worker.
pub struct Job {
    pub stage: Stage,
    pub inputs: Inputs,
    pub fingerprint: String,
    pub reasons: Vec<DirtyReason>,
    pub grant: Grant,
    pub mode: Mode,
}

/// How the job ended.
pub enum JobEnd {
    Done {
        entry: Box<LockEntry>,
        restored: bool,
    },
    Failed {
        error: String,
    },
    Interrupted,
}

/// Whether outputs of this stage may be served from the run cache: every out is cached, none is
/// `persist` (its content depends on the previous run), and the stage is not `always_changed`.
pub fn cacheable(stage: &Stage) -> bool {
    !stage.always_changed && stage.outs.iter().all(|o| o.cache && !o.persist)
}

/// Runs the job to its end and writes its run record.
pub fn run(shared: &Shared, job: &Job, events: &Sender) -> (JobEnd, RunRecord) {
    let started_at = now_rfc3339();
    let clock = Instant::now();
    let log_path = shared.run.stage_file(&job.stage.name, "log");
    let (end, exit) = match &job.mode {
        Mode::Restore(entry) => (restore(shared, entry), process::Exit::default()),
        Mode::Run => run_stage(shared, job, &log_path, events),
    };
    let outcome = match &end {
        JobEnd::Done { restored: true, .. } => Outcome::Restored,
        JobEnd::Done { .. } => Outcome::Succeeded,
        JobEnd::Failed { .. } => Outcome::Failed,
        JobEnd::Interrupted => Outcome::Interrupted,
    };
    let record = RunRecord {
        stage: job.stage.name.clone(),
        run: shared.run.id.clone(),
        outcome,
        started: started_at,
        ended: now_rfc3339(),
        wall_seconds: clock.elapsed().as_secs_f64(),
        peak_rss_kib: exit.peak_rss_kib,
        exit_code: exit.code,
        signal: exit.signal,
        cache_hit: matches!(job.mode, Mode::Restore(_)),
        fingerprint: job.fingerprint.clone(),
        host: shared.host.clone(),
        gpus: job.grant.gpus.clone(),
        log: matches!(job.mode, Mode::Run).then(|| relative(&shared.root, &log_path)),
        error: match &end {
            JobEnd::Failed { error } => Some(error.clone()),
            _ => None,
        },
    };
    (end, record)
}

/// `path` relative to the workspace root, for messages and records.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn restore(shared: &Shared, entry: &LockEntry) -> JobEnd {
    match restore_outputs(&shared.root, &shared.hasher, &shared.store, entry) {
        Ok(_) => JobEnd::Done {
            entry: Box::new(entry.clone()),
            restored: true,
        },
        Err(error) => JobEnd::Failed { error },
    }
}

/// Makes the outs of `entry` in the workspace at `root` what it records, from `store`
/// (verified as they are copied); an out already in place with the recorded content is left
/// alone. Returns how many outs were copied. The run cache's restores and `repro pull` both.
pub fn restore_outputs(
    root: &Path,
    hasher: &Hasher,
    store: &Store,
    entry: &LockEntry,
) -> Result<usize, String> {
    let mut copied = 0;
    for (path, recorded) in &entry.outputs {
        let dest = root.join(path);
        if let Ok(Some(d)) = hasher.digest(&dest) {
            if d.sha256 == recorded.sha256 {
                continue;
            }
        }
        store
            .restore(&recorded.into(), &dest)
            .map_err(|e| format!("cannot restore `{path}` from the cache: {e}"))?;
        copied += 1;
    }
    Ok(copied)
}

fn run_stage(
    shared: &Shared,
    job: &Job,
    log_path: &Path,
    events: &Sender,
) -> (JobEnd, process::Exit) {
    let dir = staging::stage_dir(&shared.tmp_dir, &shared.run.id, &job.stage.name);
    let before = staging::OutStamps::take(&shared.root, &job.stage);
    let ended = match run_in_view(shared, job, &dir, log_path, events, true) {
        Ok(exit) => match collect_and_publish(shared, job, &dir, &before) {
            Ok(entry) => (
                JobEnd::Done {
                    entry: Box::new(entry),
                    restored: false,
                },
                exit,
            ),
            Err(error) => (JobEnd::Failed { error }, exit),
        },
        Err(failure) => *failure,
    };
    match ended.0 {
        JobEnd::Done { .. } => resume::unmark(&dir),
        _ => keep_unfinished(shared, job, &dir, events),
    }
    // Published or failed, the view has served: a failed stage's half-written outs are not kept
    // (its log is in the run record; its persist outs were kept just above), so a full disk gets
    // its space back at once.
    let _ = fsutil::remove_path(&dir);
    ended
}

/// Keeps the persist outs of a run that ended without publishing, and says where.
fn keep_unfinished(shared: &Shared, job: &Job, dir: &Path, events: &Sender) {
    let message = match shared
        .resumes
        .keep_unfinished(dir, &job.stage, &job.fingerprint)
    {
        Ok(None) => return,
        Ok(Some(entry)) => format!(
            "stage `{}` did not finish: its persist outs are kept in `{}` and the next run with \
             the same inputs continues from them (delete that folder to start over)",
            job.stage.name,
            relative(&shared.root, &entry)
        ),
        Err(e) => format!(
            "stage `{}` did not finish, and its persist outs could not be kept for the next \
             run: {e}",
            job.stage.name
        ),
    };
    emit(events, Event::Warning { message });
}

/// Runs the stage in a scratch view and returns the digests of its outs, publishing nothing
/// (`repro verify`). The scratch directory is removed afterwards.
pub fn rerun_unpublished(
    shared: &Shared,
    job: &Job,
    events: &Sender,
) -> Result<BTreeMap<String, DigestRecord>, String> {
    let dir = staging::stage_dir(
        &shared.tmp_dir,
        &shared.run.id,
        &format!("verify-{}", job.stage.name),
    );
    let log_path = shared
        .run
        .stage_file(&format!("verify-{}", job.stage.name), "log");
    let result = match run_in_view(shared, job, &dir, &log_path, events, false) {
        Ok(_) => {
            let mut digests = BTreeMap::new();
            for out in &job.stage.outs {
                match shared.hasher.digest(&dir.join(&out.path)) {
                    Ok(Some(d)) => {
                        digests.insert(out.path.clone(), DigestRecord::from(&d));
                    }
                    Ok(None) => return Err(format!("the rerun did not create out `{}`", out.path)),
                    Err(e) => return Err(format!("cannot hash out `{}`: {e}", out.path)),
                }
            }
            Ok(digests)
        }
        Err(failure) => match *failure {
            (JobEnd::Failed { error }, _) => Err(error),
            _ => Err("interrupted".into()),
        },
    };
    let _ = fsutil::remove_path(&dir);
    result
}

/// Builds the staging view at `dir` and runs the stage's process(es) there. `Err` carries how
/// the job ended when it did not succeed. A `resumable` run starts from the persist outs an
/// unfinished run with the same fingerprint left, and marks its view so that a killed `repro`
/// leaves them to the next run ([`resume`]); a `verify` rerun does neither.
fn run_in_view(
    shared: &Shared,
    job: &Job,
    dir: &Path,
    log_path: &Path,
    events: &Sender,
    resumable: bool,
) -> Result<process::Exit, Box<(JobEnd, process::Exit)>> {
    let stage = &job.stage;
    let fail = |error: String| {
        Err(Box::new((
            JobEnd::Failed { error },
            process::Exit::default(),
        )))
    };
    let _ = fsutil::remove_path(dir);
    let kept = resumable
        .then(|| shared.resumes.find(&job.fingerprint))
        .flatten();
    let built = staging::build_view(&shared.root, dir, stage, &shared.views, kept.as_deref())
        .and_then(|()| match resumable {
            true => resume::mark(dir, stage, &job.fingerprint),
            false => Ok(()),
        });
    if let Err(e) = built {
        return fail(format!(
            "cannot prepare the staging directory `{}`: {e}",
            relative(&shared.root, dir)
        ));
    }
    if let Some(kept) = kept {
        let _ = shared.resumes.discard(&job.fingerprint);
        emit(
            events,
            Event::Progress {
                stage: stage.name.clone(),
                step: 0,
                total: 0,
                message: format!(
                    "resuming from the persist outs an unfinished run with the same inputs left in `{}`",
                    relative(&shared.root, &kept)
                ),
            },
        );
    }
    if let Err(e) = std::fs::create_dir_all(&shared.run.dir) {
        return fail(format!(
            "cannot create `{}`: {e}",
            relative(&shared.root, &shared.run.dir)
        ));
    }
    if let Err(e) = std::fs::File::create(log_path) {
        return fail(format!(
            "cannot create the log `{}`: {e}",
            relative(&shared.root, log_path)
        ));
    }
    let cwd = if stage.wdir.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(&stage.wdir)
    };

    let mut env = vec![
        ("REPRO_CPUS".to_string(), job.grant.cpus.to_string()),
        // Read-only provenance (e.g. `repro -C "$REPRO_WORKSPACE" runs`); never write there.
        (
            "REPRO_WORKSPACE".to_string(),
            shared.root.display().to_string(),
        ),
        // This very binary, so a `cmd` stage can call `repro` (e.g. `dag --mermaid`) without
        // depending on PATH, and always the version that is running the pipeline.
        ("REPRO_EXE".to_string(), shared.exe.display().to_string()),
    ];
    // The profile and `--set` of this run, so that such a `repro` reads the same pipeline.
    env.extend(shared.stage_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !job.grant.gpus.is_empty() {
        let ids: Vec<String> = job.grant.gpus.iter().map(u32::to_string).collect();
        env.push(("CUDA_VISIBLE_DEVICES".into(), ids.join(",")));
    }
    let invocations: Vec<(PathBuf, Vec<String>)> = match &stage.action {
        Action::Cmd(lines) => lines
            .iter()
            .map(|l| (PathBuf::from("/bin/sh"), vec!["-c".into(), l.clone()]))
            .collect(),
        Action::Builtin { kind, with, .. } => {
            // Builtins are multi-threaded (rayon): give them exactly their cpus.
            env.push(("RAYON_NUM_THREADS".into(), job.grant.cpus.to_string()));
            let json = serde_json::Value::Object(with.clone()).to_string();
            vec![(
                shared.exe.clone(),
                vec!["builtin".into(), kind.clone(), "--with".into(), json],
            )]
        }
    };

    let name = stage.name.clone();
    let tx = events.clone();
    let on_progress: super::backend::ProgressFn =
        std::sync::Arc::new(move |p: crate::progress::Progress| {
            emit(
                &tx,
                Event::Progress {
                    stage: name.clone(),
                    step: p.step,
                    total: p.total,
                    message: p.message,
                },
            );
        });
    let launch = super::backend::Launch {
        stage: &stage.name,
        invocations,
        cwd: &cwd,
        staging_dir: dir,
        env,
        log_path,
        grant: &job.grant,
        resources: stage.resources,
    };
    let total = match shared.backend.run(launch, on_progress) {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot start stage `{}`: {e}", stage.name)),
    };
    if process::interrupted() {
        return Err(Box::new((JobEnd::Interrupted, total)));
    }
    if !total.success() {
        let tail = log_tail(log_path, 10);
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!("\n{tail}")
        };
        let error = format!("{}{tail}", total.describe());
        return Err(Box::new((JobEnd::Failed { error }, total)));
    }
    Ok(total)
}

fn collect_and_publish(
    shared: &Shared,
    job: &Job,
    dir: &Path,
    before: &staging::OutStamps,
) -> Result<LockEntry, String> {
    let stage = &job.stage;
    let mut outputs = BTreeMap::new();
    for out in &stage.outs {
        let staged = dir.join(&out.path);
        let is_link = std::fs::symlink_metadata(&staged)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link {
            return Err(format!(
                "out `{}` is a symlink; outs must be files or directories the stage writes",
                out.path
            ));
        }
        let digest = match shared.hasher.digest(&staged) {
            Ok(Some(d)) => d,
            Ok(None) if before.changed(&shared.root, &out.path) => {
                return Err(format!(
                    "the stage wrote its out `{}` into the workspace (`{}`) instead of its \
                     staging directory; write outs through paths relative to the working \
                     directory (the stage runs in `{}`), never through absolute paths or \
                     `$REPRO_WORKSPACE`. The workspace copy is not recorded: the next run \
                     restores the last good one",
                    out.path,
                    shared.root.join(&out.path).display(),
                    relative(&shared.root, dir),
                ))
            }
            Ok(None) => {
                return Err(format!(
                    "the stage succeeded but did not create its out `{}`",
                    out.path
                ))
            }
            Err(e) => return Err(format!("cannot hash out `{}`: {e}", out.path)),
        };
        if out.cache {
            shared
                .store
                .insert(&staged, &digest, &shared.hasher)
                .map_err(|e| format!("cannot store out `{}` in the cache: {e}", out.path))?;
        }
        outputs.insert(out.path.clone(), DigestRecord::from(&digest));
    }
    let mut metrics = crate::metrics::Metrics::new();
    for out in stage.outs.iter().filter(|o| o.metric) {
        let values = crate::metrics::read_file(dir, &out.path).map_err(|e| e.to_string())?;
        metrics.insert(out.path.clone(), values);
    }
    let entry = LockEntry {
        fingerprint: job.fingerprint.clone(),
        inputs: job.inputs.clone(),
        outputs,
        deterministic: stage.deterministic,
        metrics,
    };
    if cacheable(stage) {
        let record = serde_json::to_value(&entry).expect("lock entries serialize");
        shared
            .store
            .run_put(&job.fingerprint, &record)
            .map_err(|e| format!("cannot write the run cache: {e}"))?;
    }
    for out in &stage.outs {
        staging::publish(&dir.join(&out.path), &shared.root.join(&out.path))
            .map_err(|e| format!("cannot move out `{}` into the workspace: {e}", out.path))?;
    }
    Ok(entry)
}

/// The last `n` lines of a log, indented, for failure messages.
fn log_tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(8192);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
