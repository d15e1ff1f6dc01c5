//! `pipeline.yaml`: schema, `${}` interpolation, profiles, matrix/foreach expansion, validation.
//!
//! [`load`] / [`parse`] turn the file into a [`Pipeline`] whose stages are final: fanned out,
//! interpolated, overlaid and validated, with workspace-relative normalized paths. Nothing after
//! this module looks at YAML again, so every mistake in the file must be caught here and
//! reported as `FILE:LINE:COL: message` (see [`SpecError`]).
//!
//! The passes, in order (the order is part of the meaning; see each module's doc):
//! 0. [`load`]: at most [`MAX_FILE_BYTES`] read, and the text must be UTF-8 (a bad byte is
//!    reported at its line and column).
//! 1. [`node`]: YAML to a located tree (values by serde_norway, positions by [`marks`], which
//!    reads libyaml's event stream: the same parser serde_norway uses, so both agree). The
//!    position pass runs first and bounds nesting, nodes and alias expansion, so that no
//!    file, however hostile, costs more than a fraction of a second before it is refused.
//! 2. Top-level schema: `vars`, `params`, `default_profile`, `profiles`, `stages`, and
//!    [`executor`] (where stages run; never part of a fingerprint).
//! 3. [`overlay`]: the profile (`--profile`, else `default_profile:`) deep-merged over `params:`,
//!    then each `--set key.path=value`.
//! 4. [`fanout`]: each stage template to its members (`matrix:`, `foreach:`), DVC's naming.
//! 5. [`stage`]: each member's body [`interp`]olated, then read into a [`Stage`], with
//!    [`paths`] normalized and joined with `wdir`.
//! 6. Duplicate names across all members.
//!
//! Not decided here (the DAG module does it, with the locations recorded here): two stages
//! writing one out, cycles, and deps that neither exist nor are made by a stage.

pub mod error;
mod executor;
mod fanout;
mod interp;
pub mod keys;
mod marks;
pub mod model;
mod node;
mod overlay;
mod paths;
mod stage;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

pub use error::{SpecError, SpecErrorKind};
pub use model::*;

/// `path` (workspace-relative) in the one form the engine gives every dep and out, as
/// `repro dag --json` lists them: `/`-separated, no `.` segments or leading `./`, no trailing
/// `/`, `..` resolved lexically. `None` when it is empty, absolute or leaves the workspace. For
/// a stage that compares its own path params with the pipeline's outs.
pub fn canonical_path(path: &str) -> Option<String> {
    paths::normalize_in("", path).ok()
}

use crate::builtin::Registry;
use interp::Scope;
use node::{Node, Val};
use stage::Env;

/// Options from the command line that change what the file means.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--profile NAME`; overrides `default_profile:`.
    pub profile: Option<String>,
    /// `--set key.path=value`, applied in order after the profile.
    pub sets: Vec<String>,
    /// The builtin kinds `builtin:` may name (none by default).
    pub builtins: Registry,
}

/// Top-level keys of `pipeline.yaml`.
const TOP_KEYS: &[&str] = &[
    "vars",
    "params",
    "default_profile",
    "profiles",
    "stages",
    "executor",
];

/// The largest pipeline file read, in bytes (8 MiB, times [`SCALE_ENV`]). A hand-written
/// pipeline is a few kilobytes and a generated 1,000-stage one about 100 KiB (the 10,000 stages
/// allowed after fan-out, written out, about 2 MiB), so this only stops a wrong file (a
/// dataset, a device, `/dev/zero`) or a hostile one before any of it is parsed. Every byte is
/// copied a few times on the way to a [`Pipeline`]; at this size one long string costs about
/// 0.4 s and 35 MB, inside the budget of a second and 100 MB that every bound here is sized for.
pub const MAX_FILE_BYTES: usize = 8 << 20;

/// The environment variable that multiplies every size bound of a pipeline (file size, values,
/// text, expansion, stages; not nesting depth or the alias ratio, which no real pipeline comes
/// near): a whole number from 1 to 1000. The defaults keep any file, hostile or not, under a
/// second and 100 MB; a generated pipeline of 100,000 stages (about 20 MB written out) needs
/// `REPRO_SPEC_SCALE=10`, and costs accordingly. Opting in is explicit, so a wrong or hostile
/// file never gets the larger budget by accident.
pub const SCALE_ENV: &str = "REPRO_SPEC_SCALE";

