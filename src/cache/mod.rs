//! The content-addressed store and the run cache.
