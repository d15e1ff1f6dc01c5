//! The located YAML tree every later pass works on: values from serde_norway, positions from
//! [`super::marks`].
//!
//! Values come from serde_norway so that scalar typing (`0.0002` is a number, `"1"` a string,
//! `yes` a string under YAML 1.2) is exactly the crate the rest of the project uses for YAML,
//! and so that syntax errors get its well-located messages. serde_norway drives our own
//! visitor straight into [`Node`]s: going through `serde_norway::Value` first cost about 40 ms
//! on a 1,000-stage file (its maps hash every key), most of the budget. The two trees are
//! walked together by *index* (mappings keep source order on both sides), never by key text,
//! so odd keys (`1:`, `~:`) cannot mis-pair. A node the position pass does not know inherits
//! its parent's location: a slightly coarse location beats a failure.
//!
//! Merge keys (`<<: *defaults`) are applied here, with explicit keys winning, so that stage
//! templates can share defaults the usual YAML way. Tags (`!foo`) and non-finite numbers have
//! no meaning in a pipeline and are rejected.

use std::collections::{HashMap, HashSet};

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

/// The first of `entries` whose key is not in `allowed`, as an "unknown key" error at that key
/// (with "did you mean" and the list of `allowed`); `context` says where the map is and is
/// only formatted for an error.
pub(crate) fn only_keys(
    entries: &[Entry],
    allowed: &[&'static str],
    context: impl FnOnce() -> String,
) -> Result<(), SpecError> {
    match entries.iter().find(|e| !allowed.contains(&e.key.as_str())) {
        None => Ok(()),
        Some(e) => Err(SpecError::at(
            e.key_loc,
            SpecErrorKind::UnknownKey {
                key: e.key.clone(),
                context: context().into(),
                expected: allowed.to_vec(),
            },
        )),
    }
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
///
/// The position pass runs first: it is the one that enforces the bounds on nesting, nodes and
/// alias expansion (see [`super::marks`]), so serde_norway only ever sees a file known to be
/// cheap. A UTF-8 byte order mark at the start is skipped (editors on Windows write one);
/// it is invisible, so columns on line 1 are counted without it.
pub(crate) fn parse_located(text: &str) -> Result<Node, SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let pos = super::marks::scan(text)?;
    let mut root: Node = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // serde_norway reports a duplicate key where the map is being read, not at the
            // repeat; find the repeat in the position tree so the message points at it.
            let dup = pos.as_ref().and_then(first_duplicate_key);
            return Err(match dup {
                Some((key, first, loc)) => {
                    SpecError::at(loc, SpecErrorKind::DuplicateKey { key, first })
                }
                None => syntax_error(e, text),
            });
        }
    };
    locate(&mut root, pos.as_ref(), Location { line: 1, col: 1 })?;
    Ok(root)
}

