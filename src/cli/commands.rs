//! Each subcommand: resolve the arguments, call the engine, print the result, choose the exit
//! code. Errors carry context (anyhow) and are mapped to the exit-code table in one place,
//! [`exit_code_for`].

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use repro_engine::dag::{Dag, Selection, StageId};
use repro_engine::exec::{self, process};
use repro_engine::exit_code;
use repro_engine::fingerprint::DirtyReason;
use repro_engine::freshness::{self, FreshnessError, State};
use repro_engine::hash::Hasher;
use repro_engine::lockfile::LockFile;
use repro_engine::metrics::{self, Format};
use repro_engine::reporter::{self, Mode};
use repro_engine::spec::{self, LoadOptions};
use repro_engine::workspace::Workspace;

use super::args::{
    Cli, Command, ExecutorArgs, ExecutorChoice, FormatArgs, MetricsCommand, RunArgs, SpecArgs,
};
use super::error::UsageError;
use super::{remote, tools};

pub fn dispatch(cli: Cli) -> Result<i32> {
    let start = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let verbose = cli.verbose;
    let locate = || Workspace::locate(&start, cli.file.as_deref());
    match cli.command {
        Command::Fid {
            a,
            b,
            weights,
            batch,
            json,
        } => tools::fid(&a, &b, weights, batch, json),
        Command::Builtin {
            kind,
            with,
            with_file,
            list,
        } => tools::builtin(kind, with, with_file, list),
        Command::Init => init(&start, cli.file.as_deref()),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "repro", &mut std::io::stdout());
            Ok(exit_code::OK)
        }
        Command::Supervise { parent, command } => Ok(exec::supervise::run(parent, &command)),
        Command::All(run) => run_pipeline(&locate()?, &[], Selection::WithUpstream, &run, verbose),
        Command::Run {
            targets,
            downstream,
            single,
            run,
        } => {
            let selection = if single {
                Selection::Single
            } else if downstream {
                Selection::WithDownstream
            } else {
                Selection::WithUpstream
            };
            run_pipeline(&locate()?, &targets, selection, &run, verbose)
        }
        Command::Status {
            targets,
            json,
            remote: Some(name),
            spec,
        } => remote::status(&locate()?, &targets, &name, json, &spec),
        Command::Status {
            targets,
            json,
            remote: None,
            spec,
        } => status(&locate()?, &targets, json, &spec),
        Command::Remote { command } => remote::remote_cmd(&locate()?, command),
        Command::Push(args) => remote::push(&locate()?, &args),
        Command::Pull(args) => remote::pull(&locate()?, &args),
        Command::Dag {
            targets,
            mermaid,
            dot,
            json,
            spec,
        } => {
            let ws = locate()?;
            let dag = load_dag(&ws, &spec)?;
            let ids = dag.select(&targets, Selection::WithUpstream)?;
            let text = if mermaid {
                dag.mermaid(&ids)
            } else if json {
                dag.json(&ids)
            } else if dot {
                dag.dot(&ids)
            } else {
                dag.ascii(&ids)
            };
            print!("{text}");
            Ok(exit_code::OK)
        }
        Command::Gc { dry_run, no_wait } => gc(&locate()?, dry_run, no_wait),
        Command::Fsck { no_wait } => fsck(&locate()?, no_wait),
        Command::Runs { format } => runs(&locate()?, &format),
        Command::Verify {
            targets,
            no_wait,
            spec,
        } => verify(&locate()?, &targets, no_wait, &spec),
        Command::Metrics { command } => metrics_cmd(&locate()?, command),
        Command::Exp { command } => super::exp::exp(&locate()?, command),
        Command::Params { command } => super::exp::params(&locate()?, command),
        Command::Spectrum { file, json } => tools::spectrum(&start.join(file), json),
    }
}

/// The `pipeline.yaml` that `repro init` writes (the README shows the same file).
pub const STARTER_PIPELINE: &str = include_str!("starter.yaml");

