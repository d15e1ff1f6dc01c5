//! Positions of every YAML node, from libyaml's own event stream.
//!
//! serde_norway gives values but no positions (except inside its own errors). Semantic errors
//! (an unknown `${}` reference, a path outside the workspace) need the line:col of the node they
//! are about, so this module runs a second, position-only pass over the text.
//!
//! Why libyaml's events and not another YAML crate: serde_norway is built on exactly this
//! parser (`unsafe-libyaml-norway`), so both passes see the *same* tree, node for node, and
//! the positions agree with the ones serde_norway puts in its syntax errors. A second parser
//! (yaml-rust2, saphyr) could disagree on an edge of the grammar and silently shift every
//! location after it. The price is a small `unsafe` block against a C-shaped API, kept here
//! and nowhere else.
//!
//! Aliases are expanded with the anchored node's positions, mirroring how serde_norway expands
//! their values, so the two trees keep the same shape (the expansion shares the anchored
//! node's children, so it costs a pointer here). If this pass ever fails where serde_norway
//! succeeded (it should not: same parser), callers fall back to the nearest located ancestor
//! instead of failing.
//!
//! # Bounds
//!
//! This pass runs *first*, before serde_norway, and is where a hostile or broken file is
//! stopped: it reads libyaml's events lazily and fails at the first event over a bound, with
//! that event's position, whereas serde_norway loads the whole event stream and then expands
//! every alias before it checks anything (a 500-byte "billion laughs" cost it gigabytes, and
//! libyaml's scanner is quadratic in flow nesting, so `[[[[...` 100,000 deep took minutes).
//! What is bounded, counting an alias at the size of what it expands to (which is what
//! serde_norway and every later pass materialize):
//! - nesting, [`MAX_DEPTH`] lists and maps deep;
//! - nodes, [`MAX_NODES`] scalars, lists and maps;
//! - scalar text, [`MAX_TEXT_BYTES`], the same as the file size limit
//!   ([`super::MAX_FILE_BYTES`], checked before this pass), so aliases cannot make a file
//!   bigger than a file may be;
//! - alias jumps, at most [`MAX_JUMPS_PER_EVENT`] per event of the document: serde_norway's
//!   own rule, checked here too so that it is reported at the costliest alias;
//! - documents: one; a second `---` is an error here, since serde_norway would load it whole
//!   just to say there is more than one.
//!
//! Together they hold any pipeline file to well under a second and 100 MB; the numbers are
//! far above real pipelines (see each constant) so no file written by hand comes near them.

use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::rc::Rc;

use unsafe_libyaml_norway as unsafe_libyaml;

use super::error::{SpecError, SpecErrorKind};
use super::model::Location;

/// A node's position and, for collections, its children's.
#[derive(Clone, Debug)]
pub(crate) struct PosNode {
    pub loc: Location,
    pub kind: PosKind,
}

#[derive(Clone, Debug)]
pub(crate) enum PosKind {
    /// A scalar with its (unescaped) text, used as the key text when it is a mapping key.
    Scalar(String),
    /// Items; shared, so that an alias costs a pointer here, not a copy of the anchored tree.
    Seq(Rc<Vec<PosNode>>),
    /// Entries in source order: key text ("" for a non-scalar key), key position, value.
    Map(Rc<Vec<(String, Location, PosNode)>>),
}

enum Frame {
    Seq {
        loc: Location,
        anchor: Option<Vec<u8>>,
        items: Vec<PosNode>,
    },
    Map {
        loc: Location,
        anchor: Option<Vec<u8>>,
        entries: Vec<(String, Location, PosNode)>,
        key: Option<(String, Location)>,
    },
}

/// Owns an initialized libyaml parser; the box keeps its address stable, which libyaml needs
/// because `yaml_parser_set_input_string` stores a pointer to the parser inside itself.
struct Parser {
    raw: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>,
}

