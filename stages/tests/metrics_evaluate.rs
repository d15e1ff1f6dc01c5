//! The `evaluate` builtin end to end: prepared sample files in, `metrics.json` out.
//!
//! Ring, grid and Stacked MNIST use samples built here whose mode counts follow from how they
//! were built; the image case runs the real FID Inception (fetched through
//! `inception_common`, skipped with a message when pip cannot get it).

use crate::{common, inception_common};

use std::path::Path;

use serde_json::{json, Value};
use stages::data::prepared::{save, Dataset, Samples};
use stages::data::synthetic;
use stages::metrics::classifier::{DigitClassifier, LabelledImages, TrainConfig};

fn run(params: Value) -> Result<Value, repro_engine::builtin::StageError> {
    common::run_builtin("evaluate", params.clone())?;
    let out = params["metrics"].as_str().expect("metrics path");
    Ok(serde_json::from_str(&std::fs::read_to_string(out).expect("metrics.json")).expect("json"))
}

/// Keeps only the samples whose label is in `modes`: a generator that dropped the others.
fn only_modes(ds: &Dataset, modes: &[u32]) -> Dataset {
    let Samples::Points {
        coords,
        shape: [_, d],
    } = &ds.samples
    else {
        panic!("points")
    };
    let labels = ds.labels.as_ref().expect("labels");
    let keep: Vec<usize> = (0..labels.len())
        .filter(|&i| modes.contains(&labels[i]))
        .collect();
    let coords = keep
        .iter()
        .flat_map(|&i| coords[i * d..(i + 1) * d].iter().copied())
        .collect();
    Dataset {
        name: ds.name.clone(),
        samples: Samples::Points {
            coords,
            shape: [keep.len(), *d],
        },
        labels: None,
        metadata: Default::default(),
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn ring_run_directory_gives_one_row_per_iteration_final_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = dir.path().join("samples");
    std::fs::create_dir_all(&samples).expect("mkdir");
    let full = synthetic::ring(4000, 11);
    save(
        &samples.join("1000.safetensors"),
        &only_modes(&full, &[0, 1, 2]),
    )
    .expect("save");
    save(&samples.join("200.safetensors"), &only_modes(&full, &[5])).expect("save");
    save(
        &samples.join("final.safetensors"),
        &only_modes(&full, &[0, 1, 2, 3, 4, 5, 6, 7]),
    )
    .expect("save");
    std::fs::write(samples.join("notes.txt"), "ignored").expect("write");
    let reference = dir.path().join("ring.safetensors");
    save(&reference, &synthetic::ring(2000, 12)).expect("save");
    let metrics = dir.path().join("metrics.json");

    let m = run(json!({
        "samples": s(&samples), "dataset_kind": "ring", "reference": s(&reference),
        "metrics": s(&metrics), "prdc_samples": 1500, "reference_samples": 1800,
    }))
    .expect("evaluate");

    let rows = m["rows"].as_array().expect("rows");
    let labels: Vec<&str> = rows
        .iter()
        .map(|r| r["label"].as_str().expect("label"))
        .collect();
    assert_eq!(labels, ["200", "1000", "final"]);
    assert_eq!(rows[0]["iteration"], 200);
    assert_eq!(rows[2]["iteration"], Value::Null);
    let captured: Vec<u64> = rows
        .iter()
        .map(|r| r["modes"]["modes_captured"].as_u64().expect("modes"))
        .collect();
    assert_eq!(captured, [1, 3, 8]);
    // Points drawn from the modes themselves: within 3σ with probability 1 − e^{−4.5} ≈ 0.989.
    let hq = rows[2]["modes"]["high_quality_share"].as_f64().expect("hq");
    assert!((hq - 0.989).abs() < 0.01, "high-quality share {hq}");
    let kl = rows[0]["modes"]["reverse_kl"].as_f64().expect("kl");
    assert!(
        (kl - 8f64.ln()).abs() < 1e-12,
        "one mode: KL = ln 8, got {kl}"
    );
    assert!(rows[2]["modes"]["reverse_kl"].as_f64().expect("kl") < 0.01);
    // Coverage sees the dropped modes: one mode of eight covers about an eighth of the ring.
    let cov_one = rows[0]["prdc"]["prdc"]["coverage"]
        .as_f64()
        .expect("coverage");
    let cov_all = rows[2]["prdc"]["prdc"]["coverage"]
        .as_f64()
        .expect("coverage");
    assert!(
        cov_one < 0.2 && cov_all > 0.9,
        "coverage {cov_one} / {cov_all}"
    );
    assert_eq!(rows[2]["prdc"]["n_real"], 1500);
    assert_eq!(m["n_reference"], 1800);
    assert_eq!(m["evaluate_version"], stages::metrics::evaluate::VERSION);
    assert_eq!(m["feature_net"], Value::Null);
    assert_eq!(m["final"], rows[2], "`final` repeats the last row");
}

#[test]
fn grid_single_file_without_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("final.safetensors");
    save(&file, &synthetic::grid(5000, 3)).expect("save");
    let metrics = dir.path().join("out/metrics.json");
    let m = run(json!({"samples": s(&file), "dataset_kind": "grid", "metrics": s(&metrics), "max_samples": 4000}))
        .expect("evaluate");
    let row = &m["rows"][0];
    assert_eq!(row["n_samples"], 4000);
    assert_eq!(row["modes"]["modes_captured"], 25);
    assert_eq!(row["modes"]["modes_total"], 25);
    assert_eq!(row["modes"]["n_samples"], 4000);
    assert!(row.get("prdc").is_none(), "no reference, no prdc: {row}");
    assert!(row.get("fid").is_none());
    assert!(row.get("kid").is_none(), "kid is an image metric: {row}");
}

