//! `repro remote`, `repro push`, `repro pull`, `repro status --remote` and the remote behind
//! `--pull`: the command line over [`repro_engine::remote`].
//!
//! What a transfer covers: the lock entries of the selected stages (all of `repro.lock` without
//! targets) — every object their outs name, and their run records, so that a pushed stage is
//! also restorable by `repro all --pull` anywhere with the same inputs. `push` only reads the
//! local cache and takes no project lock; `pull` writes the workspace and takes it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{mpsc, Arc};

use anyhow::{Context as _, Result};

use repro_engine::cache::Store;
use repro_engine::dag::Selection;
use repro_engine::exit_code;
use repro_engine::hash::Hasher;
use repro_engine::lockfile::{LockEntry, LockFile};
use repro_engine::remote::config::{self, Config, Scope};
use repro_engine::remote::{Remote, Transferred};
use repro_engine::reporter::{self, human_bytes, Mode};
use repro_engine::workspace::Workspace;

use super::args::{RemoteCommand, ScopeArgs, SpecArgs, TransferArgs};
use super::commands::load_dag;

/// Objects moved at once by `--pull` during a run.
const PULL_JOBS: usize = 8;

fn scope_of(s: ScopeArgs) -> Scope {
    if s.local {
        Scope::Local
    } else if s.global {
        Scope::User
    } else {
        Scope::Project
    }
}

/// `repro remote add|list|remove|default`.
pub fn remote_cmd(ws: &Workspace, command: RemoteCommand) -> Result<i32> {
    let root = &ws.root;
    match command {
        RemoteCommand::Add {
            name,
            url,
            default,
            scope,
        } => {
            // Refuse a URL that cannot work before it is written anywhere.
            repro_engine::remote::Location::parse(&name, &url, root)?;
            let file = config::add(root, scope_of(scope), &name, &url, default)?;
            let note = if default { " (the default)" } else { "" };
            println!(
                "added    remote `{name}` = {url}{note} in {}",
                shown(root, &file)
            );
        }
        RemoteCommand::Remove { name, scope } => {
            let file = config::remove(root, scope_of(scope), &name)?;
            println!("removed  remote `{name}` from {}", shown(root, &file));
        }
        RemoteCommand::Default { name, scope } => {
            let config = Config::load(root)?;
            config.pick(Some(&name))?;
            let file = config::set_default(root, scope_of(scope), &name)?;
            println!("default  remote `{name}` in {}", shown(root, &file));
        }
        RemoteCommand::List => {
            let config = Config::load(root)?;
            if config.remotes.is_empty() {
                println!("no remotes; add one with `repro remote add NAME URL`");
            }
            let default = config.default.as_ref().map(|(n, _)| n.as_str());
            for (name, entry) in &config.remotes {
                let mark = if Some(name.as_str()) == default {
                    " (default)"
                } else {
                    ""
                };
                println!("{name}\t{}\t[{}]{mark}", entry.url, entry.scope.name());
            }
        }
    }
    Ok(exit_code::OK)
}

fn shown(root: &Path, file: &Path) -> String {
    format!("`{}`", file.strip_prefix(root).unwrap_or(file).display())
}

/// Opens the remote `name` (`""` or `None`: the default).
fn open(ws: &Workspace, name: Option<&str>, jobs: usize, create: bool) -> Result<Remote> {
    let config = Config::load(&ws.root)?;
    let (name, url) = config.pick(name.filter(|n| !n.is_empty()))?;
    Ok(Remote::open(&name, &url, &ws.root, jobs, create)?)
}

/// The remote of `--pull [NAME]`, if asked for.
pub fn pull_remote(ws: &Workspace, pull: Option<&str>) -> Result<Option<Arc<Remote>>> {
    pull.map(|name| open(ws, Some(name), PULL_JOBS, false).map(Arc::new))
        .transpose()
}

/// The lock entries of `targets` (every recorded stage without targets), by stage name.
fn entries(
    ws: &Workspace,
    targets: &[String],
    spec: &SpecArgs,
) -> Result<BTreeMap<String, LockEntry>> {
    let mut lock = LockFile::load(&ws.root)?;
    if targets.is_empty() {
        return Ok(lock.stages);
    }
    let dag = load_dag(ws, spec)?;
    let ids = dag.select(targets, Selection::Single)?;
    Ok(ids
        .into_iter()
        .filter_map(|id| {
            let name = &dag.stages[id].name;
            lock.stages.remove(name).map(|e| (name.clone(), e))
        })
        .collect())
}

/// Runs `f` with a reporter listening, so transfers show progress (or JSON events).
fn reported<T>(json: bool, f: impl FnOnce(&mpsc::Sender<repro_engine::events::Event>) -> T) -> T {
    let mode = if json { Mode::Json } else { Mode::detect() };
    let (tx, rx) = mpsc::channel();
    let reporter = reporter::spawn(mode, false, rx);
    let out = f(&tx);
    drop(tx);
    let _ = reporter.join();
    out
}