impl Parser {
    /// # Safety
    /// `input` must outlive the parser: libyaml reads it lazily through a raw pointer.
    unsafe fn new(input: &[u8]) -> Option<Parser> {
        let mut raw: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>> =
            Box::new(MaybeUninit::uninit());
        let ptr = raw.as_mut_ptr();
        // SAFETY: `ptr` points to writable memory of the right size; initialize zeroes it.
        if unsafe { unsafe_libyaml::yaml_parser_initialize(ptr) }.fail {
            return None;
        }
        // SAFETY: the parser is initialized; the caller keeps `input` alive.
        unsafe {
            unsafe_libyaml::yaml_parser_set_encoding(ptr, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(ptr, input.as_ptr(), input.len() as u64);
        }
        Some(Parser { raw })
    }
}

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: only constructed after a successful initialize.
        unsafe { unsafe_libyaml::yaml_parser_delete(self.raw.as_mut_ptr()) }
    }
}

/// One event, copied out of libyaml's memory.
enum Ev {
    Scalar {
        anchor: Option<Vec<u8>>,
        /// The text, copied only where it can be a key (see [`next_event`]).
        text: String,
        /// The text's length in bytes.
        len: usize,
    },
    Alias(Vec<u8>),
    SeqStart(Option<Vec<u8>>),
    SeqEnd,
    MapStart(Option<Vec<u8>>),
    MapEnd,
    DocStart,
    StreamEnd,
    Other,
}

/// # Safety
/// `p` must be null or a NUL-terminated string owned by a live event.
unsafe fn anchor(p: *const u8) -> Option<Vec<u8>> {
    if p.is_null() {
        None
    } else {
        // SAFETY: per the contract above.
        Some(unsafe { CStr::from_ptr(p.cast()) }.to_bytes().to_vec())
    }
}

/// The next event; a scalar's text is copied only when `key_expected` (the scalar is a mapping
/// key) or it is anchored (an alias of it may be a key): values are never read from this tree.
fn next_event(parser: &mut Parser, key_expected: bool) -> Option<(Ev, Location)> {
    let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
    let ev_ptr = event.as_mut_ptr();
    // SAFETY: the parser is initialized and pinned in its box; on success libyaml fills the
    // event, which we read and then free exactly once.
    unsafe {
        if unsafe_libyaml::yaml_parser_parse(parser.raw.as_mut_ptr(), ev_ptr).fail {
            return None;
        }
        let e = &*ev_ptr;
        let loc = Location {
            line: e.start_mark.line as usize + 1,
            col: e.start_mark.column as usize + 1,
        };
        let ev = match e.type_ {
            unsafe_libyaml::YAML_SCALAR_EVENT => {
                let s = e.data.scalar;
                let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                let anchor = anchor(s.anchor);
                let text = if key_expected || anchor.is_some() {
                    String::from_utf8_lossy(bytes).into_owned()
                } else {
                    String::new()
                };
                Ev::Scalar {
                    anchor,
                    text,
                    len: bytes.len(),
                }
            }
            unsafe_libyaml::YAML_ALIAS_EVENT => {
                Ev::Alias(anchor(e.data.alias.anchor).unwrap_or_default())
            }
            unsafe_libyaml::YAML_SEQUENCE_START_EVENT => {
                Ev::SeqStart(anchor(e.data.sequence_start.anchor))
            }
            unsafe_libyaml::YAML_SEQUENCE_END_EVENT => Ev::SeqEnd,
            unsafe_libyaml::YAML_MAPPING_START_EVENT => {
                Ev::MapStart(anchor(e.data.mapping_start.anchor))
            }
            unsafe_libyaml::YAML_MAPPING_END_EVENT => Ev::MapEnd,
            unsafe_libyaml::YAML_DOCUMENT_START_EVENT => Ev::DocStart,
            unsafe_libyaml::YAML_STREAM_END_EVENT => Ev::StreamEnd,
            _ => Ev::Other,
        };
        unsafe_libyaml::yaml_event_delete(ev_ptr);
        Some((ev, loc))
    }
}