/// The size bounds in force: the base limits of `marks` and `interp` times [`SCALE_ENV`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub file_bytes: usize,
    pub nodes: usize,
    pub text_bytes: usize,
    pub expanded_nodes: usize,
    pub expanded_bytes: usize,
    pub stages: usize,
}

/// The scale factor from [`SCALE_ENV`], or why it is unusable.
fn scale() -> Result<usize, String> {
    static SCALE: std::sync::OnceLock<Result<usize, String>> = std::sync::OnceLock::new();
    SCALE
        .get_or_init(|| match std::env::var(SCALE_ENV) {
            Err(_) => Ok(1),
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(v),
            },
        })
        .clone()
}

/// The bounds in force (the defaults where [`SCALE_ENV`] is unusable: [`load`] refuses to
/// read anything then, saying why).
pub(crate) fn limits() -> Limits {
    let k = scale().unwrap_or(1);
    Limits {
        file_bytes: MAX_FILE_BYTES * k,
        nodes: marks::MAX_NODES * k,
        text_bytes: marks::MAX_TEXT_BYTES * k,
        expanded_nodes: interp::MAX_EXPANDED_NODES * k,
        expanded_bytes: interp::MAX_EXPANDED_BYTES * k,
        stages: interp::MAX_STAGES * k,
    }
}

/// Reads and parses the pipeline file at `path`.
///
/// At most [`MAX_FILE_BYTES`] (plus one, to tell) are read, whatever the file is. Text that
/// is not UTF-8 is reported at the first bad byte, with its line and column.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Pipeline, SpecError> {
    let with_file = |mut e: SpecError| {
        e.file = path.to_path_buf();
        e
    };
    if let Err(value) = scale() {
        return Err(with_file(SpecError::nowhere(SpecErrorKind::BadScale {
            var: SCALE_ENV,
            value,
        })));
    }
    let bytes = read_bounded(path).map_err(with_file)?;
    let text =
        String::from_utf8(bytes).map_err(|e| with_file(not_utf8(e.as_bytes(), e.utf8_error())))?;
    parse(&text, path, opts)
}

/// The file's bytes, or why not (unreadable, or over [`MAX_FILE_BYTES`]).
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, SpecError> {
    use std::io::Read;
    let read = |source| SpecError::nowhere(SpecErrorKind::Read { source });
    let file = std::fs::File::open(path).map_err(read)?;
    // A regular file's size says it all; `take` below covers the rest (pipes, devices).
    let size = file.metadata().map_or(0, |m| m.len());
    let max = limits().file_bytes;
    if size > max as u64 {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(size as usize + 1);
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok(bytes)
}

fn too_large() -> SpecError {
    SpecError::nowhere(SpecErrorKind::FileTooLarge {
        limit: limits().file_bytes,
    })
}

/// A UTF-8 error at the first invalid byte, located by line and column (in characters).
fn not_utf8(bytes: &[u8], e: std::str::Utf8Error) -> SpecError {
    let offset = e.valid_up_to();
    // Valid up to `offset` by definition, so this cannot fail.
    let before = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let loc = Location {
        line: before.matches('\n').count() + 1,
        col: before[line_start..].chars().count() + 1,
    };
    SpecError::at(
        loc,
        SpecErrorKind::NotUtf8 {
            offset,
            byte: bytes[offset],
            utf16: bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]),
        },
    )
}

/// Parses pipeline text; `file` is only used in messages and [`Pipeline::file`].
pub fn parse(text: &str, file: &Path, opts: &LoadOptions) -> Result<Pipeline, SpecError> {
    let resolved = if text.len() > limits().file_bytes {
        Err(too_large())
    } else {
        resolve(text, file, opts)
    };
    resolved.map_err(|mut e| {
        e.file = file.to_path_buf();
        e
    })
}

