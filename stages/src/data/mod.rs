//! Datasets and weights: how raw data gets into the pipeline, and the one format it lands in.
//!
//! - [`prepared`]: the on-disk format every later stage reads (one safetensors file).
//! - [`synthetic`]: the seeded 2-D mode-collapse benchmarks (ring of 8, grid of 25).
//! - [`fetch`]: ordered sources (https, pip, apt, npm, local path) verified against a pin;
//!   [`download`] streams and resumes https; [`unpack`] opens archives safely;
//!   [`digest`] defines what a pin is a hash of.
//! - [`known`]: ready-made source lists and pins (`with: {name: mnist}`).
//! - Readers of raw formats: [`idx`] (MNIST, Fashion-MNIST), [`cifar`], [`stl`]; [`stacked`]
//!   builds Stacked MNIST; [`convert`] maps a converter name to raw -> prepared;
//!   [`downscale`] is the one image resize a converter may apply (exact box, integer factor).
//! - [`stage`]: the `fetch`, `prepare` and `synthetic` builtins over all of the above.
//! - Every file is written through the engine's `repro_engine::fsutil` (write-then-rename), so
//!   nothing half-written is ever visible.
//!
//! Everything here returns [`DataError`]; the builtins turn it into a
//! [`repro_engine::builtin::StageError`] at the seam.

pub mod cifar;
pub mod convert;
pub mod digest;
pub mod download;
pub mod downscale;
pub mod error;
pub mod fetch;
pub mod idx;
pub mod known;
pub mod prepared;
pub mod stacked;
pub mod stage;
pub mod stl;
pub mod synthetic;
pub mod unpack;

pub use error::DataError;
pub use prepared::{Dataset, Samples};
