//! One stage body (after fan-out) to a validated [`Stage`]: the stage schema lives here.
//!
//! The body is interpolated first, as a whole, with the member's scope; only then are keys
//! read, so `deps: ${inputs}` (a whole list) works as well as `deps: [data/${item}]`. Every
//! check reports at the node it is about: the key for unknown keys, the value for wrong types,
//! the list item for a bad path or param.
//!
//! Defaults (fingerprint-relevant, never change silently): `frozen: false`,
//! `always_changed: false`, `deterministic: true`, `resources: {cpus: 1, gpus: 0, mem: 0}`,
//! outs and metrics `cache: true, persist: false`, `wdir: ""` (the pipeline's directory).

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::{SpecError, SpecErrorKind};
use super::fanout::Member;
use super::interp::{interpolate, value_cost, Budget, Scope};
use super::keys::{dotted_keys, get_dotted, suggestions};
use super::model::{Action, Dep, Location, Out, Resources, Stage};
use super::node::{only_keys, Entry, Node, Val};
use super::paths::{normalize_in, normalize_wdir, PathProblem};
use crate::builtin::Registry;

/// Keys a stage body may have.
pub(crate) const STAGE_KEYS: &[&str] = &[
    "cmd",
    "builtin",
    "with",
    "deps",
    "outs",
    "metrics",
    "params",
    "frozen",
    "always_changed",
    "deterministic",
    "resources",
    "wdir",
    "env",
];
/// Keys allowed next to the body keys in the stage map itself (not under `do:`).
const FANOUT_KEYS: &[&str] = &["matrix", "foreach", "do", "profiles"];
const OUT_KEYS: &[&str] = &["path", "cache", "persist"];
const RESOURCE_KEYS: &[&str] = &["cpus", "gpus", "mem"];

/// Checks the body's keys once per template (before fan-out, so a typo is reported once,
/// at the template, not per member).
pub(crate) fn check_keys(body: &Node, stage: &str, in_do: bool) -> Result<(), SpecError> {
    let Some(entries) = body.as_map() else {
        return Ok(());
    };
    for e in entries {
        let known = STAGE_KEYS.contains(&e.key.as_str())
            || (!in_do && FANOUT_KEYS.contains(&e.key.as_str()));
        if !known {
            let mut expected = STAGE_KEYS.to_vec();
            if !in_do {
                expected.extend_from_slice(&["matrix", "foreach", "profiles"]);
            }
            return Err(SpecError::at(
                e.key_loc,
                SpecErrorKind::UnknownKey {
                    key: e.key.clone(),
                    context: format!("in stage `{stage}`").into(),
                    expected,
                },
            ));
        }
    }
    Ok(())
}

/// Everything a member needs besides its own body.
pub(crate) struct Env<'a> {
    pub vars: &'a serde_json::Map<String, Value>,
    pub params: &'a Value,
    /// What expansion may still produce (see [`super::interp::Budget`]).
    pub budget: &'a Budget,
    pub builtins: Registry,
    /// Where the stage's key is written (`Stage.location`).
    pub location: Location,
}

pub(crate) fn build(member: &Member, env: &Env) -> Result<Stage, SpecError> {
    let name = member.name.as_str();
    let scope = Scope {
        item: member.item.as_ref(),
        key: member.key.as_ref(),
        vars: env.vars,
        params: env.params,
        budget: env.budget,
    };
    let body = interpolate(&member.body, &scope, &format!("in stage `{name}`").into())?;
    let b = Body { name, node: &body };

    let wdir = match b.get("wdir") {
        None => String::new(),
        Some(e) => {
            let s = b.string(e, "a path relative to the pipeline's directory")?;
            normalize_wdir(s).map_err(|p| path_error(p, "wdir", s, name, e.node.loc))?
        }
    };

    let action = action(&b, env)?;
    let deps = b
        .list(("deps", "a list of paths"))?
        .into_iter()
        .map(|n| {
            Ok(Dep {
                path: b.path(n, &wdir, "dep")?,
                location: n.loc,
            })
        })
        .collect::<Result<Vec<_>, SpecError>>()?;
    let mut outs = Vec::new();
    for (key, metric) in [("outs", false), ("metrics", true)] {
        for n in b.list((key, "a list of paths or `{path, cache, persist}` maps"))? {
            outs.push(b.out(n, &wdir, metric)?);
        }
    }
    let params = tracked_params(&b, env)?;
    let env_vars = env_names(&b)?;

    Ok(Stage {
        name: name.to_owned(),
        group: member.group.clone(),
        item: member.item.clone(),
        key: member.key.clone(),
        action,
        deps,
        outs,
        params,
        frozen: b.flag("frozen", false)?,
        always_changed: b.flag("always_changed", false)?,
        deterministic: b.flag("deterministic", true)?,
        resources: resources(&b)?,
        wdir,
        env: env_vars,
        location: env.location,
    })
}

