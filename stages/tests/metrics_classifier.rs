//! The Stacked MNIST mode counter, trained on a small real handwritten-digit set.
//!
//! `fixtures/metrics/digits28.safetensors` is made by `scripts/fixtures/metrics_digits.py`:
//! scikit-learn's bundled 8x8 digits, upsampled into MNIST's 28x28 frame (600 train, 300 test).

use std::path::Path;

use stages::metrics::classifier::{DigitClassifier, LabelledImages, TrainConfig};

fn tensor<T>(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
    conv: fn(&[u8]) -> T,
    width: usize,
) -> Vec<T> {
    st.tensor(name)
        .expect("tensor in fixture")
        .data()
        .chunks_exact(width)
        .map(conv)
        .collect()
}

struct Digits {
    train_px: Vec<u8>,
    train_y: Vec<u32>,
    test_px: Vec<u8>,
    test_y: Vec<u32>,
}

fn digits() -> Digits {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/digits28.safetensors");
    let bytes = std::fs::read(path).expect("read fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse fixture");
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Digits {
        train_px: tensor(&st, "train_images", |b| b[0], 1),
        train_y: tensor(&st, "train_labels", u32le, 4),
        test_px: tensor(&st, "test_images", |b| b[0], 1),
        test_y: tensor(&st, "test_labels", u32le, 4),
    }
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 16,
        learning_rate: 2e-3,
        seed,
    }
}

#[test]
fn learns_digits_far_above_chance_and_round_trips_its_weights() {
    let d = digits();
    let train = LabelledImages {
        pixels: &d.train_px,
        labels: &d.train_y,
    };
    let test = LabelledImages {
        pixels: &d.test_px,
        labels: &d.test_y,
    };
    let steps = std::cell::Cell::new(0);
    let net = DigitClassifier::train(train, &config(1), &|step, total| {
        assert_eq!(total, 4 * 600usize.div_ceil(16));
        steps.set(step);
    })
    .expect("train");
    assert_eq!(steps.get(), 4 * 38);
    let acc = net.accuracy(test).expect("accuracy");
    // Chance is 0.1; four short epochs on 600 digits reach well above 0.8.
    eprintln!("test accuracy {acc}");
    assert!(acc > 0.8, "test accuracy {acc}");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clf.safetensors");
    net.save(&path).expect("save");
    let loaded = DigitClassifier::load(&path).expect("load");
    assert_eq!(
        loaded.predict(&d.test_px).expect("predict"),
        net.predict(&d.test_px).expect("predict")
    );
}

#[test]
fn same_seed_same_weights() {
    let d = digits();
    let n = 128;
    let train = LabelledImages {
        pixels: &d.train_px[..n * 784],
        labels: &d.train_y[..n],
    };
    let cfg = TrainConfig {
        epochs: 1,
        ..config(7)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    DigitClassifier::train(train, &cfg, &|_, _| {})
        .expect("train")
        .save(&a)
        .expect("save");
    DigitClassifier::train(train, &cfg, &|_, _| {})
        .expect("train")
        .save(&b)
        .expect("save");
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
}

#[test]
fn rejects_mismatched_inputs() {
    let px = vec![0u8; 784 * 2];
    let bad_labels = LabelledImages {
        pixels: &px,
        labels: &[1],
    };
    assert!(DigitClassifier::train(bad_labels, &config(0), &|_, _| {}).is_err());
    let not_digit = LabelledImages {
        pixels: &px,
        labels: &[1, 12],
    };
    assert!(DigitClassifier::train(not_digit, &config(0), &|_, _| {}).is_err());
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").expect("write");
    assert!(DigitClassifier::load(&junk).is_err());
}
