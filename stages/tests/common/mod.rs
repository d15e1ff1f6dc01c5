//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use stages::data::prepared::{self, Dataset, Samples};
use stages::train::params::TrainParams;

/// Writes the ring-of-8 set (`n` points, `seed`) into `dir` and returns its path.
pub fn ring_dataset(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let path = dir.join("ring.safetensors");
    prepared::save(&path, &stages::data::synthetic::ring(n, seed)).unwrap();
    path
}

/// Writes `n` random `c x s x s` u8 images into `dir`.
pub fn image_dataset(dir: &Path, n: usize, c: usize, s: usize) -> PathBuf {
    let path = dir.join("images.safetensors");
    let pixels = (0..n * c * s * s)
        .map(|i| ((i * 7919 + i / 3) % 256) as u8)
        .collect();
    let ds = Dataset {
        name: "noise-images".into(),
        samples: Samples::Images {
            pixels,
            shape: [n, c, s, s],
        },
        labels: None,
        metadata: Default::default(),
    };
    prepared::save(&path, &ds).unwrap();
    path
}

/// Params from a JSON object, validated as the builtin would.
pub fn params(v: Value) -> TrainParams {
    let p: TrainParams = serde_json::from_value(v).unwrap();
    p.validate().unwrap();
    p
}

/// Runs the registered builtin `kind` with `params` (a JSON object), as a stage would.
pub fn run_builtin(kind: &str, params: Value) -> Result<(), repro_engine::builtin::StageError> {
    let Value::Object(map) = params else {
        panic!("params must be a JSON object")
    };
    stages::REGISTRY
        .lookup(kind)
        .unwrap_or_else(|| panic!("`{kind}` is registered"))
        .run(&repro_engine::builtin::Context::new(kind, map))
}

/// Progress sink for tests.
pub fn quiet(_: u64, _: u64, _: &str) {}

/// The raw bytes of a file.
pub fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
