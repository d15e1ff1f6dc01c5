//! `repro-engine`: a declarative, content-hashed pipeline engine.
//!
//! The engine knows nothing about GANs and depends on no ML crate: a domain (the GAN domain is
//! the `stages` crate) reaches it only through the [`builtin`] contract, as builtin stage kinds
//! in a [`builtin::Registry`] that the binary passes in ([`spec::LoadOptions::builtins`]); the
//! domain in turn uses the engine's shared mechanisms (atomic writes in [`fsutil`], the
//! directory digest in [`hash`], canonical JSON in [`fingerprint`]) rather than copies. Data
//! flows through the modules in this order:
//!
//! ```text
//! pipeline.yaml --spec--> stages (expanded, interpolated, validated)
//!   --dag--> ordered, selected stages
//!   --freshness (fingerprint of params, deps' hashes, cmd, env)--> fresh? skip
//!   --exec--> restore from the run cache, or run in a staging dir
//!           --> outs hashed into the cache --> published --> repro.lock
//! ```
//!
//! | module        | decides                                                             |
//! |---------------|---------------------------------------------------------------------|
//! | `builtin`     | the contract with a domain: kind, version, params schema, run       |
//! | `progress`    | how a stage reports progress (a pipe of JSON lines)                 |
//! | `spec`        | what `pipeline.yaml` means (schema, `${}`, fan-out, profiles)       |
//! | `dag`         | edges from paths, cycles, target selection, order                   |
//! | `fingerprint` | what a stage's identity is made of; typed reasons for a change      |
//! | `freshness`   | fresh, stale (and why) or frozen, for one stage                     |
//! | `hash`        | sha256 of files and directories; the metadata-keyed hash cache      |
//! | `cache`       | the content-addressed store and the run cache                       |
//! | `lockfile`    | `repro.lock`                                                        |
//! | `remote`      | the shared cache: a directory or S3, `push`, `pull`, `--pull`       |
//! | `exec`        | scheduling, staging, processes, publishing                          |
//! | `events`, `reporter` | what happened, and how it is shown                           |
//! | `workspace`   | the root, `.repro/`, the project lock                               |
//! | `runrecord`   | `.repro/runs/`: one record and log per stage run                    |
//! | `metrics`     | metric files, `metrics show` and `metrics diff`                     |

pub mod builtin;
pub mod cache;
pub mod dag;
pub mod events;
pub mod exec;
pub mod exit_code;
pub mod experiments;
pub mod fingerprint;
pub mod freshness;
pub mod fsutil;
pub mod hash;
pub mod lockfile;
pub mod metrics;
pub mod progress;
pub mod remote;
pub mod reporter;
pub mod runrecord;
pub mod spec;
pub mod workspace;
