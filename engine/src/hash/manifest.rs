//! The directory manifest: the text whose sha256 *is* a directory's content hash.
//!
//! A directory hashes as `sha256(text)` where `text` has one line per regular file below it,
//! `relpath SP sha256 LF`, sorted by the byte order of `relpath`. This is a one-level Merkle
//! tree: one changed file changes one line, so re-hashing a directory after an edit costs one
//! file read plus a stat per untouched file (through the hash cache).
//!
//! What must never change silently (it would change every directory hash in every lock file):
//! - the line shape `relpath sha256\n`, the separator (one space), lowercase hex;
//! - `relpath` is relative, `/`-separated, UTF-8, with no `.`/`..`/empty components;
//! - the sort is by the raw bytes of `relpath` (not per directory level: `a.txt` < `a/b`);
//! - only regular files appear: directory entries and empty directories are not hashed, so
//!   an empty directory is indistinguishable from a missing subdirectory.
//!
//! The text carries no sizes and no modes on purpose: the content hash must not depend on
//! anything but relative names and bytes. [`ManifestEntry::size`] is therefore only known when
//! the manifest was built from a walk; a [`Manifest::parse`]d entry has size `0`, and the store
//! fills sizes in from its objects when it needs them.
//!
//! The text is also the on-disk form of a directory object in the content-addressed store, so an
//! object's name is the sha256 of its bytes for directories and files alike.

use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// A directory manifest, entries sorted by `path` in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

/// One regular file of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// `/`-separated path relative to the directory.
    pub path: String,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes; `0` when parsed from text (the text does not carry sizes).
    pub size: u64,
}

/// A manifest text that does not follow the format.
#[derive(Debug, Error)]
#[error("invalid manifest at line {line}: {reason}")]
pub struct ManifestError {
    pub line: usize,
    pub reason: String,
}

impl Manifest {
    /// The canonical text: `relpath sha256\n` per entry, in entry order.
    pub fn text(&self) -> String {
        let len = self.entries.iter().map(|e| e.path.len() + 66).sum();
        let mut out = String::with_capacity(len);
        for e in &self.entries {
            out.push_str(&e.path);
            out.push(' ');
            out.push_str(&e.sha256);
            out.push('\n');
        }
        out
    }

    /// Lowercase hex sha256 of [`Manifest::text`]: the directory's content hash.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.text().as_bytes()))
    }

    /// Sum of the entries' sizes.
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Parses a manifest text, accepting only the canonical form, so that
    /// `parse(t)?.text() == t` always holds and a manifest cannot name a path outside its
    /// directory (it may come from a damaged or hand-edited store).
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(ManifestError {
                line: text.lines().count(),
                reason: "the last line does not end with a newline".into(),
            });
        }
        let mut entries: Vec<ManifestEntry> = Vec::new();
        for (i, line) in text.split_terminator('\n').enumerate() {
            let bad = |reason: String| ManifestError {
                line: i + 1,
                reason,
            };
            let (path, sha) = line
                .rsplit_once(' ')
                .ok_or_else(|| bad("expected `relpath sha256`".into()))?;
            if !is_sha256_hex(sha) {
                return Err(bad(format!("`{sha}` is not a lowercase hex sha256")));
            }
            check_relpath(path).map_err(|r| bad(format!("path `{path}` {r}")))?;
            if let Some(prev) = entries.last() {
                if prev.path.as_bytes() >= path.as_bytes() {
                    return Err(bad(format!(
                        "path `{path}` is not sorted after `{}` (or is repeated)",
                        prev.path
                    )));
                }
            }
            entries.push(ManifestEntry {
                path: path.to_owned(),
                sha256: sha.to_owned(),
                size: 0,
            });
        }
        Ok(Manifest { entries })
    }
}

/// True for 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why `path` cannot be a manifest path, if it cannot.
pub(crate) fn check_relpath(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.contains(['\n', '\0']) {
        return Err("contains a newline or NUL");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("is absolute or has an empty, `.` or `..` component");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, sha: &str) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            sha256: sha.into(),
            size: 0,
        }
    }

    const A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const B: &str = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";

    #[test]
    fn text_is_relpath_space_sha_newline() {
        let m = Manifest {
            entries: vec![entry("a b.txt", A), entry("sub/b", B)],
        };
        assert_eq!(m.text(), format!("a b.txt {A}\nsub/b {B}\n"));
        assert_eq!(Manifest::default().text(), "");
    }

    #[test]
    fn sha256_is_the_hash_of_the_text() {
        let m = Manifest {
            entries: vec![entry("x", A)],
        };
        let expect = hex::encode(Sha256::digest(format!("x {A}\n")));
        assert_eq!(m.sha256(), expect);
        // sha256("") is the well-known empty digest: an empty directory.
        assert_eq!(
            Manifest::default().sha256(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_keeps_spaces_in_names() {
        let text = format!("a b.txt {A}\nsub/b {B}\n");
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.entries[0].path, "a b.txt");
        assert_eq!(m.text(), text);
        assert_eq!(Manifest::parse("").unwrap(), Manifest::default());
    }

    #[test]
    fn parse_rejects_non_canonical_or_escaping_text() {
        let cases = [
            format!("x {A}"),          // no final newline
            format!("b {A}\na {B}\n"), // unsorted
            format!("a {A}\na {B}\n"), // repeated
            format!("../x {A}\n"),     // escapes
            format!("/etc/x {A}\n"),   // absolute
            format!("a//b {A}\n"),     // empty component
            format!("./a {A}\n"),      // dot component
            format!("x {}\n", A.to_uppercase()),
            "x abc\n".to_string(),
            "nospace\n".to_string(),
        ];
        for c in &cases {
            assert!(Manifest::parse(c).is_err(), "accepted {c:?}");
        }
    }

    #[test]
    fn byte_order_sorts_dot_before_slash() {
        // '.' (0x2e) < '/' (0x2f): `a.txt` precedes `a/b`, unlike a per-level walk order.
        let text = format!("a.txt {A}\na/b {B}\n");
        assert!(Manifest::parse(&text).is_ok());
        assert!(Manifest::parse(&format!("a/b {B}\na.txt {A}\n")).is_err());
    }
}
