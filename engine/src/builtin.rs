//! The contract between the engine and a builtin stage kind, and the one place it is wired.
//!
//! A builtin is what a domain crate (the GAN domain is `stages`) adds to the engine: a named
//! kind that a stage calls with `builtin: KIND` and a `with:` map instead of a shell command.
//! The engine never links domain code; the binary builds a [`Registry`] of `&dyn Builtin` and
//! hands it to the engine, which uses it in three places only:
//!
//! - reading `pipeline.yaml`: the kind must exist, and every `with:` key must be one the kind
//!   reads ([`ParamsSchema`]), so a typo is an error at its line, not a failed stage later;
//! - the fingerprint: the kind's [`Builtin::version`] enters it, so bumping the version reruns
//!   every stage of that kind. **Bump it whenever the kind's outputs change meaning for the same
//!   params** (a fixed bug, a new default); nothing else notices;
//! - running: `repro builtin KIND --with JSON` calls [`Builtin::run`] with a [`Context`], in the
//!   stage's staging directory, in a child process (so a crash never takes the scheduler down,
//!   and the local and SLURM executors run builtins the same way).
//!
//! A builtin reads its params through the context, reads its deps and writes its outs by paths
//! relative to the current directory, and reports progress through [`Context::progress`] (the
//! [`crate::progress`] protocol). It never prints to stdout for the user: stdout and stderr go
//! to the stage's log. It fails with a [`StageError`]; the params variant means exit code 2.
//!
//! Most kinds implement the trait through [`Kind`], a table entry whose run function takes the
//! kind's own params type: the schema then comes from that type, so the keys a kind accepts
//! are written once, in its `#[derive(Deserialize)]` struct.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value};

use crate::progress::ProgressPipe;

/// One builtin stage kind.
pub trait Builtin: Sync {
    /// The name used in `pipeline.yaml` (`builtin: train-gan`).
    fn kind(&self) -> &'static str;
    /// Enters the fingerprint: bump it when results change meaning for the same params.
    fn version(&self) -> u32;
    /// One line for `repro builtin --list`.
    fn summary(&self) -> &'static str;
    /// The `with:` keys the kind accepts, checked when `pipeline.yaml` is read.
    fn params(&self) -> ParamsSchema;
    /// Runs the stage inside its staging directory.
    fn run(&self, ctx: &Context) -> Result<(), StageError>;
}

/// The builtins one binary knows, in the order `repro builtin --list` shows them.
#[derive(Clone, Copy, Default)]
pub struct Registry {
    builtins: &'static [&'static dyn Builtin],
}

impl Registry {
    /// A registry of these builtins. An empty one (the default) knows none: a pipeline that
    /// names a builtin is then an error at that line.
    pub const fn new(builtins: &'static [&'static dyn Builtin]) -> Self {
        Registry { builtins }
    }

    /// The builtin registered under `kind`, if any.
    pub fn lookup(&self, kind: &str) -> Option<&'static dyn Builtin> {
        self.builtins.iter().copied().find(|b| b.kind() == kind)
    }

    /// Every builtin, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &'static dyn Builtin> {
        self.builtins.iter().copied()
    }

    /// Every kind name, for messages.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.iter().map(|b| b.kind()).collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}

/// The top-level `with:` keys a kind accepts; `None` when the params type does not say (a map,
/// an untagged enum), and then only the kind itself checks them, when it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsSchema {
    pub keys: Option<&'static [&'static str]>,
}

impl ParamsSchema {
    /// The schema of a serde params type: the field names its `Deserialize` asks for. A struct
    /// deserializes by asking for its fields by name; this listens to that question without
    /// deserializing anything, so the list is always the type's own.
    pub fn of<P: DeserializeOwned>() -> Self {
        let mut keys = None;
        let _ = P::deserialize(FieldNames { keys: &mut keys });
        ParamsSchema { keys }
    }
}

/// A deserializer that records the field list of the first struct asked of it, then fails.
struct FieldNames<'a> {
    keys: &'a mut Option<&'static [&'static str]>,
}

#[derive(Debug)]
struct Listened;

impl fmt::Display for Listened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Listened {}

