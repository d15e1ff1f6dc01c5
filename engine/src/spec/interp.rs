//! `${...}` interpolation.
//!
//! What it decides, and what must not change silently (a change alters fingerprints):
//! - A reference `${a.b.c}` resolves its first segment in order: the fan-out member's `item`
//!   and `key`, then `vars:`, then `params:` (after profile and `--set`). Later segments walk
//!   into maps (by key) and lists (by index). A name in both `vars` and `params` is rejected
//!   up front (see [`check_ambiguous`]), so the order between those two never matters.
//! - A string that is exactly one `${...}` becomes the referenced value *with its type*
//!   (`lr: ${lr}` is the number 0.0002, `seeds: ${seeds}` a list). Anywhere else the value is
//!   formatted into the text: numbers as YAML prints them (serde's shortest round-trip form,
//!   `0.0002`, `1e-5`), booleans as `true`/`false`, null as `null`; a list or map inside a
//!   longer string is an error, because no single text form of it would be right for a shell.
//! - `$${` is a literal `${`. A lone `$` or `$$` (shell variables, the PID) passes through.
//!
//! Expansion is bounded: what interpolation adds (each whole value copied in, each text
//! inserted), with the fan-out members' copies of their bodies and the stages themselves, is
//! taken from one [`Budget`] per pipeline, so a small file cannot multiply into an unbounded
//! one.

use std::cell::Cell;

use serde_json::{Map, Value};

use super::error::{Context, SpecError, SpecErrorKind};
use super::model::Location;
use super::node::{Entry, Node, Val};

/// Values (scalars, lists, maps) that fan-out and `${...}` may produce for one pipeline, in
/// all: every fan-out member's copy of its body, every whole value a reference copies in,
/// every tracked param a stage keeps. The YAML pass bounds what the file *is* (see `marks`);
/// this bounds what it *expands to*, which a small file can multiply (a `matrix:` of ten keys
/// of ten values is 10^10 members; a list of `${big}` copies `big` per item). A stage costs
/// tens of values, so the limit holds 10,000 members of 40 values each; every value costs a
/// few microseconds and a hundred bytes in the passes after this one (paths, the graph,
/// `repro status`), which keeps the worst case around a second and under 100 MB.
pub(crate) const MAX_EXPANDED_NODES: usize = 400_000;

/// Bytes of text the same expansion may produce (strings built or copied by `${...}`, member
/// bodies): the file size limit, since each byte is copied several times after this pass.
pub(crate) const MAX_EXPANDED_BYTES: usize = super::MAX_FILE_BYTES;

/// Stages of one pipeline after fan-out. Each costs far more than its body (a process to run,
/// a lock entry, fingerprints, a row in every report), so they are bounded on their own: ten
/// times the 1,000-stage pipelines this engine is benchmarked on, which keeps `repro status`
/// on the largest pipeline allowed around a second.
pub(crate) const MAX_STAGES: usize = 10_000;

/// What expansion may still produce; shared by every scope of one pipeline.
pub(crate) struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
    stages: Cell<usize>,
}

impl Budget {
    /// The budget of one pipeline: [`MAX_EXPANDED_NODES`] and [`MAX_EXPANDED_BYTES`].
    pub fn new() -> Budget {
        Budget {
            nodes: Cell::new(super::limits().expanded_nodes),
            bytes: Cell::new(super::limits().expanded_bytes),
            stages: Cell::new(super::limits().stages),
        }
    }

    /// Takes `n` stages (a plain stage, or a fan-out's members before they are built), or
    /// fails at `loc` when the pipeline would have more than [`MAX_STAGES`].
    pub fn take_stages(&self, n: usize, loc: Location) -> Result<(), SpecError> {
        match self.stages.get().checked_sub(n) {
            Some(left) => {
                self.stages.set(left);
                Ok(())
            }
            None => Err(SpecError::at(
                loc,
                SpecErrorKind::TooManyStages {
                    limit: super::limits().stages,
                },
            )),
        }
    }

