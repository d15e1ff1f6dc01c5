//! `matrix:` and `foreach:`: one stage template fanned out into named members.
//!
//! Naming follows DVC so DVC users can read it, and must never change silently (member names
//! are lock keys and CLI targets):
//! - `matrix: {seed: [1, 2], method: [sn, sr]}` is the cartesian product with the *first* key
//!   varying slowest: `train@1-sn`, `train@1-sr`, `train@2-sn`, `train@2-sr`. Each part is the
//!   value's text for a scalar, or `<key><index>` for a list or map value (`cfg0`). The member
//!   sees `${item.seed}`, `${item.method}`.
//! - A matrix axis may also be a map: `matrix: {sr: {none: none, warm: {mode: dynamic}}}` names
//!   its part of the member by the map's key (`train@warm`) and gives the member the key as
//!   `${key.sr}` and the value as `${item.sr}`, as `foreach:` over a map does. So a grid over
//!   structured settings keeps readable member names.
//! - `foreach: [a, b]` gives `eval@a`, `eval@b` with `${item}`; a list of non-scalars is named by
//!   index (`eval@0`). `foreach: {x: ..., y: ...}` gives `eval@x`, `eval@y` with `${key}` and
//!   `${item}`. The stage body sits under `do:`.
//! - Either may be a single `${...}` that yields the list or map, so a profile can change the
//!   grid (`matrix: {seed: ${seeds}}`, `foreach: ${datasets}`).
//!
//! Members are charged to the pipeline's expansion budget (see `interp::Budget`) before they
//! are built, so a `matrix:` whose product is astronomically large is refused, not allocated.
//!
//! Every member carries the template's positions: errors in `train@2-sr` point at the line
//! where `train` was written.

use serde_json::{Map, Value};

use super::error::{SpecError, SpecErrorKind};
use super::interp::{interpolate, node_cost, scalar_text, Scope};
use super::model::Location;
use super::node::{only_keys, Entry, Node, Val};

/// One stage to build: a plain stage, or one member of a fan-out.
pub(crate) struct Member {
    pub name: String,
    pub group: Option<String>,
    /// The stage body (keys like `cmd`, `deps`), not yet interpolated.
    pub body: Node,
    pub item: Option<Value>,
    /// `${key}`: the `foreach` map key (a string), or per map axis of a `matrix` its key (an
    /// object from axis name to key).
    pub key: Option<Value>,
}

/// Keys a `foreach` stage may have (the body goes under `do:`; `profiles:` restricts the whole
/// group, as on any stage).
const FOREACH_KEYS: &[&str] = &["foreach", "do", "profiles"];

/// Expands one entry of `stages:` into its members, in expansion order.
pub(crate) fn expand(name: &str, stage: &Node, base: &Scope) -> Result<Vec<Member>, SpecError> {
    let Some(entries) = stage.as_map() else {
        return Err(SpecError::at(
            stage.loc,
            SpecErrorKind::WrongType {
                what: name.into(),
                context: "under `stages:`".into(),
                expected: "a map (with `cmd:` or `builtin:`)",
                found: stage.type_name(),
            },
        ));
    };
    let bad = |loc: Location, reason: &str| {
        SpecError::at(
            loc,
            SpecErrorKind::BadFanOut {
                stage: name.to_owned(),
                reason: reason.to_owned(),
            },
        )
    };
    let foreach = stage.get("foreach");
    let matrix = stage.get("matrix");
    let do_ = stage.get("do");
    match (foreach, matrix, do_) {
        (Some(_), Some(m), _) => Err(bad(
            m.key_loc,
            "a stage has either `foreach:` or `matrix:`, not both",
        )),
        (Some(f), None, do_) => {
            only_keys(entries, FOREACH_KEYS, || {
                format!("in `foreach` stage `{name}` (the stage's keys go under `do:`)")
            })?;
            let Some(do_) = do_ else {
                return Err(bad(
                    f.key_loc,
                    "`foreach:` needs a `do:` map with the stage's keys",
                ));
            };
            if do_.node.as_map().is_none() {
                return Err(SpecError::at(
                    do_.node.loc,
                    SpecErrorKind::WrongType {
                        what: "do".into(),
                        context: format!("in stage `{name}`").into(),
                        expected: "a map of the stage's keys (`cmd:`, `deps:`, ...)",
                        found: do_.node.type_name(),
                    },
                ));
            }
            expand_foreach(name, f, &do_.node, base)
        }
        (None, Some(m), None) => {
            let body_entries: Vec<Entry> = entries
                .iter()
                .filter(|e| e.key != "matrix")
                .cloned()
                .collect();
            let body = Node {
                loc: stage.loc,
                val: Val::Map(body_entries),
            };
            expand_matrix(name, m, body, base)
        }
        (None, Some(_), Some(d)) | (None, None, Some(d)) => Err(bad(
            d.key_loc,
            "`do:` only goes with `foreach:`; put the stage's keys directly under the stage",
        )),
        (None, None, None) => {
            base.budget.take_stages(1, stage.loc)?;
            Ok(vec![Member {
                name: name.to_owned(),
                group: None,
                body: stage.clone(),
                item: None,
                key: None,
            }])
        }
    }
}

