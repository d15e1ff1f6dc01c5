//! Datasets and weights: how raw data gets into the pipeline, and the one format it lands in.
//!
//! - [`prepared`]: the on-disk format every later stage reads (one safetensors file).
//! - [`synthetic`]: the seeded 2-D mode-collapse benchmarks (ring of 8, grid of 25).
//! - [`atomic`]: write-then-rename, so nothing half-written is ever visible.
//!
//! Everything here returns [`DataError`]; the builtins turn it into a
//! [`crate::StageError`] at the seam.

pub mod atomic;
pub mod error;
pub mod prepared;
pub mod synthetic;

pub use error::DataError;
pub use prepared::{Dataset, Samples};