/// Nesting limit: lists and maps inside each other, counting the root and counting what an
/// alias expands to where it is used. A pipeline needs fewer than ten levels; 128 is also
/// serde_norway's own recursion limit, so this pass reports first, with a position, and every
/// recursive pass after it (locating, interpolation, overlays, JSON conversion) runs on a tree
/// whose depth is known to be small.
pub(crate) const MAX_DEPTH: usize = 128;

/// Node limit: scalars, lists and maps of the document, with each alias counted as the size of
/// the node it expands to (that is what serde_norway and every later pass materialize). A
/// 1,000-stage pipeline has about 15,000 nodes, the 10,000 stages allowed after fan-out written
/// out about 150,000. Each node costs a few hundred bytes and a few microseconds over the two
/// trees and the passes after them; at the limit (measured: a map of 99,000 params) `repro
/// status` takes 0.8 s and 85 MB in a debug build, inside the budget of a second and 100 MB.
pub(crate) const MAX_NODES: usize = 200_000;

/// Scalar bytes materialized, aliases at their expanded size: the file size limit, so that
/// aliases never make a file cost more than the largest file allowed.
pub(crate) const MAX_TEXT_BYTES: usize = super::MAX_FILE_BYTES;

/// serde_norway's repetition limit, which this pass reproduces to report it with a position:
/// following aliases (nested ones included) may take at most this many jumps per event of the
/// document.
const MAX_JUMPS_PER_EVENT: usize = 100;

/// An anchored node, with what each use of it costs.
struct Anchored {
    node: PosNode,
    cost: Cost,
}

/// What a node costs once materialized: its nodes and scalar bytes (aliases inside it at their
/// expanded size) and its nesting height (0 for a scalar, 1 for a list or map of scalars).
/// A collection's cost is summed while it is read and folded into its parent when it ends.
#[derive(Default, Clone, Copy)]
struct Cost {
    count: usize,
    bytes: usize,
    height: usize,
    /// Aliases followed to materialize it, nested ones included (serde_norway's "jumps").
    jumps: usize,
}