/// The line `repro init` adds to the project's `.gitignore`.
const GITIGNORE_ENTRY: &str = "/.repro/";

/// `repro init`: a starter pipeline, `.repro/` (with its own `.gitignore`) and a `/.repro/`
/// line in the project's `.gitignore`, which is created if absent and otherwise only appended
/// to. An existing pipeline file is never touched: init refuses before writing anything.
fn init(start: &Path, file: Option<&Path>) -> Result<i32> {
    let pipeline = start.join(file.unwrap_or(Path::new(repro_engine::workspace::PIPELINE_FILE)));
    if pipeline.exists() {
        bail!(UsageError(format!(
            "`{}` already exists; repro init never overwrites a file (edit it, or remove it first)",
            pipeline.display()
        )));
    }
    let root = pipeline
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| start.to_path_buf());
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create `{}`", root.display()))?;
    // Created exclusively: a file that appeared since the check above is still not overwritten.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&pipeline)
        .with_context(|| format!("cannot create `{}`", pipeline.display()))?;
    f.write_all(STARTER_PIPELINE.as_bytes())
        .with_context(|| format!("cannot write `{}`", pipeline.display()))?;
    println!(
        "created  {} (a starter pipeline: edit it)",
        pipeline.display()
    );
    let ws = Workspace {
        root: root.clone(),
        pipeline_file: pipeline.clone(),
    };
    ws.prepare_state_dir()?;
    let ignore = root.join(".gitignore");
    let existing = match std::fs::read_to_string(&ignore) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", ignore.display())),
    };
    let listed = existing.as_deref().is_some_and(|t| {
        t.lines()
            .any(|l| matches!(l.trim(), ".repro" | ".repro/" | "/.repro" | "/.repro/"))
    });
    if !listed {
        let mut text = existing.clone().unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# repro's local cache, logs and lock (repro.lock is committed)\n");
        text.push_str(GITIGNORE_ENTRY);
        text.push('\n');
        repro_engine::fsutil::write_atomic(&ignore, text.as_bytes())
            .with_context(|| format!("cannot write `{}`", ignore.display()))?;
        let verb = if existing.is_some() {
            "updated"
        } else {
            "created"
        };
        println!("{verb}  {} (ignores `{GITIGNORE_ENTRY}`)", ignore.display());
    }
    println!("next: `repro all` runs it, `repro status` says what is stale, `repro dag` draws it");
    Ok(exit_code::OK)
}

fn load_options(spec: &SpecArgs) -> LoadOptions {
    LoadOptions {
        profile: spec.profile.clone(),
        sets: spec.set.clone(),
        builtins: stages::REGISTRY,
    }
}

pub(super) fn load_dag(ws: &Workspace, spec: &SpecArgs) -> Result<Dag> {
    let pipeline = spec::load(&display_path(ws), &load_options(spec))?;
    Ok(Dag::build(pipeline, &ws.root)?)
}

/// The pipeline file as it should appear in messages: relative to the current directory when
/// it lies below it.
fn display_path(ws: &Workspace) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) => ws
            .pipeline_file
            .strip_prefix(&cwd)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| ws.pipeline_file.clone()),
        Err(_) => ws.pipeline_file.clone(),
    }
}