fn resolve(text: &str, file: &Path, opts: &LoadOptions) -> Result<Pipeline, SpecError> {
    let root = node::parse_located(text)?;
    let top: &[node::Entry] = match &root.val {
        Val::Null => &[],
        Val::Map(entries) => entries,
        _ => {
            return Err(wrong_top(
                "the pipeline file",
                &root,
                "a map with `stages:` (and optionally `params:`, `vars:`, `profiles:`)",
            ))
        }
    };
    node::only_keys(top, TOP_KEYS, || "at the top level".into())?;
    let get = |k: &str| {
        top.iter()
            .find(|e| e.key == k)
            .map(|e| &e.node)
            .filter(|n| !n.is_null())
    };

    let vars = match get("vars") {
        None => serde_json::Map::new(),
        Some(n) if n.as_map().is_some() => match n.to_json() {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        },
        Some(n) => return Err(wrong_top("vars", n, "a map of names to values")),
    };
    let mut params = match get("params") {
        None => Value::Object(serde_json::Map::new()),
        Some(n) if n.as_map().is_some() => n.to_json(),
        Some(n) => return Err(wrong_top("params", n, "a map of names to values")),
    };
    let profiles: &[node::Entry] = match get("profiles") {
        None => &[],
        Some(n) => n
            .as_map()
            .ok_or_else(|| wrong_top("profiles", n, "a map of profile names to param overrides"))?,
    };
    let default_profile = match get("default_profile") {
        None => None,
        Some(n) => Some((
            n.as_str()
                .ok_or_else(|| wrong_top("default_profile", n, "a profile name"))?,
            n.loc,
        )),
    };

    let selected = select_profile(opts, default_profile);
    apply_overlays(&mut params, profiles, selected, &opts.sets)?;
    interp::check_ambiguous(get("vars"), &params)?;

    let stage_entries: &[node::Entry] = match get("stages") {
        None => &[],
        Some(n) => n
            .as_map()
            .ok_or_else(|| wrong_top("stages", n, "a map of stage names to stages"))?,
    };
    let active = Active {
        profile: selected.map(|(p, _)| p),
        defined: profiles.iter().map(|e| e.key.as_str()).collect(),
    };
    let (stages, groups) = expand_stages(stage_entries, &vars, &params, opts.builtins, &active)?;
    check_reserved_outs(&stages, file)?;
    let executor = get("executor").map(executor::parse).transpose()?;

    Ok(Pipeline {
        file: file.to_path_buf(),
        profile: selected.map(|(p, _)| p.to_owned()),
        sets: opts.sets.clone(),
        params,
        stages,
        groups,
        executor,
    })
}

/// Paths of the workspace that belong to repro, never to a stage: its state directory (the
/// cache, the journal, staging, the project lock), `repro.lock`, and the pipeline file itself
/// (whose directory is the workspace root, so its name is its workspace path). An out there
/// would let a stage delete the cache, overwrite the pipeline, or stay stale forever.
const RESERVED: [&str; 2] = [".repro", crate::lockfile::LOCK_FILE];

