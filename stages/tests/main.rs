//! The `stages` crate's integration tests, as one test binary: each file beside this one is a
//! module, named for the part of the domain it tests (`data_*`, `inception_*`, `metrics_*`,
//! `report_*`, `spectral_*`, `stats_*`, `train_*`). One binary links the crate once instead of
//! once per file. Run one part with a filter: `cargo test -p stages --test stages train_sr::`.
//!
//! Fixtures live in `tests/fixtures/`, each made by a script under `scripts/fixtures/` from the
//! reference implementation (PyTorch, numpy, scipy); shared helpers in `common` (training) and
//! `inception_common` (the FID network's weights and fixtures).

mod common;
mod inception_common;

mod data_digest;
mod data_fetch;
mod data_prepared;
mod data_readers;
mod data_unpack;
mod inception_features;
mod inception_fid_cli;
mod inception_metrics;
mod metrics_classifier;
mod metrics_evaluate;
mod metrics_kid;
mod metrics_modes;
mod metrics_prdc;
#[cfg(feature = "report")]
mod report_html;
#[cfg(feature = "report")]
mod report_snapshot;
mod spectral_checkpoint;
mod spectral_stage;
mod stats_scipy;
mod train_models;
mod train_resume;
mod train_ring;
mod train_sn;
mod train_sr;
