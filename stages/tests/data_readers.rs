//! Tests of the raw-format readers, the converters and Stacked MNIST.
//!
//! Fixtures and the expected decoded arrays come from `scripts/fixtures/data_readers.py`
//! (numpy decoding per each format's reference loader).

use std::path::{Path, PathBuf};

use stages::data::convert::{convert, ConvertParams};
use stages::data::prepared::{self, Samples};
use stages::data::{cifar, idx, stacked, stl, DataError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn assert_same(got: &stages::data::Dataset, expected: &str) {
    let want = prepared::load(&fixture(expected)).unwrap();
    assert_eq!(
        got.samples, want.samples,
        "pixels/shape differ from {expected}"
    );
    assert_eq!(got.labels, want.labels, "labels differ from {expected}");
}

/// Copies `from` to `to` with the last `cut` bytes removed.
fn truncated_copy(from: &Path, to: &Path, cut: usize) {
    let bytes = std::fs::read(from).unwrap();
    std::fs::write(to, &bytes[..bytes.len() - cut]).unwrap();
}

#[test]
fn mnist_converter_reads_raw_and_gz_idx() {
    let ds = convert("mnist-all", &fixture("mnist"), &ConvertParams::default()).unwrap();
    assert_same(&ds, "expected_mnist_all.safetensors");
    assert_eq!(ds.name, "mnist-all");
    let test = convert("mnist-test", &fixture("mnist"), &ConvertParams::default()).unwrap();
    assert_eq!(test.len(), 2);
}

#[test]
fn idx_reader_rejects_truncated_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("train-images-idx3-ubyte");
    truncated_copy(&fixture("mnist/train-images-idx3-ubyte"), &cut, 10);
    let err = idx::read_images(&cut).unwrap_err();
    assert!(matches!(err, DataError::Raw { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("the file has 2342"),
        "{msg}"
    );

    // A cut gzip stream is a clear error too.
    let gz = dir.path().join("t.gz");
    truncated_copy(&fixture("mnist/t10k-images-idx3-ubyte.gz"), &gz, 20);
    let err = idx::read_images(&gz).unwrap_err();
    assert!(err.to_string().contains("t.gz"), "{err}");

    // Labels are not images.
    let err = idx::read_images(&fixture("mnist/train-labels-idx1-ubyte")).unwrap_err();
    assert!(
        err.to_string().contains("1 dimensions, expected 3"),
        "{err}"
    );
}

#[test]
fn cifar_converter_matches_reference_and_rejects_truncation() {
    let ds = convert(
        "cifar10-train",
        &fixture("cifar"),
        &ConvertParams::default(),
    )
    .unwrap();
    assert_same(&ds, "expected_cifar10_train.safetensors");
    let test = convert(
        "cifar10-test",
        &fixture("cifar/cifar-10-batches-bin"),
        &ConvertParams::default(),
    )
    .unwrap();
    assert_eq!(test.len(), 3);

    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("data_batch_1.bin");
    truncated_copy(
        &fixture("cifar/cifar-10-batches-bin/data_batch_1.bin"),
        &cut,
        1,
    );
    let err = cifar::read_batch(&cut).unwrap_err();
    assert!(
        err.to_string()
            .contains("6145 bytes is not a whole number of 3073-byte records"),
        "{err}"
    );
}

#[test]
fn stl_converter_transposes_column_major_and_rejects_truncation() {
    let ds = convert("stl10-train", &fixture("stl"), &ConvertParams::default()).unwrap();
    assert_same(&ds, "expected_stl10_train.safetensors");

    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("train_X.bin");
    truncated_copy(&fixture("stl/stl10_binary/train_X.bin"), &cut, 96);
    let err = stl::read_images(&cut).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a whole number of 27648-byte images"),
        "{err}"
    );

    let bad = dir.path().join("train_y.bin");
    std::fs::write(&bad, [3u8, 0]).unwrap();
    let err = stl::read_labels(&bad).unwrap_err();
    assert!(
        err.to_string().contains("label 1 is 0, expected 1..=10"),
        "{err}"
    );
}

#[test]
fn unknown_converter_and_missing_files_say_what_to_do() {
    let err = convert(
        "mnist-validation",
        &fixture("mnist"),
        &ConvertParams::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown converter `mnist-validation`"),
        "{err}"
    );
    let err = convert("mnist-train", &fixture("cifar"), &ConvertParams::default()).unwrap_err();
    assert!(err.to_string().contains("fetch the dataset first"), "{err}");
}

#[test]
fn stacked_mnist_stacks_pool_digits_with_mode_labels() {
    let pool = convert("mnist-all", &fixture("mnist"), &ConvertParams::default()).unwrap();
    let Samples::Images {
        pixels: pool_px, ..
    } = &pool.samples
    else {
        panic!()
    };
    let pool_labels = pool.labels.clone().unwrap();
    let ds = stacked::stack(&pool, 300, 11).unwrap();
    let Samples::Images { pixels, shape } = &ds.samples else {
        panic!()
    };
    assert_eq!(*shape, [300, 3, 28, 28]);
    let plane = 28 * 28;
    let mut seen_modes = std::collections::BTreeSet::new();
    for (s, &label) in ds.labels.as_ref().unwrap().iter().enumerate() {
        let mut want = 0;
        for c in 0..3 {
            let chan = &pixels[(s * 3 + c) * plane..(s * 3 + c + 1) * plane];
            // Random fixture pixels make every pool image unique.
            let i = (0..pool.len())
                .find(|&i| &pool_px[i * plane..(i + 1) * plane] == chan)
                .expect("channel is a pool digit");
            want = want * 10 + pool_labels[i];
        }
        assert_eq!(label, want);
        seen_modes.insert(label);
    }
    // 5 pool digits with 5 distinct labels give 125 possible triples; 300 draws see most.
    assert!(seen_modes.len() > 80, "only {} modes", seen_modes.len());
    assert_eq!(
        stacked::stack(&pool, 50, 11).unwrap().labels,
        stacked::stack(&pool, 50, 11).unwrap().labels
    );
    assert_ne!(
        stacked::stack(&pool, 50, 11).unwrap().samples,
        stacked::stack(&pool, 50, 12).unwrap().samples
    );

    let via_converter = convert(
        "stacked-mnist",
        &fixture("mnist"),
        &ConvertParams {
            n: Some(300),
            seed: Some(11),
            ..ConvertParams::default()
        },
    )
    .unwrap();
    assert_eq!(via_converter.samples, ds.samples);
}

#[test]
fn prepare_builtin_converts_a_fetched_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stacked.safetensors");
    let params = serde_json::json!({
        "from": fixture("mnist"), "as": "stacked-mnist", "n": 40, "seed": 3, "out": out
    });
    crate::common::run_builtin("prepare", params).unwrap();
    let got = prepared::load(&out).unwrap();
    let pool = convert("mnist-all", &fixture("mnist"), &ConvertParams::default()).unwrap();
    let want = stacked::stack(&pool, 40, 3).unwrap();
    assert_eq!(got.samples, want.samples);
    assert_eq!(got.labels, want.labels);
    assert_eq!(
        got.metadata.get("converter").map(String::as_str),
        Some("stacked-mnist")
    );

    let bad = serde_json::json!({"from": fixture("mnist"), "as": "svhn-train", "out": out});
    let err = crate::common::run_builtin("prepare", bad).unwrap_err();
    assert!(
        err.is_params() && err.to_string().contains("unknown converter `svhn-train`"),
        "{err}"
    );
}
