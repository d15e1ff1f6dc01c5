//! The resolved pipeline: what `spec` hands to the rest of the engine.
//!
//! Everything here is already expanded (`matrix`/`foreach` fanned out into `stage@a-b`
//! members), interpolated (`${...}` replaced), overlaid (profile, then `--set`) and validated
//! (known keys, param references, paths inside the workspace). Paths are workspace-relative,
//! normalized, `/`-separated, never absolute and never containing `..`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

/// A position in `pipeline.yaml`, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

/// A parsed, expanded and validated `pipeline.yaml`.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    /// The profile that was applied (`--profile`, else `default_profile:`), if any.
    pub profile: Option<String>,
    /// The `--set key.path=value` overrides that were applied after it, in order.
    pub sets: Vec<String>,
    /// The top-level `params:` after the profile overlay and `--set` overrides.
    pub params: Value,
    /// Every stage, expanded, in file order (members of a fan-out in expansion order).
    pub stages: Vec<Stage>,
    /// Fan-out group name -> its members' names, in expansion order.
    pub groups: BTreeMap<String, Vec<String>>,
    /// The top-level `executor:` block, if any (the command line overrides it).
    pub executor: Option<Executor>,
}

/// The variable that tells a stage which profile its pipeline was loaded with, so that a
/// `repro` called from the stage (`repro dag`, `repro status`) reads the same pipeline: the
/// command line's `--profile` defaults to it.
pub const PROFILE_ENV: &str = "REPRO_PROFILE";

/// The variable that carries the `--set` overrides to a stage, one per line; `--set` defaults
/// to it.
pub const SET_ENV: &str = "REPRO_SET";

impl Pipeline {
    /// What every stage process of this pipeline is told about how it was loaded:
    /// [`PROFILE_ENV`] (when a profile applies) and [`SET_ENV`] (when `--set` was given). A
    /// stage that reads them (one that calls `repro`) names them in its `env:`, and then these
    /// values, not repro's own environment, enter its fingerprint.
    pub fn stage_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(profile) = &self.profile {
            env.insert(PROFILE_ENV.to_string(), profile.clone());
        }
        if !self.sets.is_empty() {
            env.insert(SET_ENV.to_string(), self.sets.join("\n"));
        }
        env
    }
}

/// Where stages run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// Child processes of `repro` on this machine.
    Local,
    /// One SLURM batch job per stage, on a filesystem shared with the nodes.
    Slurm,
}

/// The top-level `executor:` block. Never part of any fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Executor {
    pub kind: ExecutorKind,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// sbatch `--time`, as written.
    pub time: Option<String>,
    /// Passed to sbatch after everything else.
    pub extra_args: Vec<String>,
    pub location: Location,
}

/// What a stage runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Shell commands, each run by `sh -c` in order; the first failure stops the stage.
    Cmd(Vec<String>),
    /// A builtin kind of the `stages` crate with its `with:` params (interpolated).
    Builtin {
        kind: String,
        /// The kind's version in the registry that read the file: it enters the fingerprint.
        version: u32,
        with: serde_json::Map<String, Value>,
    },
}

/// One declared output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Out {
    /// Workspace-relative path (file or directory).
    pub path: String,
    /// Stored in the content-addressed cache (default true).
    pub cache: bool,
    /// Copied into the staging dir before the run, so the stage can resume from it.
    pub persist: bool,
    /// Declared under `metrics:` (JSON or CSV written by the stage).
    pub metric: bool,
    pub location: Location,
}

/// One declared dependency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dep {
    /// Workspace-relative path (file or directory).
    pub path: String,
    pub location: Location,
}

/// Resource requests that bound how many stages run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub cpus: u32,
    pub gpus: u32,
    /// Bytes; 0 when not declared.
    pub mem: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: 1,
            gpus: 0,
            mem: 0,
        }
    }
}

/// One stage after expansion.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage {
    /// `train` or, for a fan-out member, `train@sn-64`.
    pub name: String,
    /// The fan-out group (`train`) a member belongs to.
    pub group: Option<String>,
    /// A fan-out member's coordinates: what `${item}` and `${key}` were when its body was
    /// interpolated (`None` outside a fan-out). Not part of any fingerprint (they only act
    /// through the interpolated body); `repro exp show` shows them as `item.*`/`key.*` columns.
    pub item: Option<Value>,
    pub key: Option<Value>,
    pub action: Action,
    pub deps: Vec<Dep>,
    /// Outs and metrics together (metrics have `metric: true`).
    pub outs: Vec<Out>,
    /// Tracked params: dotted key of the top-level `params:` -> its resolved value.
    pub params: BTreeMap<String, Value>,
    pub frozen: bool,
    pub always_changed: bool,
    pub deterministic: bool,
    pub resources: Resources,
    /// Working directory, workspace-relative ("" for the root).
    pub wdir: String,
    /// Names of environment variables whose values enter the fingerprint.
    pub env: Vec<String>,
    /// Where the stage is declared (its key under `stages:`).
    pub location: Location,
}
