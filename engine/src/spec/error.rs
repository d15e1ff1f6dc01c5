//! Errors of `pipeline.yaml`: one variant per class of mistake, each pointing at the node.
//!
//! The binary maps every [`SpecErrorKind`] to one exit code, so the variants exist for tests
//! and for callers that want to react to one class (an editor integration, `repro check`).
//! What must stay stable: the rendered form `FILE:LINE:COL: message`, because editors and
//! terminals turn it into a clickable link, and the message style of the whole project:
//! lowercase, names/keys/paths in backticks, and a hint saying what to do.
//!
//! The file is shown as the caller gave it (usually relative): an absolute path in a message
//! only appears when the user typed one.
//!
//! [`SpecError::render`] adds the source line with a caret under the column (just's and
//! rustc's style) for terminals; `Display` stays one line for logs, JSON and tests.

use std::fmt;
use std::path::PathBuf;

use super::model::Location;

/// A mistake in `pipeline.yaml` (or in `--profile` / `--set`), with where it is.
#[derive(Debug)]
pub struct SpecError {
    /// The pipeline file, as given by the caller.
    pub file: PathBuf,
    /// Where in the file; `None` for mistakes on the command line or in reading the file.
    pub location: Option<Location>,
    pub kind: SpecErrorKind,
}

impl SpecError {
    /// An error at `loc`; the file is filled in by [`super::parse`] on the way out, so the
    /// inner passes do not thread the path through every call.
    pub(crate) fn at(loc: Location, kind: SpecErrorKind) -> Self {
        SpecError {
            file: PathBuf::new(),
            location: Some(loc),
            kind,
        }
    }

    /// An error that has no place in the file (command-line options, I/O).
    pub(crate) fn nowhere(kind: SpecErrorKind) -> Self {
        SpecError {
            file: PathBuf::new(),
            location: None,
            kind,
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(Location { line, col }) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.kind)
            }
            None => write!(f, "{}: {}", self.file.display(), self.kind),
        }
    }
}

impl SpecError {
    /// The error with the offending source line and a caret under the column, the way
    /// compilers show it; `source` is the text that was parsed. Falls back to the one-line
    /// form when there is no location (command-line mistakes) or the line is not in `source`.
    pub fn render(&self, source: &str) -> String {
        let Some(Location { line, col }) = self.location else {
            return format!("error: {self}");
        };
        // Columns are counted without a leading byte order mark (see `node::parse_located`).
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        let Some(text) = source.lines().nth(line.saturating_sub(1)) else {
            return format!("error: {self}");
        };
        let gutter = " ".repeat(line.to_string().len());
        let pad: String = text
            .chars()
            .take(col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "error: {kind}\n{gutter}--> {file}:{line}:{col}\n{gutter} |\n{line} | {text}\n{gutter} | {pad}^",
            kind = self.kind,
            file = self.file.display(),
        )
    }
}