    /// Takes `(nodes, bytes)` from the budget, or fails at `loc` when it does not hold them.
    pub fn charge(&self, (nodes, bytes): (usize, usize), loc: Location) -> Result<(), SpecError> {
        match (
            self.nodes.get().checked_sub(nodes),
            self.bytes.get().checked_sub(bytes),
        ) {
            (Some(n), Some(b)) => {
                self.nodes.set(n);
                self.bytes.set(b);
                Ok(())
            }
            _ => Err(SpecError::at(
                loc,
                SpecErrorKind::TooMuchExpansion {
                    nodes: super::limits().expanded_nodes,
                    bytes: super::limits().expanded_bytes,
                },
            )),
        }
    }
}

/// The expansion limits in force, read once per measurement (not per value visited).
fn cost_cap() -> (usize, usize) {
    let l = super::limits();
    (l.expanded_nodes, l.expanded_bytes)
}

/// What a JSON value costs when copied: (values, bytes of strings and keys). Stops counting
/// past the limits, so measuring a huge value costs no more than the budget it would exceed.
pub(crate) fn value_cost(value: &Value) -> (usize, usize) {
    fn walk(v: &Value, acc: &mut (usize, usize), max: (usize, usize)) {
        if acc.0 > max.0 || acc.1 > max.1 {
            return;
        }
        acc.0 += 1;
        match v {
            Value::String(s) => acc.1 += s.len(),
            Value::Array(items) => items.iter().for_each(|i| walk(i, acc, max)),
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                acc.1 += k.len();
                walk(v, acc, max)
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    let mut acc = (0, 0);
    walk(value, &mut acc, cost_cap());
    acc
}

/// [`value_cost`] of a located tree.
pub(crate) fn node_cost(node: &Node) -> (usize, usize) {
    fn walk(n: &Node, acc: &mut (usize, usize), max: (usize, usize)) {
        if acc.0 > max.0 || acc.1 > max.1 {
            return;
        }
        acc.0 += 1;
        match &n.val {
            Val::Str(s) => acc.1 += s.len(),
            Val::Seq(items) => items.iter().for_each(|i| walk(i, acc, max)),
            Val::Map(entries) => entries.iter().for_each(|e| {
                acc.1 += e.key.len();
                walk(&e.node, acc, max)
            }),
            Val::Null | Val::Bool(_) | Val::Num(_) => {}
        }
    }
    let mut acc = (0, 0);
    walk(node, &mut acc, cost_cap());
    acc
}

/// What names a `${...}` can see.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// The fan-out member's `item`, if the stage is a member.
    pub item: Option<&'a Value>,
    /// `${key}`: the `foreach` map key of the member, or its `matrix` map axes' keys.
    pub key: Option<&'a Value>,
    pub vars: &'a Map<String, Value>,
    pub params: &'a Value,
    /// What expansion may still produce, for the whole pipeline.
    pub budget: &'a Budget,
}

/// One piece of a template string.
#[derive(Debug, PartialEq)]
enum Piece<'s> {
    Text(&'s str),
    /// A literal `${` written as `$${`.
    Escaped,
    Ref(&'s str),
}

impl<'a> Scope<'a> {
    fn in_fanout(&self) -> bool {
        self.item.is_some()
    }

    /// Every name a reference could use here (dotted), for "did you mean" hints.
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(item) = self.item {
            out.push("item".to_owned());
            out.extend(
                super::keys::dotted_keys(item)
                    .into_iter()
                    .map(|k| format!("item.{k}")),
            );
        }
        if let Some(key) = self.key {
            out.push("key".to_owned());
            out.extend(
                super::keys::dotted_keys(key)
                    .into_iter()
                    .map(|k| format!("key.{k}")),
            );
        }
        out.extend(super::keys::dotted_keys(&Value::Object(self.vars.clone())));
        out.extend(super::keys::dotted_keys(self.params));
        out
    }

    /// The value `reference` names, or `None` if any segment is missing. Walks by reference
    /// and copies only the value found (`${big.x}` does not copy `big`).
    pub fn lookup(&self, reference: &str) -> Option<Value> {
        let mut segments = reference.split('.');
        let first = segments.next()?;
        let root: &Value = match (first, self.item, self.key) {
            ("item", Some(item), _) => item,
            ("key", _, Some(key)) => key,
            _ => match self.vars.get(first) {
                Some(v) => v,
                None => self.params.as_object()?.get(first)?,
            },
        };
        let mut cur = root;
        for seg in segments {
            cur = match cur {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur.clone())
    }
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            if i > 1 {
                out.push(Piece::Text(&rest[..i - 1]));
            }
            out.push(Piece::Escaped);
            rest = &rest[i + 2..];
            continue;
        }
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or_else(|| {
            "`${` is never closed; close it with `}` or write `$${` for a literal `${`".to_owned()
        })?;
        let name = after[..end].trim();
        check_reference(name)?;
        out.push(Piece::Ref(name));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

fn check_reference(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty reference `${}`; name a var or param, like `${lr}`".to_owned());
    }
    let ok_segment = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    if !name.split('.').all(ok_segment) {
        return Err(format!(
            "`{name}` is not a reference; use dotted names of letters, digits, `_` and `-`, like `${{train.batch}}`"
        ));
    }
    Ok(())
}

/// Whether `text` contains anything interpolation would change.
fn has_template(text: &str) -> bool {
    text.contains("${")
}

/// A scalar's text as it appears inside a longer string, or `None` for lists and maps.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(number_text(n)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_owned()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// A number as serde_norway writes it in YAML (`1e-5`, `0.0002`, `64`): the text a user would
/// expect from the value they wrote, and stable across serde_json versions.
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(x) if n.is_f64() => {
            serde_norway::to_string(&x).map_or_else(|_| n.to_string(), |s| s.trim_end().to_owned())
        }
        _ => n.to_string(),
    }
}