/// Positions of the first document's root node.
///
/// `Ok(None)` if the text does not parse (the value pass reports syntax errors, with better
/// messages) or is empty. `Err` when the text breaks one of the bounds above ([`MAX_DEPTH`],
/// [`MAX_NODES`]) or holds a second document: these are checked here, on libyaml's lazy event
/// stream, because this pass can stop at the first event over the bound, while serde_norway
/// loads the whole stream (and expands aliases) before it looks at anything. The caller runs
/// this pass first for that reason.
pub(crate) fn scan(text: &str) -> Result<Option<PosNode>, SpecError> {
    // SAFETY: `text` outlives `parser`, which is dropped at the end of this function.
    let Some(mut parser) = (unsafe { Parser::new(text.as_bytes()) }) else {
        return Ok(None);
    };
    let mut stack: Vec<(Frame, Cost)> = Vec::new();
    let mut anchors: HashMap<Vec<u8>, Anchored> = HashMap::new();
    let mut root: Option<PosNode> = None;
    let mut seen_doc = false;
    // Nodes and scalar bytes materialized so far, aliases counted at their expanded size.
    let mut total: usize = 0;
    let mut text_bytes: usize = 0;
    // serde_norway's own alias bound, mirrored so that it is reported with a position: it
    // refuses a document whose aliases take more than 100 jumps per event. Counted here: the
    // events of the document, the jumps, and the costliest alias (where the error points).
    let mut events: usize = 0;
    let mut jumps: usize = 0;
    let mut costliest: Option<(usize, Location)> = None;
    loop {
        let key_expected = matches!(stack.last(), Some((Frame::Map { key: None, .. }, _)));
        let Some((ev, loc)) = next_event(&mut parser, key_expected) else {
            return Ok(None);
        };
        if !matches!(ev, Ev::DocStart | Ev::StreamEnd | Ev::Other) {
            events += 1;
        }
        // Each finished node with its cost.
        let done: Option<(PosNode, Cost)> = match ev {
            Ev::DocStart => {
                if seen_doc {
                    return Err(SpecError::at(
                        loc,
                        SpecErrorKind::Syntax {
                            message: "a second yaml document starts here; a pipeline file holds \
                                  one document, so remove this `---` and what follows it, or \
                                  merge the two"
                                .to_owned(),
                        },
                    ));
                }
                seen_doc = true;
                None
            }
            Ev::StreamEnd => {
                return match costliest {
                    Some((_, loc)) if jumps > events.saturating_mul(MAX_JUMPS_PER_EVENT) => {
                        Err(SpecError::at(
                            loc,
                            SpecErrorKind::TooManyAliases {
                                ratio: MAX_JUMPS_PER_EVENT,
                            },
                        ))
                    }
                    _ => Ok(root),
                }
            }
            Ev::Other => None,
            Ev::Scalar { anchor, text, len } => {
                total += 1;
                text_bytes = text_bytes.saturating_add(len);
                check_nodes(total, text_bytes, loc)?;
                let node = PosNode {
                    loc,
                    kind: PosKind::Scalar(text),
                };
                let cost = Cost {
                    count: 1,
                    bytes: len,
                    height: 0,
                    jumps: 0,
                };
                if let Some(a) = anchor {
                    anchors.insert(a, anchored(&node, cost));
                }
                Some((node, cost))
            }
            Ev::Alias(name) => Some(match anchors.get(&name) {
                // The value is the anchored node's; the alias's own position is where the
                // user wrote it, which is where an error about it should point. The bounds
                // are checked before the copy, so a billion laughs stops at the first alias
                // that would go over, having copied nothing big.
                Some(a) => {
                    total = total.saturating_add(a.cost.count);
                    text_bytes = text_bytes.saturating_add(a.cost.bytes);
                    check_nodes(total, text_bytes, loc)?;
                    check_depth(stack.len() + a.cost.height, loc)?;
                    let cost = Cost {
                        jumps: a.cost.jumps.saturating_add(1),
                        ..a.cost
                    };
                    jumps = jumps.saturating_add(cost.jumps);
                    if costliest.is_none_or(|(j, _)| cost.jumps > j) {
                        costliest = Some((cost.jumps, loc));
                    }
                    (
                        PosNode {
                            loc,
                            kind: a.node.kind.clone(),
                        },
                        cost,
                    )
                }
                None => {
                    total += 1;
                    check_nodes(total, text_bytes, loc)?;
                    (
                        PosNode {
                            loc,
                            kind: PosKind::Scalar(String::new()),
                        },
                        Cost {
                            count: 1,
                            bytes: 0,
                            height: 0,
                            jumps: 0,
                        },
                    )
                }
            }),
            Ev::SeqStart(anchor) => {
                total += 1;
                check_nodes(total, text_bytes, loc)?;
                check_depth(stack.len() + 1, loc)?;
                stack.push((
                    Frame::Seq {
                        loc,
                        anchor,
                        items: Vec::new(),
                    },
                    Cost {
                        count: 1,
                        bytes: 0,
                        height: 1,
                        jumps: 0,
                    },
                ));
                None
            }
            Ev::MapStart(anchor) => {
                total += 1;
                check_nodes(total, text_bytes, loc)?;
                check_depth(stack.len() + 1, loc)?;
                stack.push((
                    Frame::Map {
                        loc,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    },
                    Cost {
                        count: 1,
                        bytes: 0,
                        height: 1,
                        jumps: 0,
                    },
                ));
                None
            }
            Ev::SeqEnd | Ev::MapEnd => {
                let Some((frame, cost)) = stack.pop() else {
                    return Ok(None);
                };
                let (node, anchor) = match frame {
                    Frame::Seq { loc, anchor, items } => (
                        PosNode {
                            loc,
                            kind: PosKind::Seq(Rc::new(items)),
                        },
                        anchor,
                    ),
                    Frame::Map {
                        loc,
                        anchor,
                        entries,
                        ..
                    } => (
                        PosNode {
                            loc,
                            kind: PosKind::Map(Rc::new(entries)),
                        },
                        anchor,
                    ),
                };
                if let Some(a) = anchor {
                    anchors.insert(a, anchored(&node, cost));
                }
                Some((node, cost))
            }
        };
        if let Some((node, cost)) = done {
            match stack.last_mut() {
                None => root = Some(node),
                Some((frame, parent)) => {
                    parent.count = parent.count.saturating_add(cost.count);
                    parent.bytes = parent.bytes.saturating_add(cost.bytes);
                    parent.jumps = parent.jumps.saturating_add(cost.jumps);
                    parent.height = parent.height.max(cost.height + 1);
                    match frame {
                        Frame::Seq { items, .. } => items.push(node),
                        Frame::Map { entries, key, .. } => match key.take() {
                            None => {
                                let text = match &node.kind {
                                    PosKind::Scalar(t) => t.clone(),
                                    _ => String::new(),
                                };
                                *key = Some((text, node.loc));
                            }
                            Some((text, key_loc)) => entries.push((text, key_loc, node)),
                        },
                    }
                }
            }
        }
    }
}