impl de::Error for Listened {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Listened
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Listened;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Listened> {
        *self.keys = Some(fields);
        Err(Listened)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Listened> {
        Err(Listened)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A builtin as a table entry: its run function takes the kind's params type `P`, parsed from
/// `with:` (use `#[serde(deny_unknown_fields)]` on it), and `P`'s fields are the schema.
pub struct Kind<P> {
    pub kind: &'static str,
    pub version: u32,
    pub summary: &'static str,
    pub run: fn(&Context, P) -> Result<(), StageError>,
}

impl<P: DeserializeOwned> Builtin for Kind<P> {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn summary(&self) -> &'static str {
        self.summary
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::of::<P>()
    }
    fn run(&self, ctx: &Context) -> Result<(), StageError> {
        (self.run)(ctx, ctx.params()?)
    }
}

/// Why a builtin stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The `with:` params do not fit the kind (unknown key, wrong type, bad value).
    #[error("invalid params for builtin `{kind}`: {message}")]
    Params { kind: String, message: String },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] crate::fsutil::FsError),
    /// Any failure of the domain code, with its own typed error as the source.
    #[error(transparent)]
    Domain(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StageError {
    /// Wraps a domain module's typed error.
    pub fn domain(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Domain(Box::new(err))
    }

    /// An I/O error with the path and what was being done to it.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io(crate::fsutil::FsError::new(action, path, source))
    }

    /// Whether the error is the user's params rather than the stage's work (exit code 2, not 1).
    pub fn is_params(&self) -> bool {
        matches!(self, StageError::Params { .. })
    }
}

/// What a running builtin sees of the engine.
pub struct Context {
    kind: String,
    params: Map<String, Value>,
    progress: ProgressPipe,
}

impl Context {
    /// A context for `kind` with the given `with:` params; progress goes where
    /// [`ProgressPipe::from_env`] says.
    pub fn new(kind: &str, params: Map<String, Value>) -> Self {
        Context {
            kind: kind.to_string(),
            params,
            progress: ProgressPipe::from_env(),
        }
    }

    /// The builtin kind being run.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The raw `with:` map.
    pub fn raw_params(&self) -> &Map<String, Value> {
        &self.params
    }

    /// The `with:` map deserialized into the kind's own params type. Use
    /// `#[serde(deny_unknown_fields)]` on it so a misspelled key is an error naming the key.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, StageError> {
        serde_json::from_value(Value::Object(self.params.clone())).map_err(|e| StageError::Params {
            kind: self.kind.clone(),
            message: e.to_string(),
        })
    }

    /// Reports progress: `step` of `total` (0 when unknown), with a short message.
    pub fn progress(&self, step: u64, total: u64, message: &str) {
        self.progress.send(step, total, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        out: String,
        #[serde(default)]
        seed: u64,
        #[serde(rename = "n-samples")]
        samples: usize,
    }

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum Either {
        A(Params),
        B(String),
    }

    #[test]
    fn the_schema_is_the_params_types_field_names() {
        let keys = ParamsSchema::of::<Params>().keys.unwrap();
        assert_eq!(keys, &["out", "seed", "n-samples"]);
        assert_eq!(ParamsSchema::of::<Map<String, Value>>().keys, None);
        assert_eq!(ParamsSchema::of::<Either>().keys, None);
    }

    fn run(_: &Context, p: Params) -> Result<(), StageError> {
        assert_eq!(p.out, "x");
        Ok(())
    }

    #[test]
    fn a_kind_parses_its_params_and_a_registry_finds_it() {
        static K: Kind<Params> = Kind {
            kind: "k",
            version: 3,
            summary: "a test kind",
            run,
        };
        static ALL: [&dyn Builtin; 1] = [&K];
        let reg = Registry::new(&ALL);
        let b = reg.lookup("k").unwrap();
        assert_eq!((b.version(), reg.kinds()), (3, vec!["k"]));
        assert!(reg.lookup("nope").is_none());
        let ok = serde_json::json!({"out": "x", "n-samples": 2});
        let ctx = Context::new("k", ok.as_object().unwrap().clone());
        b.run(&ctx).unwrap();
        let bad = serde_json::json!({"out": "x", "n_samples": 2});
        let ctx = Context::new("k", bad.as_object().unwrap().clone());
        assert!(b.run(&ctx).unwrap_err().is_params());
    }
}
