//! `pipeline.yaml`: schema, `${}` interpolation, profiles, matrix/foreach expansion, validation.

pub mod model;

pub use model::*;