fn check_reserved_outs(stages: &[Stage], file: &Path) -> Result<(), SpecError> {
    let pipeline = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    for stage in stages {
        for out in &stage.outs {
            let hit = RESERVED
                .iter()
                .chain(std::iter::once(&pipeline))
                .find(|r| crate::dag::is_within(&out.path, r));
            if let Some(reserved) = hit {
                return Err(SpecError::at(
                    out.location,
                    SpecErrorKind::ReservedOut {
                        path: out.path.clone(),
                        reserved: (*reserved).into(),
                        stage: stage.name.clone(),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// The profile to apply and, when it comes from `default_profile:`, where that is written.
fn select_profile<'a>(
    opts: &'a LoadOptions,
    default_profile: Option<(&'a str, Location)>,
) -> Option<(&'a str, Option<Location>)> {
    match (&opts.profile, default_profile) {
        (Some(p), _) => Some((p.as_str(), None)),
        (None, Some((p, loc))) => Some((p, Some(loc))),
        (None, None) => None,
    }
}

/// The profile, then each `--set`, over `params` (see [`overlay`] for why in this order).
fn apply_overlays(
    params: &mut Value,
    profiles: &[node::Entry],
    selected: Option<(&str, Option<Location>)>,
    sets: &[String],
) -> Result<(), SpecError> {
    if let Some((name, loc)) = selected {
        let Some(profile) = profiles.iter().find(|e| e.key == name) else {
            let kind = SpecErrorKind::UnknownProfile {
                profile: name.to_owned(),
                defined: profiles.iter().map(|e| e.key.clone()).collect(),
            };
            return Err(match loc {
                Some(loc) => SpecError::at(loc, kind),
                None => SpecError::nowhere(kind),
            });
        };
        if !profile.node.is_null() {
            overlay::apply_profile(params, &profile.node, name)?;
        }
    }
    for set in sets {
        overlay::apply_set(params, set)?;
    }
    Ok(())
}

type Expanded = (Vec<Stage>, BTreeMap<String, Vec<String>>);

/// Every entry of `stages:` checked, fanned out and built, with the fan-out groups.
/// The profile in force and the defined ones, for stages restricted with `profiles:`.
struct Active<'a> {
    profile: Option<&'a str>,
    defined: Vec<&'a str>,
}

/// Whether a stage with an optional `profiles: [..]` list exists under the active profile. A
/// stage without the key exists under every profile; a listed name must be a defined profile.
fn in_active_profile(entry: &node::Entry, active: &Active) -> Result<bool, SpecError> {
    let Some(list) = entry.node.get("profiles") else {
        return Ok(true);
    };
    let wrong = |n: &Node| {
        SpecError::at(
            n.loc,
            SpecErrorKind::WrongType {
                what: "`profiles`".into(),
                context: format!("in stage `{}`", entry.key).into(),
                expected: "a list of profile names",
                found: n.type_name(),
            },
        )
    };
    let node::Val::Seq(items) = &list.node.val else {
        return Err(wrong(&list.node));
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let name = item.as_str().ok_or_else(|| wrong(item))?;
        if !active.defined.contains(&name) {
            return Err(SpecError::at(
                item.loc,
                SpecErrorKind::UnknownProfile {
                    profile: name.to_owned(),
                    defined: active.defined.iter().map(|d| d.to_string()).collect(),
                },
            ));
        }
        names.push(name);
    }
    Ok(active.profile.is_some_and(|p| names.contains(&p)))
}

fn expand_stages(
    entries: &[node::Entry],
    vars: &serde_json::Map<String, Value>,
    params: &Value,
    builtins: Registry,
    active: &Active,
) -> Result<Expanded, SpecError> {
    let budget = interp::Budget::new();
    let base = Scope {
        item: None,
        key: None,
        vars,
        params,
        budget: &budget,
    };
    let mut stages = Vec::with_capacity(entries.len());
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen: HashMap<String, Location> = HashMap::with_capacity(entries.len());
    for entry in entries {
        fanout::check_stage_name(&entry.key, entry.key_loc)?;
        if !in_active_profile(entry, active)? {
            continue;
        }
        match entry.node.get("do") {
            Some(d) if entry.node.get("foreach").is_some() => {
                stage::check_keys(&d.node, &entry.key, true)?
            }
            _ => stage::check_keys(&entry.node, &entry.key, false)?,
        }
        let members = fanout::expand(&entry.key, &entry.node, &base)?;
        let env = Env {
            vars,
            params,
            budget: &budget,
            builtins,
            location: entry.key_loc,
        };
        for m in members {
            if let Some(first) = seen.get(&m.name) {
                return Err(SpecError::at(
                    entry.key_loc,
                    SpecErrorKind::DuplicateStage {
                        name: m.name.clone(),
                        first: *first,
                        same_template: *first == entry.key_loc,
                    },
                ));
            }
            seen.insert(m.name.clone(), entry.key_loc);
            let built = stage::build(&m, &env)?;
            if let Some(g) = &built.group {
                groups
                    .entry(g.clone())
                    .or_default()
                    .push(built.name.clone());
            }
            stages.push(built);
        }
    }

    Ok((stages, groups))
}

fn wrong_top(what: &str, n: &Node, expected: &'static str) -> SpecError {
    SpecError::at(
        n.loc,
        SpecErrorKind::WrongType {
            what: what.into(),
            context: "at the top level".into(),
            expected,
            found: n.type_name(),
        },
    )
}

#[cfg(test)]
mod tests;