fn run_pipeline(
    ws: &Workspace,
    targets: &[String],
    selection: Selection,
    run: &RunArgs,
    verbose: u8,
) -> Result<i32> {
    let pipeline = spec::load(&display_path(ws), &load_options(&run.spec))?;
    let backend = backend_for(pipeline.executor.as_ref(), &run.executor)?;
    let dag = Dag::build(pipeline, &ws.root)?;
    let order = dag.select(targets, selection)?;
    let force: BTreeSet<StageId> = if run.force {
        order.iter().copied().collect()
    } else {
        BTreeSet::new()
    };
    let opts = exec::Options {
        jobs: run.jobs.unwrap_or_else(|| {
            if backend.schedules_resources() {
                // The cluster queues what it cannot run yet; keep a generous number in flight.
                CLUSTER_JOBS
            } else {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }
        }),
        force,
        dry_run: run.dry_run,
        keep_going: run.keep_going,
        gpus: exec::resources::gpu_pool(run.gpus.as_deref()),
        run_cache: !run.no_run_cache,
        prune_lock: targets.is_empty(),
        backend,
        pull: remote::pull_remote(ws, run.pull.as_deref())?,
    };
    if run.dry_run {
        // A dry run takes no lock but still saves the hash cache.
        ws.prepare_state_dir()?;
    }
    let mode = if run.json { Mode::Json } else { Mode::detect() };
    let (tx, rx) = mpsc::channel();
    let reporter = reporter::spawn(mode, verbose > 0, rx);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(jobs) = run
        .jobs
        .filter(|&j| j > cpus && !opts.backend.schedules_resources())
    {
        // Honouring it would oversubscribe the CPUs and break the promise of `REPRO_CPUS`.
        let _ = tx.send(repro_engine::events::Event::Warning {
            message: format!(
                "`-j {jobs}` is above the {cpus} CPUs of this machine: at most {cpus} stages run at once, because each takes at least one CPU (`resources.cpus`) for itself"
            ),
        });
    }

    let _lock = if run.dry_run {
        None
    } else {
        let tx_wait = tx.clone();
        let lock = ws.lock(!run.no_wait, &move |holder| {
            let _ = tx_wait.send(repro_engine::events::Event::WaitingForLock {
                holder: holder.to_string(),
            });
        });
        match lock {
            Ok(l) => Some(l),
            Err(e) => {
                drop(tx);
                let _ = reporter.join();
                return Err(e.into());
            }
        }
    };
    process::install_signal_handlers().context("cannot install the signal handlers")?;
    let report = exec::execute(ws, &dag, &order, &opts, tx);
    let summary = reporter.join().unwrap_or_default();
    let report = report?;
    if report.interrupted {
        return Ok(exit_code::INTERRUPTED);
    }
    if !report.failed.is_empty() {
        return Ok(exit_code::FAILED);
    }
    let _ = summary;
    Ok(exit_code::OK)
}

/// Runs stages on this machine, each under a supervisor run by this very binary.
fn local_backend() -> Result<exec::backend::Local> {
    let exe = std::env::current_exe().context("cannot locate the repro executable")?;
    Ok(exec::backend::Local::new(exe))
}

/// Stages in flight at most on a cluster executor when `-j` is not given.
const CLUSTER_JOBS: usize = 100;

/// The executor: the command line's flags over `executor:` in `pipeline.yaml`, key by key.
fn backend_for(
    file: Option<&spec::Executor>,
    flags: &ExecutorArgs,
) -> Result<std::sync::Arc<dyn exec::backend::Backend>> {
    let kind = match (flags.executor, file.map(|e| e.kind)) {
        (Some(ExecutorChoice::Slurm), _) | (None, Some(spec::ExecutorKind::Slurm)) => {
            spec::ExecutorKind::Slurm
        }
        _ => spec::ExecutorKind::Local,
    };
    if kind == spec::ExecutorKind::Local {
        return Ok(std::sync::Arc::new(local_backend()?));
    }
    let mut config = exec::slurm::SlurmConfig::default();
    if let Some(e) = file {
        config.partition = e.partition.clone();
        config.account = e.account.clone();
        config.time = e.time.clone();
        config.extra_args = e.extra_args.clone();
    }
    config.partition = flags.slurm_partition.clone().or(config.partition);
    config.account = flags.slurm_account.clone().or(config.account);
    config.time = flags.slurm_time.clone().or(config.time);
    config.extra_args.extend(flags.slurm_args.iter().cloned());
    if let Some(secs) = flags.slurm_lost_grace {
        if !(secs.is_finite() && secs >= 0.0) {
            bail!(UsageError(format!(
                "`REPRO_SLURM_LOST_GRACE` must be a number of seconds, not `{secs}`"
            )));
        }
        config.lost_grace = std::time::Duration::from_secs_f64(secs);
    }
    Ok(std::sync::Arc::new(exec::slurm::Slurm::new(config)))
}