/// Resolves a fan-out value that may be one `${...}` yielding the list or map.
fn resolve(node: &Node, base: &Scope, name: &str, what: &str) -> Result<Node, SpecError> {
    interpolate(node, base, &format!("in `{what}` of stage `{name}`").into())
}

fn expand_foreach(
    name: &str,
    f: &Entry,
    body: &Node,
    base: &Scope,
) -> Result<Vec<Member>, SpecError> {
    let items = resolve(&f.node, base, name, "foreach")?;
    let body_cost = node_cost(body);
    let member = |suffix: String, item: Value, key: Option<Value>| -> Result<Member, SpecError> {
        base.budget.charge(body_cost, f.key_loc)?;
        Ok(Member {
            name: member_name(name, &suffix, f.node.loc)?,
            group: Some(name.to_owned()),
            body: body.clone(),
            item: Some(item),
            key,
        })
    };
    let count = match &items.val {
        Val::Seq(list) => list.len(),
        Val::Map(entries) => entries.len(),
        _ => 0,
    };
    base.budget.take_stages(count, f.key_loc)?;
    let members = match &items.val {
        Val::Seq(list) => list
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let v = n.to_json();
                let suffix = match v {
                    Value::Array(_) | Value::Object(_) => i.to_string(),
                    ref s => scalar_text(s).unwrap_or_else(|| i.to_string()),
                };
                member(suffix, v, None)
            })
            .collect::<Result<Vec<_>, _>>()?,
        Val::Map(entries) => entries
            .iter()
            .map(|e| {
                member(
                    e.key.clone(),
                    e.node.to_json(),
                    Some(Value::String(e.key.clone())),
                )
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(SpecError::at(
                items.loc,
                SpecErrorKind::WrongType {
                    what: "foreach".into(),
                    context: format!("in stage `{name}`").into(),
                    expected: "a list or a map (or a `${...}` that yields one)",
                    found: items.type_name(),
                },
            ))
        }
    };
    if members.is_empty() {
        return Err(SpecError::at(
            items.loc,
            SpecErrorKind::BadFanOut {
                stage: name.to_owned(),
                reason: "`foreach:` is empty, so the stage would have no members; give it at least one item".to_owned(),
            },
        ));
    }
    Ok(members)
}