/// Interpolates one string node. `context` names where it is, for messages.
pub(crate) fn interpolate_str(
    node: &Node,
    text: &str,
    scope: &Scope,
    context: &Context,
) -> Result<Node, SpecError> {
    if !has_template(text) {
        return Ok(node.clone());
    }
    let bad = |reason: String| {
        SpecError::at(
            node.loc,
            SpecErrorKind::BadInterpolation {
                text: text.to_owned(),
                context: context.clone(),
                reason,
            },
        )
    };
    let parts = pieces(text).map_err(bad)?;
    let resolve = |name: &str| {
        scope.lookup(name).ok_or_else(|| {
            SpecError::at(
                node.loc,
                SpecErrorKind::UnknownReference {
                    reference: name.to_owned(),
                    context: context.clone(),
                    suggestions: super::keys::suggestions(name, &scope.names()).into(),
                    in_fanout: scope.in_fanout(),
                },
            )
        })
    };
    if let [Piece::Ref(name)] = parts.as_slice() {
        let value = resolve(name)?;
        scope.budget.charge(value_cost(&value), node.loc)?;
        return Ok(Node::from_json(&value, node.loc));
    }
    let mut out = String::with_capacity(text.len());
    for p in parts {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Escaped => out.push_str("${"),
            Piece::Ref(name) => {
                let value = resolve(name)?;
                let s = scalar_text(&value).ok_or_else(|| {
                    bad(format!(
                        "`${{{name}}}` is {} and cannot be part of a longer string; use it alone as the whole value, or reference one of its fields",
                        super::node::json_type_name(&value)
                    ))
                })?;
                scope.budget.charge((0, s.len()), node.loc)?;
                out.push_str(&s);
            }
        }
    }
    Ok(Node {
        loc: node.loc,
        val: Val::Str(out),
    })
}

/// Interpolates every string inside `node` (map keys are left alone: they are names, not
/// values).
pub(crate) fn interpolate(
    node: &Node,
    scope: &Scope,
    context: &Context,
) -> Result<Node, SpecError> {
    match &node.val {
        Val::Str(s) => interpolate_str(node, s, scope, context),
        Val::Seq(items) => {
            let items = items
                .iter()
                .map(|n| interpolate(n, scope, context))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Node {
                loc: node.loc,
                val: Val::Seq(items),
            })
        }
        Val::Map(entries) => {
            let entries = entries
                .iter()
                .map(|e| {
                    Ok(Entry {
                        key: e.key.clone(),
                        key_loc: e.key_loc,
                        node: interpolate(&e.node, scope, context)?,
                    })
                })
                .collect::<Result<Vec<_>, SpecError>>()?;
            Ok(Node {
                loc: node.loc,
                val: Val::Map(entries),
            })
        }
        Val::Null | Val::Bool(_) | Val::Num(_) => Ok(node.clone()),
    }
}

