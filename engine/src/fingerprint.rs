//! What a stage's identity is made of, and *why* it changed.
//!
//! A stage is fresh when the fingerprint of its current inputs equals the one recorded in
//! `repro.lock` and its recorded outs are still on disk, unmodified. The fingerprint is sha256
//! over the canonical JSON (keys sorted, no whitespace) of [`Inputs`] plus the scheme version.
//!
//! | input                               | hashed | why                                                    |
//! |-------------------------------------|--------|--------------------------------------------------------|
//! | cmd text (after interpolation)      | yes    | a different command is a different computation         |
//! | builtin kind + its `version`        | yes    | the version is bumped when a kind's results change     |
//! | builtin `with:` params (resolved)   | yes    | they are the builtin's arguments                       |
//! | tracked `params:` keys and values   | yes    | key by key, so an untracked key never reruns a stage   |
//! | the declared *set* of deps and outs | yes    | removing a dep or an out must rerun (DVC #9913)        |
//! | each dep's content sha256           | yes    | content, never mtime: a `touch` or a checkout is free  |
//! | `wdir`                              | yes    | relative paths in the cmd mean something else          |
//! | allow-listed `env:` values          | yes    | only the names the stage declares                      |
//! | out contents                        | no     | outputs are checked separately (missing / modified)    |
//! | mtimes, absolute paths, host names  | never  | a moved or re-cloned workspace keeps its cache         |
//! | resources, `deterministic`, `frozen`| no     | they change how a stage is scheduled, not what it makes|
//!
//! [`SCHEME`] must be bumped whenever the meaning of a fingerprint changes (a field added to
//! [`Inputs`], a change in canonicalization or in directory hashing): every stage then reruns
//! once, which is the honest outcome. Never change what goes into the hash without bumping it.
//!
//! Comparing the recorded inputs with the current ones yields typed [`DirtyReason`]s, which
//! `repro status` prints (`params.lr: 0.0002 -> 0.0001`, `dep data/mnist modified`, ...).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Version of the fingerprint scheme; part of every fingerprint.
pub const SCHEME: u32 = 1;

/// Content digest of a file or directory as recorded in `repro.lock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRecord {
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfiles: Option<u64>,
}

impl From<&crate::hash::Digest> for DigestRecord {
    fn from(d: &crate::hash::Digest) -> Self {
        DigestRecord {
            sha256: d.sha256.clone(),
            size: d.size,
            nfiles: d.nfiles,
        }
    }
}

impl From<&DigestRecord> for crate::hash::Digest {
    fn from(d: &DigestRecord) -> Self {
        crate::hash::Digest {
            sha256: d.sha256.clone(),
            size: d.size,
            nfiles: d.nfiles,
        }
    }
}

/// What the stage runs, as it enters the fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionRecord {
    Cmd(Vec<String>),
    Builtin {
        kind: String,
        version: u32,
        with: BTreeMap<String, Value>,
    },
}

/// One declared out, as it enters the fingerprint (the declaration, not the content).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutDecl {
    pub path: String,
    pub cache: bool,
    pub persist: bool,
    pub metric: bool,
}

/// Everything a stage's fingerprint is computed from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub action: ActionRecord,
    pub wdir: String,
    pub params: BTreeMap<String, Value>,
    pub deps: BTreeMap<String, DigestRecord>,
    pub outs: Vec<OutDecl>,
    pub env: BTreeMap<String, Option<String>>,
}

impl Inputs {
    /// The fingerprint: sha256 over the canonical JSON of the scheme version and these inputs.
    pub fn fingerprint(&self) -> String {
        let value = serde_json::json!({ "scheme": SCHEME, "inputs": self });
        hex::encode(Sha256::digest(canonical_json(&value).as_bytes()))
    }
}

/// `v` in canonical form: object keys sorted by their bytes at every level, arrays in their
/// order. Serialized compactly ([`canonical_json`]) it is the fingerprint's hash input; pretty,
/// it makes a domain's JSON outputs independent of map insertion order. One definition for both.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        scalar => scalar.clone(),
    }
}

/// `v` as canonical JSON: [`canonical`] with no insignificant whitespace. The output is
/// independent of map insertion order, which is what makes it a stable hash input.
pub fn canonical_json(v: &Value) -> String {
    canonical(v).to_string()
}

