//! The GAN domain of `repro`: every builtin stage kind lives here, one module per concept.
//!
//! The engine (`repro-engine`) knows nothing about GANs, and this crate knows the engine only
//! through its builtin contract ([`repro_engine::builtin`]) and the mechanisms it shares (atomic
//! writes, the directory digest, canonical JSON). Each kind is a [`Kind`] entry beside the code
//! it runs (`train::BUILTIN`, `data::stage::FETCH`, ...), seen by the engine as a `&dyn Builtin`;
//! [`REGISTRY`] lists them, and the
//! binary hands that list to the engine.
//!
//! What must never change silently: a builtin's `version` enters the stage fingerprint. Bump it
//! whenever the kind's outputs change meaning for the same params (a fixed bug in a metric, a
//! new default), so every cached result of the old code is recomputed.
//!
//! [`Kind`]: repro_engine::builtin::Kind

pub mod data;
pub mod metrics;
pub mod nn;
#[cfg(feature = "report")]
pub mod report;
pub mod spectral;
pub mod stats;
pub mod torchfile;
pub mod train;

use repro_engine::builtin::Registry;

/// Every builtin stage kind, in the order `repro builtin --list` shows them.
pub static REGISTRY: Registry = Registry::new(&[
    data::stage::FETCH,
    data::stage::PREPARE,
    data::stage::SYNTHETIC,
    train::BUILTIN,
    metrics::classifier::BUILTIN,
    metrics::inception_weights::BUILTIN,
    metrics::fid_stats::BUILTIN,
    metrics::evaluate::BUILTIN,
    spectral::BUILTIN,
    #[cfg(feature = "report")]
    report::BUILTIN,
]);