#[test]
fn wrong_kind_and_missing_inputs_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("final.safetensors");
    save(&file, &synthetic::grid(50, 3)).expect("save");
    let metrics = s(&dir.path().join("metrics.json"));
    let err =
        run(json!({"samples": s(&file), "dataset_kind": "stacked-mnist", "metrics": metrics}))
            .expect_err("stacked mnist needs a classifier");
    assert!(err.to_string().contains("classifier"), "{err}");
    let err = run(json!({"samples": s(&file), "dataset_kind": "images", "metrics": metrics}))
        .expect_err("images need inception weights");
    assert!(err.to_string().contains("inception_weights"), "{err}");
    let err = run(json!({"samples": s(&file), "dataset_kind": "rings", "metrics": metrics}))
        .expect_err("bad kind");
    assert!(err.is_params(), "{err}");
    let err = run(
        json!({"samples": s(&file), "dataset_kind": "ring", "metrics": metrics, "kid_samples": 1}),
    )
    .expect_err("one kid sample");
    assert!(
        err.is_params() && err.to_string().contains("kid_samples"),
        "{err}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = run(json!({"samples": s(&empty), "dataset_kind": "ring", "metrics": metrics}))
        .expect_err("empty dir");
    assert!(err.to_string().contains("no `.safetensors`"), "{err}");
}

fn digits_fixture() -> (Vec<u8>, Vec<u32>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/digits28.safetensors");
    let bytes = std::fs::read(path).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let px = st.tensor("train_images").expect("images").data().to_vec();
    let y = st
        .tensor("train_labels")
        .expect("labels")
        .data()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (px, y)
}