impl SpecError {
    /// [`render`](Self::render) against the file on disk, for callers that used [`super::load`]
    /// and no longer hold the text; the one-line form if the file cannot be read again (or is
    /// over the size limit, or not UTF-8: it is read with the bounds of [`super::load`]).
    pub fn render_from_file(&self) -> String {
        match super::read_bounded(&self.file).map(String::from_utf8) {
            Ok(Ok(text)) => self.render(&text),
            _ => format!("error: {self}"),
        }
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

/// Where a key or value sits, for messages: "in stage `train`", "at the top level", ...
pub type Context = Box<str>;

/// Every class of mistake `spec` reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecErrorKind {
    #[error("cannot read the pipeline file ({source}); check that it exists and is readable")]
    Read {
        #[source]
        source: std::io::Error,
    },

    #[error("invalid yaml: {message}")]
    Syntax { message: String },

    #[error("duplicate key `{key}` (first at line {}); a key may appear only once in a map", first.line)]
    DuplicateKey { key: String, first: Location },

    #[error("unknown key `{key}` {context}{} (expected one of: {})", did_you_mean(key, expected), expected.join(", "))]
    UnknownKey {
        key: String,
        context: Context,
        expected: Vec<&'static str>,
    },

    #[error("`{what}` {context} must be {expected}, found {found}")]
    WrongType {
        what: Box<str>,
        context: Context,
        expected: &'static str,
        found: &'static str,
    },

    #[error("stage `{stage}` has neither `cmd` nor `builtin`; add one of them")]
    MissingAction { stage: String },

    #[error("stage `{stage}` has both `cmd` and `builtin`; keep only one of them")]
    BothActions { stage: String },

    #[error("stage `{stage}` has `with` but no `builtin`; `with` passes params to a builtin, so add `builtin: KIND` or remove `with`")]
    WithWithoutBuiltin { stage: String },

    #[error(
        "unknown builtin kind `{kind}` in stage `{stage}` ({})",
        known_kinds(known)
    )]
    UnknownBuiltin {
        stage: String,
        kind: String,
        known: Vec<String>,
    },

    #[error("unknown reference `${{{reference}}}` {context}; {}", reference_hint(reference, suggestions, *in_fanout))]
    UnknownReference {
        reference: String,
        context: Context,
        /// Close names that do resolve, closest first (boxed: keeps the error small).
        suggestions: Box<[String]>,
        in_fanout: bool,
    },

    #[error("bad interpolation `{text}` {context}: {reason}")]
    BadInterpolation {
        text: String,
        context: Context,
        reason: String,
    },

    #[error("`{name}` is defined in both `vars:` and `params:`; rename one of them so `${{{name}}}` is unambiguous")]
    AmbiguousName { name: String },

    #[error("unknown profile `{profile}` ({})", defined_profiles(defined))]
    UnknownProfile {
        profile: String,
        defined: Vec<String>,
    },

    #[error("unknown param `{key}` {context}{}", suggest(suggestions))]
    UnknownParam {
        key: String,
        context: Context,
        suggestions: Vec<String>,
    },

    #[error("bad `--set {arg}`: {reason}")]
    BadSet { arg: String, reason: String },

    #[error("{what} `{path}` in stage `{stage}` is outside the workspace; use a path relative to the pipeline's directory that stays inside it")]
    OutsideWorkspace {
        what: &'static str,
        path: String,
        stage: String,
    },

    #[error("out `{path}` of stage `{stage}` is {}; repro keeps its own state there, so no stage may write it: choose another path", reserved_what(reserved))]
    ReservedOut {
        path: String,
        /// Boxed: every variant must stay small, `SpecError` travels in every `Result` here.
        reserved: Box<str>,
        stage: String,
    },

    #[error("{what} `{path}` in stage `{stage}` is empty or the workspace root itself; name a file or directory inside the workspace")]
    EmptyPath {
        what: &'static str,
        path: String,
        stage: String,
    },

    #[error("duplicate stage name `{name}` ({}); give each stage, and each fan-out member, a unique name", duplicate_origin(*first, *same_template))]
    DuplicateStage {
        name: String,
        first: Location,
        /// Both come from the same fan-out (repeated `foreach` items or matrix values).
        same_template: bool,
    },

    #[error("stage name `{}` {}{reason}; `@` separates a fan-out group from its member, `/` is for paths, and whitespace breaks targets on the command line{}", shown(name), if *member { "has a member part that " } else { "" }, if *member { " (use a `foreach:` map to choose member names)" } else { "" })]
    ReservedStageName {
        name: String,
        reason: &'static str,
        /// The offending part comes from a fan-out value, not from the name as written.
        member: bool,
    },

    #[error("stage `{stage}` has an empty `cmd`; write the shell command to run")]
    EmptyCmd { stage: String },

    #[error("bad `resources.{field}` in stage `{stage}`: {reason}")]
    BadResource {
        stage: String,
        field: &'static str,
        reason: String,
    },

    #[error("bad environment variable name `{name}` in stage `{stage}`; names are letters, digits and `_`, not starting with a digit")]
    BadEnvName { stage: String, name: String },

    #[error("bad fan-out in stage `{stage}`: {reason}")]
    BadFanOut { stage: String, reason: String },

    #[error("unknown executor `{kind}`; use `local` or `slurm`")]
    UnknownExecutor { kind: String },

    #[error("`executor` has no `kind`; add `kind: slurm` (or `kind: local`)")]
    ExecutorWithoutKind,

    #[error("the pipeline file is larger than the limit of {}; check that this is the pipeline file, and keep data in files that stages read as deps (a generated pipeline this large may raise every bound with `REPRO_SPEC_SCALE`)", mib(*limit))]
    FileTooLarge { limit: usize },

    #[error("`{var}` must be a whole number from 1 to 1000 (the factor on every size bound of a pipeline), not `{value}`")]
    BadScale { var: &'static str, value: String },

    #[error("not valid UTF-8 at byte offset {offset} (byte 0x{byte:02x}){}; save the file as UTF-8", if *utf16 { ", the file looks like UTF-16" } else { "" })]
    NotUtf8 {
        /// Bytes from the start of the file to the first invalid one.
        offset: usize,
        byte: u8,
        /// The file starts with a UTF-16 byte order mark.
        utf16: bool,
    },

    #[error("lists and maps nest more than {limit} levels deep here (an alias `*name` counts at the depth where it is used); a pipeline needs only a few levels, so flatten this value")]
    TooDeep { limit: usize },

    #[error("the file holds more than {limit} yaml values once aliases are expanded, and this one goes over; look for an alias (`*name`) that repeats a large value many times, or split the pipeline")]
    TooManyNodes { limit: usize },

    #[error("aliases (`*name`) make this file more than {ratio} times larger once expanded, which the yaml reader refuses; this alias expands the most, so write its value out or nest fewer aliases inside aliases")]
    TooManyAliases { ratio: usize },

    #[error("the file's text grows past {} once aliases are expanded, and this one goes over; look for an alias (`*name`) that repeats a long value many times", mib(*limit))]
    TooMuchText { limit: usize },

    #[error("the pipeline has more than {limit} stages once `matrix:` and `foreach:` are expanded, and this one goes over; split the pipeline, fan out over fewer values, or raise every bound with `REPRO_SPEC_SCALE`")]
    TooManyStages { limit: usize },

    #[error("fan-out (`matrix:`, `foreach:`) and `${{...}}` references expand the pipeline past {nodes} values or {} of text, and this one goes over; look for a fan-out with too many members or a reference that copies a large value many times", mib(*bytes))]
    TooMuchExpansion { nodes: usize, bytes: usize },

    #[error("{what} `{}` in stage `{stage}` contains a NUL character (`\\0`), which no {} can hold; remove it", shown(value), if *what == "cmd" { "command" } else { "path" })]
    NulCharacter {
        what: &'static str,
        value: String,
        stage: String,
    },
}