/// Why a stage must run (or be restored). Serialized for `repro status --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum DirtyReason {
    NeverRun,
    /// The stage's latest run failed (`repro status` reads it from the run records): either it
    /// never succeeded, or it failed with the very inputs it has now.
    LastRunFailed {
        log: Option<String>,
        /// Stopped by Ctrl-C rather than failed.
        interrupted: bool,
    },
    /// Not a cause but what the run will do: an unfinished run with these very inputs kept its
    /// persist outs in `kept` (`exec::resume`), and the next run continues from them.
    Resumes {
        kept: String,
    },
    Forced,
    AlwaysChanged,
    SchemeChanged,
    CmdChanged,
    BuiltinChanged {
        old: String,
        new: String,
    },
    WithChanged {
        key: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    ParamChanged {
        key: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    WdirChanged {
        old: String,
        new: String,
    },
    DepModified {
        path: String,
    },
    DepAdded {
        path: String,
    },
    DepRemoved {
        path: String,
    },
    DepMissing {
        path: String,
    },
    OutDeclared {
        path: String,
    },
    OutUndeclared {
        path: String,
    },
    OutMissing {
        path: String,
    },
    OutModified {
        path: String,
    },
    EnvChanged {
        name: String,
    },
    UpstreamStale {
        stage: String,
    },
    UpstreamFailed {
        stage: String,
    },
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(unset)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DirtyReason::*;
        match self {
            NeverRun => write!(f, "never run"),
            LastRunFailed {
                interrupted: true, ..
            } => write!(f, "last run interrupted"),
            LastRunFailed { log: Some(log), .. } => write!(f, "last run failed (log: {log})"),
            LastRunFailed { log: None, .. } => write!(f, "last run failed"),
            Resumes { kept } => write!(f, "continues from the unfinished run kept in {kept}"),
            Forced => write!(f, "forced"),
            AlwaysChanged => write!(f, "always changed"),
            SchemeChanged => write!(f, "fingerprint scheme changed"),
            CmdChanged => write!(f, "cmd changed"),
            BuiltinChanged { old, new } => write!(f, "builtin {old} -> {new}"),
            WithChanged { key, old, new } => {
                write!(f, "with.{key}: {} -> {}", show(old), show(new))
            }
            ParamChanged { key, old, new } => {
                write!(f, "params.{key}: {} -> {}", show(old), show(new))
            }
            WdirChanged { old, new } => write!(f, "wdir `{old}` -> `{new}`"),
            DepModified { path } => write!(f, "dep {path} modified"),
            DepAdded { path } => write!(f, "dep {path} added"),
            DepRemoved { path } => write!(f, "dep {path} removed"),
            DepMissing { path } => write!(f, "dep {path} missing"),
            OutDeclared { path } => write!(f, "out {path} declared"),
            OutUndeclared { path } => write!(f, "out {path} no longer declared"),
            OutMissing { path } => write!(f, "out {path} missing"),
            OutModified { path } => write!(f, "out {path} modified"),
            EnvChanged { name } => write!(f, "env {name} changed"),
            UpstreamStale { stage } => write!(f, "upstream {stage} stale"),
            UpstreamFailed { stage } => write!(f, "upstream {stage} failed"),
        }
    }
}

/// Every difference between the recorded inputs `old` and the current `new`, in a fixed order:
/// action, wdir, params, deps, declared outs, env.
pub fn compare(old: &Inputs, new: &Inputs) -> Vec<DirtyReason> {
    let mut reasons = Vec::new();
    match (&old.action, &new.action) {
        (ActionRecord::Cmd(a), ActionRecord::Cmd(b)) => {
            if a != b {
                reasons.push(DirtyReason::CmdChanged);
            }
        }
        (
            ActionRecord::Builtin {
                kind: k1,
                version: v1,
                with: w1,
            },
            ActionRecord::Builtin {
                kind: k2,
                version: v2,
                with: w2,
            },
        ) => {
            if k1 != k2 || v1 != v2 {
                reasons.push(DirtyReason::BuiltinChanged {
                    old: format!("{k1}@{v1}"),
                    new: format!("{k2}@{v2}"),
                });
            } else {
                for (key, old, new) in map_diff(w1, w2) {
                    reasons.push(DirtyReason::WithChanged { key, old, new });
                }
            }
        }
        _ => reasons.push(DirtyReason::CmdChanged),
    }
    if old.wdir != new.wdir {
        reasons.push(DirtyReason::WdirChanged {
            old: old.wdir.clone(),
            new: new.wdir.clone(),
        });
    }
    for (key, old, new) in map_diff(&old.params, &new.params) {
        reasons.push(DirtyReason::ParamChanged { key, old, new });
    }
    for (path, digest) in &new.deps {
        match old.deps.get(path) {
            None => reasons.push(DirtyReason::DepAdded { path: path.clone() }),
            Some(d) if d.sha256 != digest.sha256 => {
                reasons.push(DirtyReason::DepModified { path: path.clone() })
            }
            Some(_) => {}
        }
    }
    for path in old.deps.keys().filter(|p| !new.deps.contains_key(*p)) {
        reasons.push(DirtyReason::DepRemoved { path: path.clone() });
    }
    let old_outs: BTreeMap<&str, &OutDecl> =
        old.outs.iter().map(|o| (o.path.as_str(), o)).collect();
    let new_outs: BTreeMap<&str, &OutDecl> =
        new.outs.iter().map(|o| (o.path.as_str(), o)).collect();
    for (path, decl) in &new_outs {
        if old_outs.get(path) != Some(decl) {
            reasons.push(DirtyReason::OutDeclared {
                path: path.to_string(),
            });
        }
    }
    for path in old_outs.keys().filter(|p| !new_outs.contains_key(*p)) {
        reasons.push(DirtyReason::OutUndeclared {
            path: path.to_string(),
        });
    }
    for (name, value) in &new.env {
        if old.env.get(name) != Some(value) {
            reasons.push(DirtyReason::EnvChanged { name: name.clone() });
        }
    }
    for name in old.env.keys().filter(|n| !new.env.contains_key(*n)) {
        reasons.push(DirtyReason::EnvChanged { name: name.clone() });
    }
    reasons
}

