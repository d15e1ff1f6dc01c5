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
//! their values, so the two trees keep the same shape. If this pass ever fails where
//! serde_norway succeeded (it should not: same parser), callers fall back to the nearest
//! located ancestor instead of failing.

use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;

use unsafe_libyaml_norway as unsafe_libyaml;

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
    Seq(Vec<PosNode>),
    /// Entries in source order: key text ("" for a non-scalar key), key position, value.
    Map(Vec<(String, Location, PosNode)>),
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
        text: String,
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

fn next_event(parser: &mut Parser) -> Option<(Ev, Location)> {
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
                Ev::Scalar {
                    anchor: anchor(s.anchor),
                    text: String::from_utf8_lossy(bytes).into_owned(),
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

/// Positions of the first document's root node, or `None` if the text does not parse (the
/// value pass reports syntax errors, with better messages) or is empty.
pub(crate) fn positions(text: &str) -> Option<PosNode> {
    // SAFETY: `text` outlives `parser`, which is dropped at the end of this function.
    let mut parser = unsafe { Parser::new(text.as_bytes()) }?;
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<Vec<u8>, PosNode> = HashMap::new();
    let mut root: Option<PosNode> = None;
    let mut seen_doc = false;
    loop {
        let (ev, loc) = next_event(&mut parser)?;
        let done = match ev {
            Ev::DocStart => {
                if seen_doc {
                    return root; // only the first document matters
                }
                seen_doc = true;
                None
            }
            Ev::StreamEnd => return root,
            Ev::Other => None,
            Ev::Scalar { anchor, text } => {
                let node = PosNode {
                    loc,
                    kind: PosKind::Scalar(text),
                };
                if let Some(a) = anchor {
                    anchors.insert(a, node.clone());
                }
                Some(node)
            }
            Ev::Alias(name) => Some(match anchors.get(&name) {
                // The value is the anchored node's; the alias's own position is where the
                // user wrote it, which is where an error about it should point.
                Some(n) => PosNode {
                    loc,
                    kind: n.kind.clone(),
                },
                None => PosNode {
                    loc,
                    kind: PosKind::Scalar(String::new()),
                },
            }),
            Ev::SeqStart(anchor) => {
                stack.push(Frame::Seq {
                    loc,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Ev::MapStart(anchor) => {
                stack.push(Frame::Map {
                    loc,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
                None
            }
            Ev::SeqEnd | Ev::MapEnd => {
                let (node, anchor) = match stack.pop()? {
                    Frame::Seq { loc, anchor, items } => (
                        PosNode {
                            loc,
                            kind: PosKind::Seq(items),
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
                            kind: PosKind::Map(entries),
                        },
                        anchor,
                    ),
                };
                if let Some(a) = anchor {
                    anchors.insert(a, node.clone());
                }
                Some(node)
            }
        };
        if let Some(node) = done {
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map { entries, key, .. }) => match key.take() {
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