/// `limit` bytes in MiB, for messages.
fn mib(limit: usize) -> String {
    format!("{} MiB", limit >> 20)
}

/// `s` with control characters (NUL, escape, newlines) written as escapes, so a message
/// about them shows them instead of sending them to the terminal.
pub(crate) fn shown(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn reserved_what(reserved: &str) -> String {
    match reserved {
        ".repro" => "inside `.repro/` (the cache, the lock journal and staging)".into(),
        crate::lockfile::LOCK_FILE => "`repro.lock`".into(),
        file => format!("the pipeline file `{file}`"),
    }
}

fn duplicate_origin(first: Location, same_template: bool) -> String {
    if same_template {
        "the fan-out yields it twice: make its `foreach` items or `matrix` values unique".to_owned()
    } else {
        format!("first defined at line {}", first.line)
    }
}

fn known_kinds(known: &[String]) -> String {
    if known.is_empty() {
        "no builtin kinds are registered in this build; use `cmd:`".to_owned()
    } else {
        format!("known kinds: {}", known.join(", "))
    }
}

fn defined_profiles(defined: &[String]) -> String {
    if defined.is_empty() {
        "the pipeline defines no `profiles:`".to_owned()
    } else {
        format!("defined: {}", defined.join(", "))
    }
}

/// "; did you mean `deps`?" for a mistyped key among the `expected` ones, or nothing.
fn did_you_mean(key: &str, expected: &[&str]) -> String {
    match super::keys::suggestions(key, expected).first() {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

fn suggest(suggestions: &[String]) -> String {
    match suggestions {
        [] => "; add it to `params:` first".to_owned(),
        [one] => format!("; did you mean `{one}`?"),
        many => {
            let list: Vec<String> = many.iter().map(|s| format!("`{s}`")).collect();
            format!("; did you mean one of {}?", list.join(", "))
        }
    }
}

fn reference_hint(reference: &str, suggestions: &[String], in_fanout: bool) -> String {
    let literal = format!("write `$${{{reference}}}` for a literal `${{`");
    match suggestions.first() {
        Some(s) => format!("did you mean `${{{s}}}`? (or {literal})"),
        None => format!(
            "define `{}` under `vars:` or `params:`{}, or {literal}",
            reference.split('.').next().unwrap_or(reference),
            fanout_hint(in_fanout)
        ),
    }
}

fn fanout_hint(in_fanout: bool) -> &'static str {
    if in_fanout {
        " (fan-out members also see `item` and, for a `foreach` map or a `matrix` map axis, `key`)"
    } else {
        ""
    }
}