fn expand_matrix(
    name: &str,
    m: &Entry,
    body: Node,
    base: &Scope,
) -> Result<Vec<Member>, SpecError> {
    let matrix = resolve(&m.node, base, name, "matrix")?;
    let Some(axes_nodes) = matrix.as_map() else {
        return Err(SpecError::at(
            matrix.loc,
            SpecErrorKind::WrongType {
                what: "matrix".into(),
                context: format!("in stage `{name}`").into(),
                expected: "a map from names to lists of values",
                found: matrix.type_name(),
            },
        ));
    };
    if axes_nodes.is_empty() {
        return Err(SpecError::at(
            matrix.loc,
            SpecErrorKind::BadFanOut {
                stage: name.to_owned(),
                reason: "`matrix:` is empty; give it at least one key with a list of values"
                    .to_owned(),
            },
        ));
    }
    // Per axis: its key, whether it is a map axis, and (name part, value) per value.
    type Axis = (String, bool, Vec<(String, Value)>);
    let mut axes: Vec<Axis> = Vec::with_capacity(axes_nodes.len());
    for axis in axes_nodes {
        let values = resolve(&axis.node, base, name, &format!("matrix.{}", axis.key))?;
        let parts: Vec<(String, Value)> = match &values.val {
            Val::Seq(list) => list
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let v = n.to_json();
                    let part = match &v {
                        Value::Array(_) | Value::Object(_) => format!("{}{i}", axis.key),
                        s => scalar_text(s).unwrap_or_default(),
                    };
                    (part, v)
                })
                .collect(),
            Val::Map(entries) => entries
                .iter()
                .map(|e| (e.key.clone(), e.node.to_json()))
                .collect(),
            _ => {
                return Err(SpecError::at(
                    values.loc,
                    SpecErrorKind::WrongType {
                        what: format!("matrix.{}", axis.key).into(),
                        context: format!("in stage `{name}`").into(),
                        expected: "a list of values or a map of named values (or a `${...}` that yields one)",
                        found: values.type_name(),
                    },
                ));
            }
        };
        if parts.is_empty() {
            return Err(SpecError::at(
                values.loc,
                SpecErrorKind::BadFanOut {
                    stage: name.to_owned(),
                    reason: format!("`matrix.{}` is empty, so the stage would have no members; give it at least one value", axis.key),
                },
            ));
        }
        axes.push((axis.key.clone(), matches!(values.val, Val::Map(_)), parts));
    }
    // The product is charged before anything is built: ten keys of ten values are 10^10
    // members, which must be refused, not allocated.
    let too_many = || {
        SpecError::at(
            m.key_loc,
            SpecErrorKind::TooMuchExpansion {
                nodes: super::limits().expanded_nodes,
                bytes: super::limits().expanded_bytes,
            },
        )
    };
    let total = axes
        .iter()
        .try_fold(1usize, |acc, (_, _, v)| acc.checked_mul(v.len()))
        .ok_or_else(too_many)?;
    base.budget.take_stages(total, m.key_loc)?;
    let (body_nodes, body_bytes) = node_cost(&body);
    let per_member = (body_nodes + axes.len(), body_bytes);
    match (
        per_member.0.checked_mul(total),
        per_member.1.checked_mul(total),
    ) {
        (Some(nodes), Some(bytes)) => base.budget.charge((nodes, bytes), m.key_loc)?,
        _ => return Err(too_many()),
    }
    let mut members = Vec::with_capacity(total);
    let mut idx = vec![0usize; axes.len()];
    for _ in 0..total {
        let mut item = Map::with_capacity(axes.len());
        let mut keys = Map::new();
        let mut parts = Vec::with_capacity(axes.len());
        for (a, (key, is_map, values)) in axes.iter().enumerate() {
            let (part, v) = &values[idx[a]];
            parts.push(part.as_str());
            item.insert(key.clone(), v.clone());
            if *is_map {
                keys.insert(key.clone(), Value::String(part.clone()));
            }
        }
        members.push(Member {
            name: member_name(name, &parts.join("-"), m.node.loc)?,
            group: Some(name.to_owned()),
            body: body.clone(),
            item: Some(Value::Object(item)),
            key: (!keys.is_empty()).then_some(Value::Object(keys)),
        });
        // Odometer: the last axis varies fastest.
        for a in (0..axes.len()).rev() {
            idx[a] += 1;
            if idx[a] < axes[a].2.len() {
                break;
            }
            idx[a] = 0;
        }
    }
    Ok(members)
}

/// `group@suffix`, refusing suffixes that would make the name ambiguous on the command line.
fn member_name(group: &str, suffix: &str, loc: Location) -> Result<String, SpecError> {
    let name = format!("{group}@{suffix}");
    match reserved(suffix) {
        Some(reason) => Err(SpecError::at(
            loc,
            SpecErrorKind::ReservedStageName {
                name,
                reason,
                member: true,
            },
        )),
        None => Ok(name),
    }
}

/// Checks a stage name as written under `stages:`. Names are CLI targets and lock keys: `@`
/// is the fan-out separator, `/` would read as a path, whitespace would split on the command
/// line, and a control character (a `"\0"` escape above all: no argument or file name can hold
/// one) would fail the run, or the terminal, much later.
pub(crate) fn check_stage_name(name: &str, loc: Location) -> Result<(), SpecError> {
    match reserved(name) {
        Some(reason) => Err(SpecError::at(
            loc,
            SpecErrorKind::ReservedStageName {
                name: name.to_owned(),
                reason,
                member: false,
            },
        )),
        None => Ok(()),
    }
}

/// Why `part` (a stage name, or a member's part after `@`) cannot be used, if it cannot.
fn reserved(part: &str) -> Option<&'static str> {
    if part.is_empty() {
        Some("is empty")
    } else if part.contains('@') {
        Some("contains `@`")
    } else if part.contains('/') {
        Some("contains `/`")
    } else if part.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else if part.contains('\0') {
        // A `"\0"` escape: no command line, lock key or file name can hold it.
        Some("contains a NUL character (`\\0`)")
    } else if part.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}
