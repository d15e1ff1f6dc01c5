//! `repro`: a declarative, content-hashed pipeline engine.
//!
//! The engine knows nothing about GANs: the GAN domain lives in the `stages` crate and reaches
//! the engine only as builtin stage kinds. Data flows through the modules in this order:
//!
//! ```text
//! pipeline.yaml --spec--> stages (expanded, interpolated, validated)
//!   --dag--> ordered, selected stages
//!   --fingerprint--> fresh? skip / restore from the run cache : run
//!   --exec--> staging dir -> outs hashed into the cache -> published -> repro.lock
//! ```

pub mod cache;
pub mod fsutil;
pub mod hash;
pub mod spec;