/// The interpolated body with typed accessors that report at the right node.
struct Body<'a> {
    name: &'a str,
    node: &'a Node,
}

impl<'a> Body<'a> {
    fn get(&self, key: &str) -> Option<&'a Entry> {
        self.node.get(key)
    }

    fn wrong(&self, what: &str, node: &Node, expected: &'static str) -> SpecError {
        SpecError::at(
            node.loc,
            SpecErrorKind::WrongType {
                what: what.into(),
                context: format!("in stage `{}`", self.name).into(),
                expected,
                found: node.type_name(),
            },
        )
    }

    fn string<'n>(&self, e: &'n Entry, expected: &'static str) -> Result<&'n str, SpecError> {
        e.node
            .as_str()
            .ok_or_else(|| self.wrong(&e.key, &e.node, expected))
    }

    /// The items of a list-valued key; absent or null is an empty list.
    fn list(&self, (key, expected): (&str, &'static str)) -> Result<Vec<&'a Node>, SpecError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(e) => match &e.node.val {
                Val::Null => Ok(Vec::new()),
                Val::Seq(items) => Ok(items.iter().collect()),
                _ => Err(self.wrong(key, &e.node, expected)),
            },
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, SpecError> {
        match self.get(key) {
            None => Ok(default),
            Some(e) => match e.node.val {
                Val::Bool(b) => Ok(b),
                _ => Err(self.wrong(key, &e.node, "`true` or `false`")),
            },
        }
    }

    /// A path item (string, or a number such as a year-named directory).
    fn path(&self, n: &Node, wdir: &str, what: &'static str) -> Result<String, SpecError> {
        let raw = match &n.val {
            Val::Str(s) => s.clone(),
            Val::Num(x) => x.to_string(),
            _ => return Err(self.wrong(what, n, "a path (a string)")),
        };
        normalize_in(wdir, &raw).map_err(|p| path_error(p, what, &raw, self.name, n.loc))
    }

    fn out(&self, n: &Node, wdir: &str, metric: bool) -> Result<Out, SpecError> {
        let what = if metric { "metric" } else { "out" };
        let Some(entries) = n.as_map() else {
            return Ok(Out {
                path: self.path(n, wdir, what)?,
                cache: true,
                persist: false,
                metric,
                location: n.loc,
            });
        };
        let mut out = Out {
            path: String::new(),
            cache: true,
            persist: false,
            metric,
            location: n.loc,
        };
        let mut has_path = false;
        for e in entries {
            match e.key.as_str() {
                "path" => {
                    out.path = self.path(&e.node, wdir, what)?;
                    has_path = true;
                }
                "cache" | "persist" => {
                    let Val::Bool(v) = e.node.val else {
                        return Err(self.wrong(&e.key, &e.node, "`true` or `false`"));
                    };
                    if e.key == "cache" {
                        out.cache = v;
                    } else {
                        out.persist = v;
                    }
                }
                _ => {
                    return Err(SpecError::at(
                        e.key_loc,
                        SpecErrorKind::UnknownKey {
                            key: e.key.clone(),
                            context: format!("in {} of stage `{}`", with_article(what), self.name)
                                .into(),
                            expected: OUT_KEYS.to_vec(),
                        },
                    ))
                }
            }
        }
        if !has_path {
            return Err(self.wrong(what, n, "a path, or a map with a `path:` key"));
        }
        Ok(out)
    }
}

fn path_error(
    problem: PathProblem,
    what: &'static str,
    path: &str,
    stage: &str,
    loc: Location,
) -> SpecError {
    let kind = match problem {
        PathProblem::Outside => SpecErrorKind::OutsideWorkspace {
            what,
            path: path.to_owned(),
            stage: stage.to_owned(),
        },
        PathProblem::Empty => SpecErrorKind::EmptyPath {
            what,
            path: path.to_owned(),
            stage: stage.to_owned(),
        },
        PathProblem::Nul => SpecErrorKind::NulCharacter {
            what,
            value: path.to_owned(),
            stage: stage.to_owned(),
        },
    };
    SpecError::at(loc, kind)
}

fn action(b: &Body, env: &Env) -> Result<Action, SpecError> {
    let name = b.name;
    let cmd = b.get("cmd");
    let builtin = b.get("builtin");
    let with = b.get("with");
    match (cmd, builtin) {
        (Some(c), Some(_)) => Err(SpecError::at(
            c.key_loc,
            SpecErrorKind::BothActions {
                stage: name.to_owned(),
            },
        )),
        (None, None) => Err(SpecError::at(
            env.location,
            SpecErrorKind::MissingAction {
                stage: name.to_owned(),
            },
        )),
        (Some(c), None) => {
            if let Some(w) = with {
                return Err(SpecError::at(
                    w.key_loc,
                    SpecErrorKind::WithWithoutBuiltin {
                        stage: name.to_owned(),
                    },
                ));
            }
            let empty = || {
                SpecError::at(
                    c.node.loc,
                    SpecErrorKind::EmptyCmd {
                        stage: name.to_owned(),
                    },
                )
            };
            let mut cmds = match &c.node.val {
                Val::Str(s) => vec![s.clone()],
                Val::Seq(items) => items
                    .iter()
                    .map(|n| match &n.val {
                        Val::Str(s) if s.trim().is_empty() => Err(SpecError::at(
                            n.loc,
                            SpecErrorKind::EmptyCmd {
                                stage: name.to_owned(),
                            },
                        )),
                        Val::Str(s) => Ok(s.clone()),
                        _ => Err(b.wrong("cmd", n, "a shell command (a string)")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Val::Null => return Err(empty()),
                _ => return Err(b.wrong("cmd", &c.node, "a shell command or a list of them")),
            };
            if cmds.is_empty() || cmds.iter().all(|s| s.trim().is_empty()) {
                return Err(empty());
            }
            // `sh -c` takes the command as an argument, and no argument can hold a NUL.
            if let Some(i) = cmds.iter().position(|s| s.contains('\0')) {
                let at = match &c.node.val {
                    Val::Seq(items) => items[i].loc,
                    _ => c.node.loc,
                };
                return Err(SpecError::at(
                    at,
                    SpecErrorKind::NulCharacter {
                        what: "cmd",
                        value: cmds.swap_remove(i),
                        stage: name.to_owned(),
                    },
                ));
            }
            Ok(Action::Cmd(cmds))
        }
        (None, Some(k)) => {
            let kind = b.string(k, "the name of a builtin kind")?;
            let Some(builtin) = env.builtins.lookup(kind) else {
                return Err(SpecError::at(
                    k.node.loc,
                    SpecErrorKind::UnknownBuiltin {
                        stage: name.to_owned(),
                        kind: kind.to_owned(),
                        known: env
                            .builtins
                            .kinds()
                            .into_iter()
                            .map(str::to_owned)
                            .collect(),
                    },
                ));
            };
            // A `with:` key the kind does not read is a mistake at its line (a typo would
            // otherwise fail the stage minutes later, or be ignored by a lenient kind).
            if let (Some(entries), Some(keys)) =
                (with.and_then(|w| w.node.as_map()), builtin.params().keys)
            {
                only_keys(entries, keys, || {
                    format!("in `with:` of stage `{name}` (builtin `{kind}`)")
                })?;
            }
            let with = match with {
                None => serde_json::Map::new(),
                Some(w) => match w.node.to_json() {
                    Value::Object(m) => m,
                    Value::Null => serde_json::Map::new(),
                    _ => return Err(b.wrong("with", &w.node, "a map of params for the builtin")),
                },
            };
            Ok(Action::Builtin {
                kind: kind.to_owned(),
                version: builtin.version(),
                with,
            })
        }
    }
}

fn tracked_params(b: &Body, env: &Env) -> Result<BTreeMap<String, Value>, SpecError> {
    let params = env.params;
    let mut out = BTreeMap::new();
    for n in b.list(("params", "a list of dotted keys of the top-level `params:`"))? {
        let Some(key) = n.as_str() else {
            return Err(b.wrong(
                "params",
                n,
                "a dotted key of the top-level `params:` (a string)",
            ));
        };
        let Some(value) = get_dotted(params, key) else {
            return Err(SpecError::at(
                n.loc,
                SpecErrorKind::UnknownParam {
                    key: key.to_owned(),
                    context: format!(
                        "tracked by stage `{}` (stages may only track keys of `params:`)",
                        b.name
                    )
                    .into(),
                    suggestions: suggestions(key, &dotted_keys(params)),
                },
            ));
        };
        // Each member keeps its own copy of what it tracks.
        env.budget.charge(value_cost(value), n.loc)?;
        out.insert(key.to_owned(), value.clone());
    }
    Ok(out)
}

fn env_names(b: &Body) -> Result<Vec<String>, SpecError> {
    let mut out: Vec<String> = Vec::new();
    for n in b.list(("env", "a list of environment variable names"))? {
        let Some(name) = n.as_str() else {
            return Err(b.wrong("env", n, "an environment variable name (a string)"));
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(SpecError::at(
                n.loc,
                SpecErrorKind::BadEnvName {
                    stage: b.name.to_owned(),
                    name: name.to_owned(),
                },
            ));
        }
        if !out.iter().any(|x| x == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn resources(b: &Body) -> Result<Resources, SpecError> {
    let mut r = Resources::default();
    let Some(e) = b.get("resources") else {
        return Ok(r);
    };
    let Some(entries) = e.node.as_map() else {
        if e.node.is_null() {
            return Ok(r);
        }
        return Err(b.wrong(
            "resources",
            &e.node,
            "a map like `{cpus: 2, gpus: 1, mem: 8G}`",
        ));
    };
    for e in entries {
        let bad = |field: &'static str, reason: String| {
            SpecError::at(
                e.node.loc,
                SpecErrorKind::BadResource {
                    stage: b.name.to_owned(),
                    field,
                    reason,
                },
            )
        };
        match e.key.as_str() {
            "cpus" => {
                r.cpus = count(&e.node).map_err(|r| bad("cpus", r))?;
                if r.cpus == 0 {
                    return Err(bad("cpus", "a stage needs at least 1 cpu".to_owned()));
                }
            }
            "gpus" => r.gpus = count(&e.node).map_err(|r| bad("gpus", r))?,
            "mem" => r.mem = mem_bytes(&e.node).map_err(|r| bad("mem", r))?,
            _ => {
                return Err(SpecError::at(
                    e.key_loc,
                    SpecErrorKind::UnknownKey {
                        key: e.key.clone(),
                        context: format!("in `resources` of stage `{}`", b.name).into(),
                        expected: RESOURCE_KEYS.to_vec(),
                    },
                ))
            }
        }
    }
    Ok(r)
}

fn count(n: &Node) -> Result<u32, String> {
    match &n.val {
        Val::Num(x) => x
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                format!("`{x}` is not a whole number of devices; write a count like `2`")
            }),
        _ => Err(format!("expected a whole number, found {}", n.type_name())),
    }
}

/// `mem:` as bytes: a whole number of bytes, or a number with a `K`/`M`/`G`/`T` suffix
/// (1024-based; `KB`, `KiB`, `k` are read the same), like `8G` or `1.5G`.
fn mem_bytes(n: &Node) -> Result<u64, String> {
    let hint = "write bytes or a size like `512M`, `8G` (1024-based)";
    match &n.val {
        Val::Num(x) => x
            .as_u64()
            .ok_or_else(|| format!("`{x}` is not a whole number of bytes; {hint}")),
        Val::Str(s) => parse_size(s).ok_or_else(|| format!("`{s}` is not a size; {hint}")),
        _ => Err(format!("expected a size, found {}; {hint}", n.type_name())),
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    if let Ok(whole) = num.parse::<u64>() {
        return whole.checked_mul(mult);
    }
    let x: f64 = num.parse().ok()?;
    let bytes = (x * mult as f64).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `an out`, `a metric`: the article English puts before `word`.
fn with_article(word: &str) -> String {
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "aeiou".contains(c.to_ascii_lowercase()));
    format!("{} {word}", if vowel { "an" } else { "a" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_1024_based() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("2gib"), Some(2 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("8X"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("-1G"), None);
    }
}