#[test]
fn stacked_mnist_counts_the_classifiers_triples() {
    // A briefly trained classifier: its accuracy does not matter here, only that `evaluate`
    // feeds it every channel in order and counts what it predicts.
    let (px, y) = digits_fixture();
    let train = LabelledImages {
        pixels: &px[..200 * 784],
        labels: &y[..200],
    };
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 20,
        learning_rate: 2e-3,
        lr_decay: 1.0,
        seed: 5,
    };
    let net = DigitClassifier::train(train, &cfg, &|_, _| {}).expect("train");
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = dir.path().join("clf.safetensors");
    net.save(&weights).expect("save");

    // 60 stacked samples: channel c of sample i is digit image 3i + c of the fixture.
    let n = 60;
    let pixels = px[..n * 3 * 784].to_vec();
    let file = dir.path().join("final.safetensors");
    let ds = Dataset {
        name: "stacked".to_string(),
        samples: Samples::Images {
            pixels: pixels.clone(),
            shape: [n, 3, 28, 28],
        },
        labels: None,
        metadata: Default::default(),
    };
    save(&file, &ds).expect("save");
    let metrics = dir.path().join("metrics.json");
    let m = run(json!({
        "samples": s(&file), "dataset_kind": "stacked-mnist", "classifier": s(&weights), "metrics": s(&metrics),
    }))
    .expect("evaluate");

    let expected =
        stages::metrics::modes::stacked_mnist_modes(&net.predict(&pixels).expect("predict"))
            .expect("modes");
    let row = &m["rows"][0];
    assert_eq!(
        row["stacked_mnist"]["modes_captured"],
        expected.modes_captured
    );
    assert_eq!(row["stacked_mnist"]["n_samples"], n);
    assert_eq!(
        row["stacked_mnist"]["reverse_kl"].as_f64(),
        Some(expected.reverse_kl)
    );
    assert_eq!(
        m["classifier"]["sha256"].as_str(),
        Some(
            stages::metrics::sha256_file(&weights)
                .expect("hash")
                .as_str()
        )
    );
    assert!(
        row.get("fid").is_none(),
        "no inception weights, no fid: {row}"
    );

    // The same digits zero-padded to 32x32 (what `prepare` with `pad: 2` feeds the standard
    // CNN) are cropped back to their centre: the same counts.
    let padded: Vec<u8> = pixels
        .chunks_exact(784)
        .flat_map(|digit| {
            let mut plane = vec![0u8; 32 * 32];
            for (r, row) in digit.chunks_exact(28).enumerate() {
                plane[(r + 2) * 32 + 2..(r + 2) * 32 + 30].copy_from_slice(row);
            }
            plane
        })
        .collect();
    let padded_file = dir.path().join("padded.safetensors");
    let mut padded_ds = ds.clone();
    padded_ds.samples = Samples::Images {
        pixels: padded,
        shape: [n, 3, 32, 32],
    };
    save(&padded_file, &padded_ds).expect("save");
    let m32 = run(json!({
        "samples": s(&padded_file), "dataset_kind": "stacked-mnist", "classifier": s(&weights), "metrics": s(&metrics),
    }))
    .expect("evaluate padded");
    assert_eq!(m32["rows"][0]["stacked_mnist"], row["stacked_mnist"]);

    // An odd margin cannot be a centred 28x28 digit: an error naming the file and the shape.
    let mut odd = ds.clone();
    odd.samples = Samples::Images {
        pixels: vec![0; n * 3 * 31 * 31],
        shape: [n, 3, 31, 31],
    };
    let odd_file = dir.path().join("odd.safetensors");
    save(&odd_file, &odd).expect("save");
    let err = run(json!({
        "samples": s(&odd_file), "dataset_kind": "stacked-mnist", "classifier": s(&weights), "metrics": s(&metrics),
    }))
    .expect_err("31x31");
    assert!(
        err.to_string().contains("odd.safetensors") && err.to_string().contains("31"),
        "{err}"
    );
}

fn random_images(n: usize, seed: u64) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n * 3 * 16 * 16).map(|_| rng.random::<u8>()).collect()
}