/// Rejects a top-level name defined in both `vars:` and `params:`, at the `vars:` key.
pub(crate) fn check_ambiguous(vars: Option<&Node>, params: &Value) -> Result<(), SpecError> {
    let (Some(vars), Some(params)) = (vars.and_then(Node::as_map), params.as_object()) else {
        return Ok(());
    };
    for e in vars {
        if params.contains_key(&e.key) {
            return Err(SpecError::at(
                e.key_loc,
                SpecErrorKind::AmbiguousName {
                    name: e.key.clone(),
                },
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::Location;
    use serde_json::json;

    fn node(s: &str) -> Node {
        Node {
            loc: Location { line: 3, col: 7 },
            val: Val::Str(s.to_owned()),
        }
    }

    fn run(s: &str, item: Option<&Value>) -> Result<Value, SpecError> {
        let vars = json!({"name": "mnist", "grid": [1, 2]});
        let params = json!({"lr": 0.0002, "train": {"batch": 64, "on": true}, "big": 1e-5});
        let scope = Scope {
            item,
            key: None,
            vars: vars.as_object().unwrap(),
            params: &params,
            budget: &Budget::new(),
        };
        interpolate(&node(s), &scope, &"in stage `t`".into()).map(|n| n.to_json())
    }

    #[test]
    fn whole_reference_keeps_the_type() {
        assert_eq!(run("${lr}", None).unwrap(), json!(0.0002));
        assert_eq!(
            run("${train}", None).unwrap(),
            json!({"batch": 64, "on": true})
        );
        assert_eq!(run("${ grid }", None).unwrap(), json!([1, 2]));
        assert_eq!(run("${grid.1}", None).unwrap(), json!(2));
    }

    #[test]
    fn references_inside_text_are_formatted_like_yaml() {
        assert_eq!(
            run("lr=${lr} b=${train.batch} on=${train.on}", None).unwrap(),
            json!("lr=0.0002 b=64 on=true")
        );
        // serde_norway (the reference for "as YAML prints it") writes 1e-5 as 0.00001.
        assert_eq!(
            run("x${big}", None).unwrap(),
            json!(format!(
                "x{}",
                serde_norway::to_string(&1e-5).unwrap().trim()
            ))
        );
        assert_eq!(run("x${big}", None).unwrap(), json!("x0.00001"));
        assert_eq!(
            run("data/${name}.npz", None).unwrap(),
            json!("data/mnist.npz")
        );
    }

    #[test]
    fn item_shadows_vars_and_params() {
        let item = json!({"seed": 3, "lr": 1});
        assert_eq!(
            run("${item.seed}-${lr}", Some(&item)).unwrap(),
            json!("3-0.0002")
        );
        assert_eq!(run("${item}", Some(&item)).unwrap(), item);
    }

    #[test]
    fn escapes_and_shell_dollars_pass_through() {
        assert_eq!(
            run("echo $${HOME} $$ $PATH ${name}", None).unwrap(),
            json!("echo ${HOME} $$ $PATH mnist")
        );
        assert_eq!(run("$${lr}", None).unwrap(), json!("${lr}"));
    }

    #[test]
    fn unknown_reference_names_it_at_the_node() {
        let e = run("echo ${train.bach}", None).unwrap_err();
        assert_eq!(e.location, Some(Location { line: 3, col: 7 }));
        match &e.kind {
            SpecErrorKind::UnknownReference {
                reference,
                suggestions,
                ..
            } => {
                assert_eq!(reference, "train.bach");
                assert_eq!(&suggestions[..], ["train.batch"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(matches!(
            run("echo ${lr", None).unwrap_err().kind,
            SpecErrorKind::BadInterpolation { .. }
        ));
        assert!(matches!(
            run("echo ${}", None).unwrap_err().kind,
            SpecErrorKind::BadInterpolation { .. }
        ));
        assert!(matches!(
            run("echo ${a b}", None).unwrap_err().kind,
            SpecErrorKind::BadInterpolation { .. }
        ));
        let e = run("batch ${train}", None).unwrap_err();
        assert!(
            matches!(e.kind, SpecErrorKind::BadInterpolation { .. }),
            "{e}"
        );
    }
}
