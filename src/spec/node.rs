//! The located YAML tree every later pass works on: values from serde_norway, positions from
//! [`super::marks`].
//!
//! Values come from serde_norway so that scalar typing (`0.0002` is a number, `"1"` a string,
//! `yes` a string under YAML 1.2) is exactly the crate the rest of the project uses for YAML,
//! and so that syntax errors and duplicate keys get its well-located messages. The two trees are
//! walked together by *index* (mappings keep source order on both sides), never by key text,
//! so odd keys (`1:`, `~:`) cannot mis-pair. A node the position pass does not know inherits
//! its parent's location: a slightly coarse location beats a failure.
//!
//! Merge keys (`<<: *defaults`) are applied here, with explicit keys winning, so that stage
//! templates can share defaults the usual YAML way. Tags (`!foo`) and non-finite numbers have
//! no meaning in a pipeline and are rejected.

use serde_json::{Map, Number, Value};

use super::error::{SpecError, SpecErrorKind};
use super::marks::{PosKind, PosNode};
use super::model::Location;

/// A YAML value with the position of its first character.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub loc: Location,
    pub val: Val,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One mapping entry, with its key's own position (where "unknown key" errors point).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_loc: Location,
    pub node: Node,
}

impl Node {
    /// The name of this node's type, for "must be X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        type_name_of(&self.val)
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.val {
            Val::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.val {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.val, Val::Null)
    }

    /// The entry under `key`, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The plain JSON value, positions dropped.
    pub fn to_json(&self) -> Value {
        match &self.val {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) => Value::Number(n.clone()),
            Val::Str(s) => Value::String(s.clone()),
            Val::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Val::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for e in entries {
                    map.insert(e.key.clone(), e.node.to_json());
                }
                Value::Object(map)
            }
        }
    }

    /// A JSON value placed wholly at `loc` (an interpolated `${...}` takes the position of the
    /// string it replaced).
    pub fn from_json(value: &Value, loc: Location) -> Node {
        let val = match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.clone()),
            Value::String(s) => Val::Str(s.clone()),
            Value::Array(items) => {
                Val::Seq(items.iter().map(|v| Node::from_json(v, loc)).collect())
            }
            Value::Object(map) => Val::Map(
                map.iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        key_loc: loc,
                        node: Node::from_json(v, loc),
                    })
                    .collect(),
            ),
        };
        Node { loc, val }
    }
}

pub(crate) fn type_name_of(val: &Val) -> &'static str {
    match val {
        Val::Null => "nothing (null)",
        Val::Bool(_) => "a boolean",
        Val::Num(_) => "a number",
        Val::Str(_) => "a string",
        Val::Seq(_) => "a list",
        Val::Map(_) => "a map",
    }
}

pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Parses `text` into a located tree. An empty document is `Null` at 1:1.
pub(crate) fn parse_located(text: &str) -> Result<Node, SpecError> {
    let value: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // serde_norway places a duplicate key at its map, not at the repeat; find the
            // repeat in the position tree so the message points at the line to fix.
            let dup = super::marks::positions(text)
                .as_ref()
                .and_then(first_duplicate_key);
            return Err(match dup {
                Some((key, first, loc)) => {
                    SpecError::at(loc, SpecErrorKind::DuplicateKey { key, first })
                }
                None => syntax_error(e, text),
            });
        }
    };
    let pos = super::marks::positions(text);
    build(&value, pos.as_ref(), Location { line: 1, col: 1 })
}

/// The first key repeated within one map, depth first: (key, first position, repeat position).
fn first_duplicate_key(pos: &PosNode) -> Option<(String, Location, Location)> {
    match &pos.kind {
        PosKind::Scalar(_) => None,
        PosKind::Seq(items) => items.iter().find_map(first_duplicate_key),
        PosKind::Map(entries) => {
            for (i, (key, loc, _)) in entries.iter().enumerate() {
                if let Some((_, first, _)) = entries[..i]
                    .iter()
                    .find(|(k, _, _)| k == key && !k.is_empty())
                {
                    return Some((key.clone(), *first, *loc));
                }
            }
            entries
                .iter()
                .find_map(|(_, _, child)| first_duplicate_key(child))
        }
    }
}

/// A YAML syntax error from serde_norway, keeping its location.
fn syntax_error(e: serde_norway::Error, text: &str) -> SpecError {
    let message = e.to_string();
    // serde_norway appends " at line L column C" to messages that have a location; the
    // location goes in front in our format, so drop the repeat.
    let mut message = match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    // The most common way to get here: `[data/${x}]`. In a flow collection `{` and `}` end
    // a plain scalar, so an unquoted reference is a YAML error before it is ours.
    let line = e
        .location()
        .and_then(|l| text.lines().nth(l.line().saturating_sub(1)));
    if line.is_some_and(|l| l.contains("${") && (l.contains('[') || l.contains('{'))) {
        message.push_str(
            "; inside `[...]` or `{...}`, quote values that contain `${...}` (`\"${x}\"`) or use block style",
        );
    }
    match e.location() {
        Some(l) => SpecError::at(
            Location {
                line: l.line(),
                col: l.column(),
            },
            SpecErrorKind::Syntax { message },
        ),
        None => SpecError::nowhere(SpecErrorKind::Syntax { message }),
    }
}