/// One stage's line in `repro status`.
struct StatusRow {
    name: String,
    state: &'static str,
    reasons: Vec<DirtyReason>,
}

fn status(ws: &Workspace, targets: &[String], json_out: bool, spec: &SpecArgs) -> Result<i32> {
    let dag = load_dag(ws, spec)?;
    let order = dag.select(targets, Selection::WithUpstream)?;
    let lock = LockFile::load(&ws.root)?;
    ws.prepare_state_dir()?;
    let hasher = Hasher::open(&ws.hash_state_dir())?;
    let mut failures = None;
    let resumes = repro_engine::exec::resume::Resumes::new(ws.resume_dir());
    let waiting = resumes.waiting(&ws.tmp_dir());
    let mut stale: BTreeSet<StageId> = BTreeSet::new();
    let mut rows = Vec::new();
    for &id in &order {
        let stage = &dag.stages[id];
        let mut reasons: Vec<DirtyReason> = dag.upstream[id]
            .iter()
            .filter(|u| stale.contains(u))
            .map(|&u| DirtyReason::UpstreamStale {
                stage: dag.stages[u].name.clone(),
            })
            .collect();
        let state = match freshness::check(
            stage,
            &dag.env,
            lock.stages.get(&stage.name),
            &ws.root,
            &hasher,
            false,
        ) {
            Ok(c) => match c.state {
                State::Frozen => "frozen",
                State::Fresh if reasons.is_empty() => "fresh",
                State::Fresh => "stale",
                State::Stale(r) => {
                    reasons.splice(0..0, r);
                    let recorded = lock.stages.contains_key(&stage.name);
                    let failed =
                        last_failure(&mut failures, ws, &stage.name, &c.fingerprint, recorded);
                    if let Some(f) = failed {
                        reasons.retain(|r| *r != DirtyReason::NeverRun);
                        reasons.insert(0, f);
                    }
                    let kept = resumes
                        .find(&c.fingerprint)
                        .or_else(|| waiting.get(&c.fingerprint).cloned());
                    if let Some(kept) = kept {
                        reasons.push(DirtyReason::Resumes {
                            kept: repro_engine::exec::job::relative(&ws.root, &kept),
                        });
                    }
                    "stale"
                }
            },
            Err(FreshnessError::MissingDep { path, .. }) => {
                if reasons.is_empty() {
                    reasons.push(DirtyReason::DepMissing { path });
                }
                "stale"
            }
            Err(e) => return Err(e.into()),
        };
        if state == "stale" {
            stale.insert(id);
        }
        rows.push(StatusRow {
            name: stage.name.clone(),
            state,
            reasons,
        });
    }
    hasher.save()?;
    let mut out = std::io::stdout().lock();
    if json_out {
        let stages: Vec<Value> = rows
            .iter()
            .map(|r| json!({ "name": r.name, "state": r.state, "reasons": r.reasons, "messages": r.reasons.iter().map(ToString::to_string).collect::<Vec<_>>() }))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "stale": !stale.is_empty(), "stages": stages }))?
        )?;
    } else if stale.is_empty() {
        writeln!(out, "all {} stages fresh", rows.len())?;
    } else {
        for r in rows.iter().filter(|r| r.state == "stale") {
            let reasons: Vec<String> = r.reasons.iter().map(ToString::to_string).collect();
            writeln!(out, "{}: {}", r.name, reasons.join(", "))?;
        }
        writeln!(out, "{} of {} stages stale", stale.len(), rows.len())?;
    }
    Ok(if stale.is_empty() {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

/// The latest run record of every stage, read once on first use (only when a stage is stale).
type LatestRuns = std::collections::HashMap<String, repro_engine::runrecord::RunRecord>;

/// [`DirtyReason::LastRunFailed`] when the latest run of `stage` failed, and either it never
/// succeeded (`repro.lock` has no entry: "never run" would be wrong) or it failed with the
/// inputs it has now (`fingerprint`).
fn last_failure(
    latest: &mut Option<LatestRuns>,
    ws: &Workspace,
    stage: &str,
    fingerprint: &str,
    recorded: bool,
) -> Option<DirtyReason> {
    let latest = latest.get_or_insert_with(|| {
        repro_engine::runrecord::load_all(&ws.runs_dir())
            .into_iter()
            .map(|r| (r.stage.clone(), r))
            .collect()
    });
    let r = latest.get(stage)?;
    let failed = matches!(
        r.outcome,
        repro_engine::runrecord::Outcome::Failed | repro_engine::runrecord::Outcome::Interrupted
    );
    (failed && (r.fingerprint == fingerprint || !recorded)).then(|| DirtyReason::LastRunFailed {
        log: r.log.clone(),
        interrupted: r.outcome == repro_engine::runrecord::Outcome::Interrupted,
    })
}

fn gc(ws: &Workspace, dry_run: bool, no_wait: bool) -> Result<i32> {
    let _lock = ws.lock(!no_wait, &|h| {
        eprintln!("waiting for the project lock, held by {h}")
    })?;
    let lock = LockFile::load(&ws.root)?;
    let store = repro_engine::cache::Store::open(&ws.cache_dir())?;
    let keep: Vec<repro_engine::hash::Digest> = lock
        .stages
        .values()
        .flat_map(|e| e.outputs.values().map(Into::into))
        .collect();
    let run_refs = |v: &Value| -> Vec<repro_engine::hash::Digest> {
        serde_json::from_value::<repro_engine::lockfile::LockEntry>(v.clone())
            .map(|e| e.outputs.values().map(Into::into).collect())
            .unwrap_or_default()
    };
    let mut out = std::io::stdout().lock();
    let mut each = |item: repro_engine::cache::GcItem| {
        if !dry_run {
            return;
        }
        let _ = match item {
            repro_engine::cache::GcItem::Object { sha256, bytes } => writeln!(
                out,
                "would delete object {sha256} ({})",
                reporter::human_bytes(bytes)
            ),
            repro_engine::cache::GcItem::RunEntry { fingerprint } => {
                writeln!(out, "would delete run-cache entry {fingerprint}")
            }
        };
    };
    let stats = store.collect(&keep, &run_refs, dry_run, &mut each)?;
    drop(out);
    let (did, kept) = if dry_run {
        ("would delete", "would keep")
    } else {
        ("deleted", "kept")
    };
    println!(
        "{did} {} objects ({}) and {} run-cache entries; {kept} {} objects and {} run-cache entries{}",
        stats.objects_removed,
        reporter::human_bytes(stats.bytes_removed),
        stats.runs_removed,
        stats.objects_kept,
        stats.runs_kept,
        if dry_run { " (dry run: nothing deleted)" } else { "" }
    );
    let resumes = repro_engine::exec::resume::Resumes::new(ws.resume_dir());
    if !dry_run {
        // Dead runs' views go; their unfinished stages' persist outs stay, as `all` keeps them.
        repro_engine::exec::staging::clean_stale(&ws.tmp_dir(), "", &resumes);
    }
    // Never deleted here: a kept state is work the next run with its inputs continues from,
    // and only the user knows whether those inputs come back.
    let kept = resumes.list();
    if !kept.is_empty() {
        let bytes = kept.iter().map(|(_, b)| b).sum();
        println!(
            "kept {} unfinished run(s) ({}) for the next run with the same inputs; delete a folder to discard it:",
            kept.len(),
            reporter::human_bytes(bytes)
        );
        for (dir, bytes) in kept {
            println!(
                "  {} ({})",
                repro_engine::exec::job::relative(&ws.root, &dir),
                reporter::human_bytes(bytes)
            );
        }
    }
    Ok(exit_code::OK)
}

fn runs(ws: &Workspace, format: &FormatArgs) -> Result<i32> {
    // The latest record of each stage, in stage-name order.
    let mut latest: std::collections::BTreeMap<String, repro_engine::runrecord::RunRecord> =
        Default::default();
    for r in repro_engine::runrecord::load_all(&ws.runs_dir()) {
        latest.insert(r.stage.clone(), r);
    }
    let records: Vec<&repro_engine::runrecord::RunRecord> = latest.values().collect();
    print!(
        "{}",
        repro_engine::runrecord::render(&records, format_of(format))
    );
    Ok(exit_code::OK)
}

fn fsck(ws: &Workspace, no_wait: bool) -> Result<i32> {
    let _lock = ws.lock(!no_wait, &|h| {
        eprintln!("waiting for the project lock, held by {h}")
    })?;
    let store = repro_engine::cache::Store::open(&ws.cache_dir())?;
    let corrupt = store.fsck()?;
    if corrupt.is_empty() {
        println!("every cached object matches its hash");
        return Ok(exit_code::OK);
    }
    for id in &corrupt {
        println!("corrupt  {id} (moved to quarantine)");
    }
    println!(
        "{} corrupt object(s); the stages that need them will rerun or be restored from another copy",
        corrupt.len()
    );
    Ok(exit_code::STATE)
}

/// `repro verify TARGET...`: each stage (a group is all its members) rerun in a scratch
/// directory, its outputs compared with `repro.lock`. Exit 1 if any differs.
fn verify(ws: &Workspace, targets: &[String], no_wait: bool, spec: &SpecArgs) -> Result<i32> {
    let dag = load_dag(ws, spec)?;
    let ids = dag.select(targets, Selection::Single)?;
    let _lock = ws.lock(!no_wait, &|h| {
        eprintln!("waiting for the project lock, held by {h}")
    })?;
    let lock = LockFile::load(&ws.root)?;
    let hasher = std::sync::Arc::new(Hasher::open(&ws.hash_state_dir())?);
    // Every stage is checked before any runs: a mistake in the last one should not cost the
    // reruns of the others first.
    let mut jobs = Vec::new();
    for &id in &ids {
        let stage = dag.stages[id].clone();
        let name = stage.name.clone();
        let Some(entry) = lock.stages.get(&name) else {
            bail!(UsageError(format!(
                "stage `{name}` has never run; `repro run {name}` first"
            )));
        };
        let inputs = freshness::current_inputs(&stage, &dag.env, &ws.root, &hasher)?;
        let fingerprint = inputs.fingerprint();
        if fingerprint != entry.fingerprint {
            bail!(UsageError(format!(
                "stage `{name}` is stale (its inputs changed since it ran), so its recorded outputs cannot be verified; run `repro status`"
            )));
        }
        jobs.push((stage, inputs, fingerprint, entry));
    }
    process::install_signal_handlers().context("cannot install the signal handlers")?;
    let run = repro_engine::runrecord::RunDir::new(&ws.runs_dir());
    let shared = exec::job::Shared {
        root: ws.root.clone(),
        tmp_dir: ws.tmp_dir(),
        run,
        hasher: hasher.clone(),
        store: std::sync::Arc::new(repro_engine::cache::Store::open(&ws.cache_dir())?),
        backend: std::sync::Arc::new(local_backend()?),
        exe: std::env::current_exe().context("cannot locate the repro executable")?,
        views: exec::staging::Views::of(&dag),
        // `verify` reruns in scratch views: it neither resumes nor keeps anything.
        resumes: exec::resume::Resumes::new(ws.resume_dir()),
        host: repro_engine::workspace::hostname(),
        stage_env: dag.env.clone(),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let mut differ = Vec::new();
    for (stage, inputs, fingerprint, entry) in jobs {
        let name = stage.name.clone();
        let job = exec::job::Job {
            grant: exec::resources::Grant {
                cpus: stage.resources.cpus.clamp(1, cpus),
                mem: 0,
                gpus: Vec::new(),
            },
            stage,
            inputs,
            fingerprint,
            reasons: Vec::new(),
            mode: exec::job::Mode::Run,
        };
        let (tx, rx) = mpsc::channel();
        let reporter = reporter::spawn(Mode::detect(), false, rx);
        eprintln!("verifying {name}: rerunning it in a scratch directory");
        let started = std::time::Instant::now();
        let result = exec::job::rerun_unpublished(&shared, &job, &tx);
        drop(tx);
        let _ = reporter.join();
        hasher.save()?;
        let digests =
            result.map_err(|e| anyhow::anyhow!("stage `{name}` failed when rerun: {e}"))?;
        let mut same = true;
        for (path, recorded) in &entry.outputs {
            match digests.get(path) {
                Some(d) if d.sha256 == recorded.sha256 => println!("identical  {path}"),
                Some(d) => {
                    same = false;
                    println!(
                        "differs    {path}  ({} recorded, {} now)",
                        &recorded.sha256[..12],
                        &d.sha256[..12]
                    );
                }
                None => {
                    same = false;
                    println!("missing    {path}");
                }
            }
        }
        let took = started.elapsed().as_secs_f64();
        if same {
            println!("stage `{name}` reproduced its outputs bit for bit (rerun in {took:.2}s)");
        } else {
            let note = if entry.deterministic {
                ""
            } else {
                " (it is marked `deterministic: false`)"
            };
            println!(
                "stage `{name}` did not reproduce its recorded outputs{note} (rerun in {took:.2}s)"
            );
            differ.push(name);
        }
    }
    if ids.len() > 1 {
        println!(
            "{} of {} stages reproduced their outputs",
            ids.len() - differ.len(),
            ids.len()
        );
    }
    Ok(if differ.is_empty() {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

pub(super) fn format_of(f: &FormatArgs) -> Format {
    if f.md {
        Format::Markdown
    } else if f.csv {
        Format::Csv
    } else if f.json {
        Format::Json
    } else {
        Format::Table
    }
}

/// The current values of every declared metric file that exists.
fn workspace_metrics(ws: &Workspace, dag: &Dag) -> Result<metrics::Metrics> {
    let mut m = metrics::Metrics::new();
    for stage in &dag.stages {
        m.extend(metrics::read_stage(&ws.root, stage)?);
    }
    Ok(m)
}

fn metrics_cmd(ws: &Workspace, command: MetricsCommand) -> Result<i32> {
    match command {
        MetricsCommand::Show { format, spec } => {
            let dag = load_dag(ws, &spec)?;
            print!(
                "{}",
                metrics::render_show(&workspace_metrics(ws, &dag)?, format_of(&format))
            );
        }
        MetricsCommand::Diff {
            rev,
            all,
            format,
            spec,
        } => {
            let dag = load_dag(ws, &spec)?;
            let old = match &rev {
                Some(rev) => metrics::from_git(&ws.root, rev)?,
                None => metrics::from_lock(&LockFile::load(&ws.root)?),
            };
            let new = workspace_metrics(ws, &dag)?;
            let rows = metrics::diff(&old, &new, all);
            let format = format_of(&format);
            if rows.is_empty() && format == Format::Table {
                // A bare header reads as a failure; right after a run the lock holds exactly
                // what is in the workspace, so say where to look instead.
                match &rev {
                    Some(rev) => println!("no changes: the metrics match those of `{rev}`"),
                    None => println!(
                        "no changes: the metrics match `repro.lock` (which the last run wrote); \
                         `repro metrics diff HEAD` compares with the last commit"
                    ),
                }
            } else {
                print!("{}", metrics::render_diff(&rows, format));
            }
        }
    }
    Ok(exit_code::OK)
}
