//! Evaluation metrics for generated samples: manifold metrics (precision, recall, density,
//! coverage), mode-collapse counts on the synthetic benchmarks and Stacked MNIST, the MNIST
//! mode-counting classifier, and the `evaluate` builtin that writes them all to `metrics.json`.
//!
//! Every metric here follows one reference implementation's conventions exactly (which
//! neighbour counts as the radius, `<` versus `<=`, which histogram a KL is taken over); the
//! module that implements a metric names its reference. Changing a convention changes the
//! numbers, so it must bump the `evaluate` builtin's version.

pub mod classifier;
pub mod evaluate;
pub mod modes;
pub mod prdc;

use std::path::PathBuf;

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A feature or sample array does not have the size its shape claims.
    #[error("{what}: expected {expected} values for shape {shape}, found {found}")]
    Shape {
        what: String,
        shape: String,
        expected: usize,
        found: usize,
    },
    /// Two sets compared against each other live in different spaces.
    #[error(
        "{what}: dimensions differ ({left} vs {right}); compute both with the same feature network"
    )]
    DimensionMismatch {
        what: String,
        left: usize,
        right: usize,
    },
    /// A set is too small for the neighbourhood size asked for.
    #[error("{what}: {n} samples cannot give a {k}-nearest-neighbour radius; use at least {} samples", k + 1)]
    TooFewSamples { what: String, n: usize, k: usize },
    /// A value is NaN or infinite, which would make every comparison meaningless.
    #[error("{what}: value at index {index} is not finite; check the generator's output for NaN")]
    NonFinite { what: String, index: usize },
    /// A parameter of a metric is out of its domain.
    #[error("invalid metric parameter: {0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file is malformed or lacks a tensor.
    #[error("safetensors `{path}`: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// The tensor library failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}