/// Keys whose values differ between two maps, with the old and new values.
fn map_diff(
    old: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
) -> Vec<(String, Option<Value>, Option<Value>)> {
    let mut diffs = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            Some(o) if o == v => {}
            o => diffs.push((k.clone(), o.cloned(), Some(v.clone()))),
        }
    }
    for (k, v) in old {
        if !new.contains_key(k) {
            diffs.push((k.clone(), Some(v.clone()), None));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs() -> Inputs {
        Inputs {
            action: ActionRecord::Cmd(vec!["echo hi > out.txt".into()]),
            wdir: String::new(),
            params: BTreeMap::from([("lr".to_string(), json!(0.0002))]),
            deps: BTreeMap::from([(
                "data/x".to_string(),
                DigestRecord {
                    sha256: "aa".into(),
                    size: 1,
                    nfiles: None,
                },
            )]),
            outs: vec![OutDecl {
                path: "out.txt".into(),
                cache: true,
                persist: false,
                metric: false,
            }],
            env: BTreeMap::new(),
        }
    }

    /// The fingerprint's hash input, to the byte: every `repro.lock` ever written holds hashes
    /// of it, so a change here must come with a new `SCHEME` (and say so in `repro status`).
    #[test]
    fn the_hash_input_is_pinned() {
        let mut builtin = inputs();
        builtin.action = ActionRecord::Builtin {
            kind: "train-gan".into(),
            version: 4,
            with: BTreeMap::from([("sr".to_string(), json!({"mode": "static", "i": 0.5}))]),
        };
        // The hashes agree with Python's `json.dumps(value, sort_keys=True, separators=(",", ":"))`.
        let cmd = r#"{"inputs":{"action":{"cmd":["echo hi > out.txt"]},"deps":{"data/x":{"sha256":"aa","size":1}},"env":{},"outs":[{"cache":true,"metric":false,"path":"out.txt","persist":false}],"params":{"lr":0.0002},"wdir":""},"scheme":1}"#;
        let value = serde_json::json!({ "scheme": SCHEME, "inputs": inputs() });
        assert_eq!(canonical_json(&value), cmd);
        for (i, expected) in [
            (
                inputs(),
                "9a10ae5ebd534e76f078965baf5027bcf910a2af7dda26ac49d33ee26cdf96d2",
            ),
            (
                builtin,
                "95d2f4fd6c0fbfa93f0f2a432f59096ff86a6465ab67636de117bc4ad09eb083",
            ),
        ] {
            assert_eq!(i.fingerprint(), expected);
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"y":2,"x":1}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let a = inputs();
        assert_eq!(a.fingerprint(), inputs().fingerprint());
        let mut b = inputs();
        b.params.insert("lr".into(), json!(0.0001));
        assert_ne!(a.fingerprint(), b.fingerprint());
        let reasons = compare(&a, &b);
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].to_string(), "params.lr: 0.0002 -> 0.0001");
    }

    #[test]
    fn removing_a_dep_is_a_change() {
        let a = inputs();
        let mut b = inputs();
        b.deps.clear();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            compare(&a, &b),
            vec![DirtyReason::DepRemoved {
                path: "data/x".into()
            }]
        );
    }

    #[test]
    fn dep_content_change_names_the_dep() {
        let a = inputs();
        let mut b = inputs();
        b.deps.get_mut("data/x").unwrap().sha256 = "bb".into();
        assert_eq!(compare(&a, &b)[0].to_string(), "dep data/x modified");
    }
}