fn summary(verb: &str, t: &Transferred, remote: &str) -> String {
    format!(
        "{verb} {} stage(s) {} `{remote}`: {} object(s) copied ({}), {} already there",
        t.records,
        if verb == "pushed" { "to" } else { "from" },
        t.objects,
        human_bytes(t.bytes),
        t.present
    )
}

/// `repro push [TARGET...]`.
pub fn push(ws: &Workspace, args: &TransferArgs) -> Result<i32> {
    let entries = entries(ws, &args.targets, &args.spec)?;
    let store = Store::open(&ws.cache_dir())?;
    let remote = open(ws, args.remote.as_deref(), args.jobs, true)?;
    let list: Vec<LockEntry> = entries.values().cloned().collect();
    let t = reported(args.json, |tx| remote.push(&store, &list, tx))?;
    if !args.json {
        println!("{}", summary("pushed", &t, &remote.name));
    }
    Ok(left_out(
        &entries,
        &t,
        "not in the local cache (run them, or pull them from where they are)",
    ))
}

/// Says which stages a transfer left out (and why), and the exit code: 1 when any was.
fn left_out(entries: &BTreeMap<String, LockEntry>, t: &Transferred, why: &str) -> i32 {
    if t.incomplete.is_empty() {
        return exit_code::OK;
    }
    let names: Vec<&str> = entries
        .iter()
        .filter(|(_, e)| t.incomplete.contains(&e.fingerprint))
        .map(|(name, _)| name.as_str())
        .collect();
    eprintln!(
        "left out {} stage(s) whose outputs are {why}: {}",
        names.len(),
        names.join(", ")
    );
    exit_code::FAILED
}

/// `repro pull [TARGET...]`: objects into the cache, then the outs into the workspace.
pub fn pull(ws: &Workspace, args: &TransferArgs) -> Result<i32> {
    let entries = entries(ws, &args.targets, &args.spec)?;
    let _lock = ws.lock(!args.no_wait, &|h| {
        eprintln!("waiting for the project lock, held by {h}")
    })?;
    ws.prepare_state_dir()?;
    let store = Store::open(&ws.cache_dir())?;
    let remote = open(ws, args.remote.as_deref(), args.jobs, false)?;
    let list: Vec<LockEntry> = entries.values().cloned().collect();
    let t = reported(args.json, |tx| remote.pull(&store, &list, tx))?;
    // Everything is verified in the local store now; the workspace is written last.
    let hasher = Hasher::open(&ws.hash_state_dir())?;
    let mut restored = 0;
    for (stage, entry) in &entries {
        if t.incomplete.contains(&entry.fingerprint) {
            continue;
        }
        restored += repro_engine::exec::job::restore_outputs(&ws.root, &hasher, &store, entry)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot check out stage `{stage}`"))?;
    }
    hasher.save()?;
    if !args.json {
        println!("{}", summary("pulled", &t, &remote.name));
        println!("restored {restored} out(s) in the workspace");
    }
    Ok(left_out(
        &entries,
        &t,
        "not on the remote (push them from where they were made)",
    ))
}

/// `repro status --remote [NAME]`: per recorded stage, what is missing here and there.
pub fn status(
    ws: &Workspace,
    targets: &[String],
    name: &str,
    json: bool,
    spec: &SpecArgs,
) -> Result<i32> {
    let entries = entries(ws, targets, spec)?;
    let store = Store::open(&ws.cache_dir())?;
    let remote = open(ws, Some(name), PULL_JOBS, false)?;
    let presence = remote.presence(&store, &entries)?;
    let mut out = std::io::stdout().lock();
    let mut unsynced = 0;
    let mut rows = Vec::new();
    for (stage, p) in &presence {
        let state = if p.nowhere.objects > 0 {
            "lost"
        } else if p.not_local.objects > 0 {
            "not pulled"
        } else if p.not_remote.objects > 0 {
            "not pushed"
        } else {
            "in sync"
        };
        if state != "in sync" {
            unsynced += 1;
        }
        rows.push(serde_json::json!({
            "stage": stage, "state": state,
            "not_local": p.not_local.objects, "not_remote": p.not_remote.objects,
            "nowhere": p.nowhere.objects, "bytes_to_push": p.not_remote.bytes,
        }));
        if !json && state != "in sync" {
            let detail = match state {
                "lost" => format!(
                    "{} object(s) in neither the local cache nor the remote: run it again",
                    p.nowhere.objects
                ),
                "not pulled" => format!("{} object(s) to pull", p.not_local.objects),
                _ => format!(
                    "{} object(s), {}, to push",
                    p.not_remote.objects,
                    human_bytes(p.not_remote.bytes)
                ),
            };
            writeln!(out, "{stage}: {state} ({detail})")?;
        }
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"remote": remote.name, "stages": rows})
            )?
        )?;
    } else {
        writeln!(
            out,
            "{} of {} recorded stages in sync with `{}`",
            rows.len() - unsynced,
            rows.len(),
            remote.name
        )?;
    }
    Ok(if unsynced == 0 {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}
