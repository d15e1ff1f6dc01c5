//! Deciding whether a stage is fresh, and why not.
//!
//! A stage is **stale** when any of these holds (each yields a [`DirtyReason`]):
//! it never ran; it is `always_changed`; `--force` applies to it; the fingerprint of its current
//! inputs differs from the one in `repro.lock` (the reasons say which input); or one of its
//! recorded outs is missing or no longer has the recorded content. A `frozen` stage is never
//! stale. Upstream stages are not consulted here: by the time the executor checks a stage, its
//! upstream stages have finished, and the stage's deps *are* their outputs, hashed. So an
//! upstream stage that reran and produced the same bytes does not rerun its downstream.
//!
//! `repro status`, which runs nothing, cannot know what a stale upstream stage will produce; it
//! marks the downstream stages `upstream X stale` instead (see `status`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::fingerprint::{compare, ActionRecord, DigestRecord, DirtyReason, Inputs, OutDecl};
use crate::hash::{HashError, Hasher};
use crate::lockfile::LockEntry;
use crate::spec::{Action, Stage};

/// Why the freshness of a stage could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum FreshnessError {
    #[error("stage `{stage}`: dep `{path}` does not exist; an upstream stage should have made it, or create it")]
    MissingDep { stage: String, path: String },
    #[error("stage `{stage}`: {source}")]
    Hash { stage: String, source: HashError },
}

/// The verdict on one stage.
#[derive(Clone, Debug)]
pub enum State {
    Fresh,
    Frozen,
    Stale(Vec<DirtyReason>),
}

/// A stage's current inputs, their fingerprint, and the verdict.
#[derive(Clone, Debug)]
pub struct Check {
    pub inputs: Inputs,
    pub fingerprint: String,
    pub state: State,
}

/// Collects the stage's current inputs (hashing its deps). `stage_env` is what the engine sets
/// for every stage of the pipeline ([`crate::dag::Dag::env`]): an `env:` name found there is
/// fingerprinted with that value, the one the stage will see, else with repro's own.
pub fn current_inputs(
    stage: &Stage,
    stage_env: &BTreeMap<String, String>,
    root: &Path,
    hasher: &Hasher,
) -> Result<Inputs, FreshnessError> {
    let action = match &stage.action {
        Action::Cmd(lines) => ActionRecord::Cmd(lines.clone()),
        Action::Builtin {
            kind,
            version,
            with,
        } => ActionRecord::Builtin {
            kind: kind.clone(),
            version: *version,
            with: with.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        },
    };
    let paths: Vec<std::path::PathBuf> = stage.deps.iter().map(|d| root.join(&d.path)).collect();
    let mut deps = BTreeMap::new();
    for (dep, digest) in stage.deps.iter().zip(hasher.digest_many(&paths)) {
        let digest = digest.map_err(|source| FreshnessError::Hash {
            stage: stage.name.clone(),
            source,
        })?;
        let digest = digest.ok_or_else(|| FreshnessError::MissingDep {
            stage: stage.name.clone(),
            path: dep.path.clone(),
        })?;
        deps.insert(dep.path.clone(), DigestRecord::from(&digest));
    }
    let mut outs: Vec<OutDecl> = stage
        .outs
        .iter()
        .map(|o| OutDecl {
            path: o.path.clone(),
            cache: o.cache,
            persist: o.persist,
            metric: o.metric,
        })
        .collect();
    outs.sort();
    let env = stage
        .env
        .iter()
        .map(|name| {
            let value = match stage_env.get(name) {
                Some(v) => Some(v.clone()),
                None => std::env::var(name).ok(),
            };
            (name.clone(), value)
        })
        .collect();
    Ok(Inputs {
        action,
        wdir: stage.wdir.clone(),
        params: stage.params.clone(),
        deps,
        outs,
        env,
    })
}

/// Checks the stage's recorded outs in the workspace: missing or modified ones.
pub fn check_outs(
    entry: &LockEntry,
    root: &Path,
    hasher: &Hasher,
    stage: &str,
) -> Result<Vec<DirtyReason>, FreshnessError> {
    let paths: Vec<std::path::PathBuf> = entry.outputs.keys().map(|p| root.join(p)).collect();
    let mut reasons = Vec::new();
    for ((path, recorded), digest) in entry.outputs.iter().zip(hasher.digest_many(&paths)) {
        match digest.map_err(|source| FreshnessError::Hash {
            stage: stage.to_string(),
            source,
        })? {
            None => reasons.push(DirtyReason::OutMissing { path: path.clone() }),
            Some(d) if d.sha256 != recorded.sha256 => {
                reasons.push(DirtyReason::OutModified { path: path.clone() })
            }
            Some(_) => {}
        }
    }
    Ok(reasons)
}

/// The full verdict for a stage whose upstream stages are done.
pub fn check(
    stage: &Stage,
    stage_env: &BTreeMap<String, String>,
    entry: Option<&LockEntry>,
    root: &Path,
    hasher: &Hasher,
    force: bool,
) -> Result<Check, FreshnessError> {
    let inputs = current_inputs(stage, stage_env, root, hasher)?;
    let fingerprint = inputs.fingerprint();
    if stage.frozen {
        return Ok(Check {
            inputs,
            fingerprint,
            state: State::Frozen,
        });
    }
    let mut reasons = Vec::new();
    if force {
        reasons.push(DirtyReason::Forced);
    }
    match entry {
        None => reasons.push(DirtyReason::NeverRun),
        Some(e) => {
            if e.fingerprint != fingerprint {
                let diff = compare(&e.inputs, &inputs);
                if diff.is_empty() {
                    reasons.push(DirtyReason::SchemeChanged);
                }
                reasons.extend(diff);
            }
            reasons.extend(check_outs(e, root, hasher, &stage.name)?);
        }
    }
    if stage.always_changed {
        reasons.push(DirtyReason::AlwaysChanged);
    }
    let state = if reasons.is_empty() {
        State::Fresh
    } else {
        State::Stale(reasons)
    };
    Ok(Check {
        inputs,
        fingerprint,
        state,
    })
}
