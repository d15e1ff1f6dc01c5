//! The GAN domain of `repro`: every builtin stage kind lives here, one module per concept.
//!
//! The engine (the `repro` crate) knows nothing about GANs. It sees this crate through one
//! seam, [`registry`]: a table from a kind name (`train-gan`, `fetch`, ...) to a [`Builtin`]
//! holding the kind's `version` and its run function. The engine runs a builtin stage as a
//! child process of its own binary (`repro builtin KIND --with JSON`), in the stage's staging
//! directory, so a crash in training never takes the scheduler down and the local and SLURM
//! executors run builtins the same way.
//!
//! What must never change silently: a builtin's `version` enters the stage fingerprint. Bump it
//! whenever the kind's outputs change meaning for the same params (a fixed bug in a metric, a
//! new default), so every cached result of the old code is recomputed.

pub mod builtin;
pub mod data;
pub mod metrics;
pub mod nn;
#[cfg(feature = "report")]
pub mod report;
pub mod spectral;
pub mod stats;
pub mod torchfile;
pub mod train;

pub use builtin::{Builtin, Context, StageError};

/// Every builtin stage kind, in the order `repro builtin --list` shows them.
pub fn registry() -> &'static [Builtin] {
    &[
        data::stage::FETCH,
        data::stage::PREPARE,
        data::stage::SYNTHETIC,
        train::BUILTIN,
        Builtin {
            kind: "train-classifier",
            version: metrics::classifier::VERSION,
            summary: "train the MNIST digit classifier that counts Stacked MNIST modes",
            run: metrics::classifier::run_train_classifier,
        },
        metrics::inception_weights::BUILTIN,
        metrics::fid_stats::BUILTIN,
        Builtin {
            kind: "evaluate",
            version: metrics::evaluate::VERSION,
            summary:
                "FID, IS, precision/recall/density/coverage and mode counts of generated samples",
            run: metrics::evaluate::run_evaluate,
        },
        spectral::BUILTIN,
        #[cfg(feature = "report")]
        report::BUILTIN,
    ]
}

/// The builtin registered under `kind`, if any.
pub fn lookup(kind: &str) -> Option<&'static Builtin> {
    registry().iter().find(|b| b.kind == kind)
}