/// The first key repeated within one map, depth first: (key, first position, repeat position).
fn first_duplicate_key(pos: &PosNode) -> Option<(String, Location, Location)> {
    match &pos.kind {
        PosKind::Scalar(_) => None,
        PosKind::Seq(items) => items.iter().find_map(first_duplicate_key),
        PosKind::Map(entries) => {
            let mut seen: HashMap<&str, Location> = HashMap::with_capacity(entries.len());
            for (key, loc, _) in entries.iter() {
                if key.is_empty() {
                    continue;
                }
                if let Some(first) = seen.get(key.as_str()) {
                    return Some((key.clone(), *first, *loc));
                }
                seen.insert(key.as_str(), *loc);
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
    // `cmd: echo a: b`: a `: ` inside a plain value starts a nested map, which libyaml
    // refuses with "mapping values are not allowed in this context" and no hint.
    if let Some(l) = line.filter(|l| colon_in_plain_value(l)) {
        let key = l.trim_start().trim_start_matches("- ");
        let key = key.split(": ").next().unwrap_or("cmd");
        message.push_str(&format!(
            "; the value of `{key}` contains `: `, which starts a map in yaml: quote the whole value (`{key}: '...'`) or write it as a block (`{key}: |` and the value on the next lines, indented)"
        ));
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

/// A `key: value` line whose unquoted value holds another `: ` (or ends in `:`).
fn colon_in_plain_value(line: &str) -> bool {
    let body = line.trim_start().trim_start_matches("- ");
    let Some((_, value)) = body.split_once(": ") else {
        return false;
    };
    let value = value.trim_start();
    !value.starts_with(['"', '\'', '|', '>', '[', '{', '#'])
        && (value.contains(": ") || value.trim_end().ends_with(':'))
}

/// Gives every node its position, walking the value tree and the position tree together by
/// index, then applies merge keys (after, so indices still pair up while locating).
fn locate(node: &mut Node, pos: Option<&PosNode>, fallback: Location) -> Result<(), SpecError> {
    node.loc = pos.map_or(fallback, |p| p.loc);
    let loc = node.loc;
    match &mut node.val {
        Val::Seq(items) => {
            let pos_items = match pos.map(|p| &p.kind) {
                Some(PosKind::Seq(v)) => Some(v),
                _ => None,
            };
            for (i, item) in items.iter_mut().enumerate() {
                locate(item, pos_items.and_then(|v| v.get(i)), loc)?;
            }
        }
        Val::Map(entries) => {
            let pos_entries = match pos.map(|p| &p.kind) {
                Some(PosKind::Map(v)) => Some(v),
                _ => None,
            };
            for (i, entry) in entries.iter_mut().enumerate() {
                let pe = pos_entries.and_then(|e| e.get(i));
                entry.key_loc = pe.map_or(loc, |e| e.1);
                locate(&mut entry.node, pe.map(|e| &e.2), entry.key_loc)?;
            }
            if entries.iter().any(|e| e.key == "<<") {
                *entries = apply_merge_keys(std::mem::take(entries))?;
            }
        }
        Val::Null | Val::Bool(_) | Val::Num(_) | Val::Str(_) => {}
    }
    Ok(())
}

/// serde_norway drives this visitor, so scalar typing is serde_norway's; building our own tree
/// directly (instead of a `serde_norway::Value` then a copy) keeps a 1,000-stage file fast.
impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn unlocated(val: Val) -> Node {
    Node {
        loc: Location::default(),
        val,
    }
}

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a yaml value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(unlocated(Val::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(unlocated(Val::Num(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(unlocated(Val::Num(v.into())))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node, E> {
        Number::from_f64(v)
            .map(|n| unlocated(Val::Num(n)))
            .ok_or_else(|| {
                E::custom(format!(
                    "the number `{v}` is not finite; pipelines only use finite numbers"
                ))
            })
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(unlocated(Val::Str(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(unlocated(Val::Str(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(unlocated(Val::Null))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(unlocated(Val::Null))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(unlocated(Val::Seq(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<Entry> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        // Small maps (nearly all) are checked for a repeated key by a scan; past a few dozen
        // entries a set keeps a map of many keys linear instead of quadratic.
        let mut keys: Option<HashSet<String>> = None;
        while let Some(KeyText(key)) = map.next_key()? {
            let repeated = match &mut keys {
                Some(set) => !set.insert(key.clone()),
                None if entries.len() < 32 => entries.iter().any(|e| e.key == key),
                None => {
                    let mut set: HashSet<String> = entries.iter().map(|e| e.key.clone()).collect();
                    let repeated = !set.insert(key.clone());
                    keys = Some(set);
                    repeated
                }
            };
            if repeated {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            let node = map.next_value()?;
            entries.push(Entry {
                key,
                key_loc: Location::default(),
                node,
            });
        }
        Ok(unlocated(Val::Map(entries)))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<Node, A::Error> {
        Err(serde::de::Error::custom(
            "yaml tags (`!name`) are not supported; remove the tag",
        ))
    }
}

/// A mapping key as text: keys are names, whatever scalar type YAML gives them.
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl serde::de::Visitor<'_> for KeyVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a plain scalar key (mapping keys cannot be lists or maps)")
    }
    fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<KeyText, E> {
        Ok(KeyText(v))
    }
    fn visit_unit<E>(self) -> Result<KeyText, E> {
        Ok(KeyText("null".to_owned()))
    }
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
    // A set, not a scan of `own` per merged entry: both can be large, and this stays linear.
    let mut keys: HashSet<String> = own.iter().map(|e| e.key.clone()).collect();
    for m in merged {
        if keys.insert(m.key.clone()) {
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

    #[test]
    fn non_finite_numbers_and_several_documents_are_rejected() {
        let e = parse_located("a: 1\nb: .inf\n").unwrap_err();
        assert!(e.kind.to_string().contains("not finite"), "{e}");
        assert_eq!(e.location.map(|l| l.line), Some(2));
        let e = parse_located("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(matches!(e.kind, SpecErrorKind::Syntax { .. }), "{e}");
    }

    #[test]
    fn empty_text_is_null_and_odd_keys_become_text() {
        assert!(parse_located("").unwrap().is_null());
        assert!(parse_located("# only a comment\n").unwrap().is_null());
        let n = parse_located("1: a\ntrue: b\n~: c\n").unwrap();
        let keys: Vec<&str> = n.as_map().unwrap().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["1", "true", "null"]);
    }
}