/// [`scan`] without the reasons: the position tree, or `None`.
#[cfg(test)]
pub(crate) fn positions(text: &str) -> Option<PosNode> {
    scan(text).ok().flatten()
}

/// A cheap copy (collections are shared) to expand later aliases from.
fn anchored(node: &PosNode, cost: Cost) -> Anchored {
    Anchored {
        node: node.clone(),
        cost,
    }
}

fn check_nodes(total: usize, text_bytes: usize, loc: Location) -> Result<(), SpecError> {
    let limits = super::limits();
    if total > limits.nodes {
        return Err(SpecError::at(
            loc,
            SpecErrorKind::TooManyNodes {
                limit: limits.nodes,
            },
        ));
    }
    if text_bytes > limits.text_bytes {
        return Err(SpecError::at(
            loc,
            SpecErrorKind::TooMuchText {
                limit: limits.text_bytes,
            },
        ));
    }
    Ok(())
}

fn check_depth(depth: usize, loc: Location) -> Result<(), SpecError> {
    if depth > MAX_DEPTH {
        return Err(SpecError::at(
            loc,
            SpecErrorKind::TooDeep { limit: MAX_DEPTH },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(line: usize, col: usize) -> Location {
        Location { line, col }
    }

    #[test]
    fn block_map_positions_are_one_based() {
        let p = positions("a: 1\nb:\n  - x\n  - {c: 2}\n").unwrap();
        let PosKind::Map(entries) = &p.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].1, loc(1, 1));
        assert_eq!(entries[0].2.loc, loc(1, 4));
        assert_eq!(entries[1].1, loc(2, 1));
        let PosKind::Seq(items) = &entries[1].2.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[0].loc, loc(3, 5));
        assert_eq!(items[1].loc, loc(4, 5));
        let PosKind::Map(inner) = &items[1].kind else {
            panic!("not a map")
        };
        assert_eq!(inner[0].1, loc(4, 6));
    }

    #[test]
    fn aliases_copy_the_anchored_shape_at_the_alias_position() {
        let p = positions("a: &x {k: 1}\nb: *x\n").unwrap();
        let PosKind::Map(entries) = &p.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[1].2.loc, loc(2, 4));
        assert!(matches!(&entries[1].2.kind, PosKind::Map(m) if m.len() == 1));
    }

    #[test]
    fn syntax_errors_and_empty_text_give_none() {
        assert!(positions("a: [1, 2").is_none());
        assert!(positions("").is_none());
    }
}