fn build(
    value: &serde_norway::Value,
    pos: Option<&PosNode>,
    fallback: Location,
) -> Result<Node, SpecError> {
    use serde_norway::Value as Y;
    let loc = pos.map_or(fallback, |p| p.loc);
    let val = match value {
        Y::Null => Val::Null,
        Y::Bool(b) => Val::Bool(*b),
        Y::Number(n) => Val::Num(number(n, loc)?),
        Y::String(s) => Val::Str(s.clone()),
        Y::Sequence(items) => {
            let pos_items = match pos.map(|p| &p.kind) {
                Some(PosKind::Seq(v)) => Some(v),
                _ => None,
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(build(item, pos_items.and_then(|v| v.get(i)), loc)?);
            }
            Val::Seq(out)
        }
        Y::Mapping(mapping) => {
            let pos_entries = match pos.map(|p| &p.kind) {
                Some(PosKind::Map(v)) => Some(v),
                _ => None,
            };
            let mut entries = Vec::with_capacity(mapping.len());
            for (i, (k, v)) in mapping.iter().enumerate() {
                let pe = pos_entries.and_then(|e| e.get(i));
                let key_loc = pe.map_or(loc, |e| e.1);
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Null | Y::Bool(_) | Y::Number(_) => match pe {
                        Some((text, _, _)) if !text.is_empty() => text.clone(),
                        _ => scalar_key_text(k),
                    },
                    _ => {
                        return Err(SpecError::at(
                            key_loc,
                            SpecErrorKind::Syntax {
                                message: "mapping keys must be plain scalars, not lists, maps or tagged values"
                                    .to_owned(),
                            },
                        ))
                    }
                };
                let node = build(v, pe.map(|e| &e.2), key_loc)?;
                entries.push(Entry { key, key_loc, node });
            }
            Val::Map(apply_merge_keys(entries)?)
        }
        Y::Tagged(t) => {
            return Err(SpecError::at(
                loc,
                SpecErrorKind::Syntax {
                    message: format!(
                        "yaml tags like `{}` are not supported; remove the tag",
                        t.tag
                    ),
                },
            ))
        }
    };
    Ok(Node { loc, val })
}

fn scalar_key_text(k: &serde_norway::Value) -> String {
    match k {
        serde_norway::Value::Null => "null".to_owned(),
        serde_norway::Value::Bool(b) => b.to_string(),
        serde_norway::Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn number(n: &serde_norway::Number, loc: Location) -> Result<Number, SpecError> {
    if let Some(i) = n.as_i64() {
        return Ok(Number::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Number::from(u));
    }
    n.as_f64().and_then(Number::from_f64).ok_or_else(|| {
        SpecError::at(
            loc,
            SpecErrorKind::Syntax {
                message: format!(
                    "the number `{n}` is not finite; pipelines only use finite numbers"
                ),
            },
        )
    })
}

/// `<<: {map}` or `<<: [maps]`: entries the map does not set itself are copied in, earlier
/// merged maps winning over later ones (the YAML merge-key convention).
fn apply_merge_keys(entries: Vec<Entry>) -> Result<Vec<Entry>, SpecError> {
    if !entries.iter().any(|e| e.key == "<<") {
        return Ok(entries);
    }
    let mut own = Vec::with_capacity(entries.len());
    let mut merged = Vec::new();
    for e in entries {
        if e.key != "<<" {
            own.push(e);
            continue;
        }
        let sources: Vec<Node> = match e.node.val {
            Val::Map(_) => vec![e.node],
            Val::Seq(items) => items,
            _ => vec![e.node],
        };
        for src in sources {
            match src.val {
                Val::Map(m) => merged.extend(m),
                other => {
                    return Err(SpecError::at(
                        src.loc,
                        SpecErrorKind::Syntax {
                            message: format!(
                                "a merge key `<<` takes a map or a list of maps, found {}",
                                type_name_of(&other)
                            ),
                        },
                    ))
                }
            }
        }
    }
    for m in merged {
        if !own.iter().any(|e| e.key == m.key) {
            own.push(m);
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_positions_agree() {
        let n = parse_located("a: 0.0002\nb: '1'\nc:\n  - x\n  - 3\n").unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(a.node.to_json(), serde_json::json!(0.0002));
        assert_eq!(a.node.loc, Location { line: 1, col: 4 });
        assert_eq!(n.get("b").unwrap().node.val, Val::Str("1".into()));
        let c = &n.get("c").unwrap().node;
        let Val::Seq(items) = &c.val else { panic!() };
        assert_eq!(items[1].loc, Location { line: 5, col: 5 });
    }

    #[test]
    fn merge_keys_fill_in_missing_entries_only() {
        let n = parse_located("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(
            n.get("use").unwrap().node.to_json(),
            serde_json::json!({"y": 3, "x": 1})
        );
    }

    #[test]
    fn syntax_errors_keep_their_location() {
        let e = parse_located("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(matches!(e.kind, SpecErrorKind::Syntax { .. }));
        assert!(e.location.is_some());
        let e = parse_located("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert!(
            matches!(e.kind, SpecErrorKind::DuplicateKey { ref key, first } if key == "c" && first.line == 3),
            "{e}"
        );
        assert_eq!(e.location, Some(Location { line: 4, col: 3 }));
    }

    #[test]
    fn tags_are_rejected_at_the_node() {
        let e = parse_located("a: !foo 1\n").unwrap_err();
        assert_eq!(e.location, Some(Location { line: 1, col: 4 }));
    }
}