fn save_images(path: &Path, pixels: Vec<u8>, n: usize) {
    let ds = Dataset {
        name: "images".to_string(),
        samples: Samples::Images {
            pixels,
            shape: [n, 3, 16, 16],
        },
        labels: None,
        metadata: Default::default(),
    };
    save(path, &ds).expect("save");
}

/// Runs the real 2015-12-05 Inception on CPU end to end (about 10 s for 4 + 4 images here,
/// times four runs: against the dataset, and against `fid-stats` npz files with and without
/// KID features).
#[test]
fn images_get_fid_prdc_kid_and_an_explained_missing_is() {
    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (reference, samples) = (
        dir.path().join("ref.safetensors"),
        dir.path().join("final.safetensors"),
    );
    let n = 4;
    save_images(&reference, random_images(n, 1), n);
    save_images(&samples, random_images(n, 1), n);
    let metrics = dir.path().join("metrics.json");
    let m = run(json!({
        "samples": s(&samples), "dataset_kind": "images", "reference": s(&reference),
        "inception_weights": s(&weights), "metrics": s(&metrics), "is_splits": 2, "batch_size": 4,
        "pr_k": 2, "dc_k": 2,
    }))
    .expect("evaluate");
    let row = &m["rows"][0];
    // Identical image sets: identical features, so FID ≈ 0 and every manifold metric is 1.
    let fid = row["fid"]["value"].as_f64().expect("fid");
    assert!(fid.abs() < 1e-3, "fid of a set with itself: {fid}");
    assert_eq!(row["fid"]["n_fake"], n);
    assert_eq!(row["prdc"]["prdc"]["coverage"], 1.0);
    assert_eq!(row["prdc"]["improved"]["recall"], 1.0);
    // The fid-helper weights carry no logits: IS is null with the reason.
    assert_eq!(row["inception_score"]["value"], Value::Null);
    assert!(row["inception_score"]["reason"]
        .as_str()
        .expect("reason")
        .contains("logits"));
    let sha = stages::metrics::sha256_file(&weights).expect("hash");
    assert_eq!(m["feature_net"]["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(m["n_reference"], n);
    // A set against itself is not two independent samples: the unbiased KID is then
    // 2·(Σ_{i≠j} k_ij − (n−1)·Σ_i k_ii) / (n²(n−1)), never positive (k_ij ≤ (k_ii + k_jj)/2).
    let kid = row["kid"]["value"].as_f64().expect("kid");
    assert!(kid < 0.0, "kid of a set with itself: {kid}");
    assert_eq!(row["kid"]["n_generated"], n);
    assert_eq!(row["kid"]["n_reference"], n);
    assert_eq!(m["kid_samples"], 10_000);

    // The same reference as `fid-stats` npz files: with `features`, the same KID (the same
    // first images through the same batches); without, KID unavailable with the reason.
    let fid_stats = |out: &Path, kid_samples: usize| {
        common::run_builtin(
            "fid-stats",
            json!({
                "images": s(&reference), "inception_weights": s(&weights), "batch_size": 4,
                "out": s(out), "kid_samples": kid_samples,
            }),
        )
        .expect("fid-stats");
    };
    let evaluate_against = |npz: &Path, extra: Value| {
        let mut params = json!({
            "samples": s(&samples), "dataset_kind": "images", "reference": s(npz),
            "inception_weights": s(&weights), "metrics": s(&metrics), "is_splits": 2,
            "batch_size": 4, "pr_k": 2, "dc_k": 2,
        });
        for (k, v) in extra.as_object().expect("map") {
            params[k] = v.clone();
        }
        run(params).expect("evaluate")
    };
    let with_features = dir.path().join("with.npz");
    fid_stats(&with_features, 100);
    let m = evaluate_against(&with_features, json!({}));
    let row = &m["rows"][0];
    let from_npz = row["kid"]["value"].as_f64().expect("kid from npz");
    assert!(
        (from_npz - kid).abs() <= 1e-9 * kid.abs(),
        "kid against the npz {from_npz} vs the dataset {kid}"
    );
    assert_eq!(row["kid"]["n_reference"], n);
    assert!(row["prdc"]["reason"]
        .as_str()
        .expect("prdc reason")
        .contains("prepared dataset"));
    // Caps apply to the stored features too: `kid_samples` of each set.
    let m = evaluate_against(&with_features, json!({"kid_samples": 3}));
    assert_eq!(m["rows"][0]["kid"]["n_reference"], 3);
    assert_eq!(m["rows"][0]["kid"]["n_generated"], 3);

    let without = dir.path().join("without.npz");
    fid_stats(&without, 0);
    let m = evaluate_against(&without, json!({}));
    let row = &m["rows"][0];
    assert_eq!(row["kid"]["value"], Value::Null);
    let reason = row["kid"]["reason"].as_str().expect("kid reason");
    assert!(
        reason.contains("without.npz") && reason.contains("features"),
        "{reason}"
    );
    assert!(row["fid"]["value"].as_f64().expect("fid").abs() < 1e-3);
}

/// `image_rows: final`, `image_samples` and `image_channel` (the extended profile's Stacked
/// MNIST evaluation): Inception sees channel 0 of the first 3 samples of the final row only,
/// as grey images; the reference is exactly those grey images, so FID ≈ 0 on 3 of them.
#[test]
fn image_metrics_on_the_final_row_one_channel_first_samples() {
    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = dir.path().join("samples");
    std::fs::create_dir_all(&samples).expect("mkdir");
    let n = 5;
    let pixels = random_images(n, 7);
    save_images(&samples.join("100.safetensors"), random_images(n, 8), n);
    save_images(&samples.join("final.safetensors"), pixels.clone(), n);
    let plane = 16 * 16;
    let grey: Vec<u8> = (0..3)
        .flat_map(|i| pixels[i * 3 * plane..(i * 3 + 1) * plane].to_vec())
        .collect();
    let reference = dir.path().join("ref.safetensors");
    let ds = Dataset {
        name: "grey".to_string(),
        samples: Samples::Images {
            pixels: grey,
            shape: [3, 1, 16, 16],
        },
        labels: None,
        metadata: Default::default(),
    };
    save(&reference, &ds).expect("save");
    let metrics = dir.path().join("metrics.json");
    let params = |channel: usize| {
        json!({
            "samples": s(&samples), "dataset_kind": "images", "reference": s(&reference),
            "inception_weights": s(&weights), "metrics": s(&metrics), "is_splits": 2,
            "batch_size": 4, "pr_k": 2, "dc_k": 2, "image_rows": "final", "image_samples": 3,
            "image_channel": channel,
        })
    };
    let m = run(params(0)).expect("evaluate");
    let rows = m["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["label"], "100");
    for key in ["fid", "kid", "prdc", "inception_score"] {
        assert_eq!(rows[0][key]["value"], Value::Null, "{key} of row 100");
        let reason = rows[0][key]["reason"].as_str().expect("reason");
        assert!(reason.contains("final row only"), "{key}: {reason}");
    }
    assert_eq!(rows[0]["n_samples"], n);
    let fid = rows[1]["fid"]["value"]
        .as_f64()
        .expect("fid of the final row");
    assert!(
        fid.abs() < 1e-3,
        "channel 0 of the first 3 against itself: {fid}"
    );
    assert_eq!(rows[1]["fid"]["n_fake"], 3);
    assert_eq!(rows[1]["kid"]["n_generated"], 3);
    // Another channel is other images: far from the reference.
    let m = run(params(1)).expect("evaluate channel 1");
    let fid = m["rows"][1]["fid"]["value"].as_f64().expect("fid");
    assert!(fid > 1.0, "channel 1 against channel 0's images: {fid}");
    let err = run(params(3)).expect_err("a channel the samples lack");
    assert!(err.to_string().contains("`image_channel: 3`"), "{err}");
}
