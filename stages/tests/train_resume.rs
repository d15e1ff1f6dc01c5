//! Determinism and restartability of `train-gan` on the CPU: the same seed gives the same
//! checkpoint bit for bit, and a run stopped after k iterations and resumed ends with the same
//! checkpoint as an uninterrupted one.

use crate::common;

use std::path::Path;

use serde_json::{json, Value};
use stages::train::{train, TrainError};

fn mlp_params(data: &Path, out: &Path, sr: Value, extra: Value) -> Value {
    let mut v = json!({
        "dataset": data, "out": out,
        "model": {"arch": "mlp", "hidden": 16, "layers": 2},
        "z_dim": 4, "batch_size": 16, "iterations": 24, "loss": "hinge",
        "optimizer": "D", "n_dis": 2, "lr_decay": "linear", "sr": sr,
        "seed": 7, "log_every": 5, "spectra_every": 10, "sample_every": 10,
        "checkpoint_every": 7, "eval_samples": 50,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn checkpoint(out: &Path) -> Vec<u8> {
    common::bytes(&out.join("checkpoint.safetensors"))
}

fn run(v: Value) -> stages::train::Outcome {
    train(&common::params(v), &common::quiet).unwrap()
}

fn kill_and_resume_is_bit_identical(sr: Value) {
    let dir = tempfile::tempdir().unwrap();
    let data = common::ring_dataset(dir.path(), 256, 1);
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    run(mlp_params(&data, &whole, sr.clone(), json!({})));
    let first = run(mlp_params(
        &data,
        &parts,
        sr.clone(),
        json!({"stop_after": 11}),
    ));
    assert_eq!(first.iteration, 11);
    assert!(
        !parts.join("samples/final.safetensors").exists(),
        "a stopped run is not final"
    );
    let second = run(mlp_params(&data, &parts, sr.clone(), json!({})));
    assert_eq!((second.resumed_from, second.iteration), (11, 24));
    assert!(
        checkpoint(&whole) == checkpoint(&parts),
        "resumed checkpoint differs for sr {sr}"
    );
    for f in [
        "samples/final.safetensors",
        "samples/20.safetensors",
        "spectra/20.csv",
        "spectra/24.csv",
    ] {
        assert!(
            common::bytes(&whole.join(f)) == common::bytes(&parts.join(f)),
            "`{f}` differs for sr {sr}"
        );
    }
    let log = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("log.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(
        log(&whole),
        log(&parts),
        "log rows (without timings) differ"
    );
    assert_eq!(
        log(&whole).len(),
        1 + 4 + 1,
        "header, iterations 5..20, and the end"
    );
}

#[test]
fn kill_and_resume_plain_sn() {
    kill_and_resume_is_bit_identical(json!("none"));
}

#[test]
fn kill_and_resume_dynamic_sr_keeps_its_running_max() {
    kill_and_resume_is_bit_identical(json!({"mode": "dynamic", "every": 2}));
}

#[test]
fn kill_and_resume_graph_sr_keeps_its_bases() {
    kill_and_resume_is_bit_identical(json!({"mode": "graph", "i": 0.5}));
}

#[test]
fn kill_and_resume_resnet_with_static_sr() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::image_dataset(dir.path(), 8, 3, 16);
    let p = |out: &Path, extra: Value| {
        let mut v = json!({
            "dataset": data, "out": out, "model": {"arch": "resnet", "g_ch": 4, "d_ch": 4},
            "z_dim": 8, "batch_size": 2, "iterations": 3, "optimizer": "resnet", "n_dis": 2,
            "sr": {"mode": "static", "i": 0.5, "every": 1}, "seed": 1, "log_every": 1,
            "spectra_every": 0, "sample_every": 0, "checkpoint_every": 0, "eval_samples": 4,
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    run(p(&dir.path().join("whole"), json!({})));
    run(p(&dir.path().join("parts"), json!({"stop_after": 1})));
    run(p(&dir.path().join("parts"), json!({})));
    assert!(checkpoint(&dir.path().join("whole")) == checkpoint(&dir.path().join("parts")));
}

#[test]
fn same_seed_same_checkpoint_other_seed_other_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::ring_dataset(dir.path(), 256, 1);
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    run(mlp_params(
        &data,
        &a,
        json!("none"),
        json!({"iterations": 6}),
    ));
    run(mlp_params(
        &data,
        &b,
        json!("none"),
        json!({"iterations": 6}),
    ));
    run(mlp_params(
        &data,
        &c,
        json!("none"),
        json!({"iterations": 6, "seed": 8}),
    ));
    assert!(checkpoint(&a) == checkpoint(&b));
    assert!(checkpoint(&a) != checkpoint(&c));
}

/// Every checkpoint tensor except the params hash.
fn state(out: &Path) -> Vec<(String, Vec<u8>)> {
    let map = candle_core::safetensors::load(
        out.join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut v: Vec<(String, Vec<u8>)> = map
        .into_iter()
        .filter(|(k, _)| k != "identity")
        .map(|(k, t)| {
            let bytes = t
                .flatten_all()
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            (k, bytes.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sr_pinning_only_sigma_1_trains_exactly_like_sn() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::ring_dataset(dir.path(), 256, 1);
    // The hidden layers are 16x2 (r = 2) and 16x16 (r = 16): i = 0.05 pins floor(i r) = 0.
    let runs = [
        ("none", json!("none")),
        ("static", json!({"mode": "static", "i": 0.05, "every": 1})),
        ("graph", json!({"mode": "graph", "i": 0.05})),
        (
            "static-half",
            json!({"mode": "static", "i": 0.5, "every": 1}),
        ),
    ];
    let mut states = Vec::new();
    for (name, sr) in runs {
        let out = dir.path().join(name);
        run(mlp_params(&data, &out, sr, json!({"iterations": 6})));
        states.push(state(&out));
    }
    assert!(
        states[0] == states[1],
        "static SR with only sigma_1 pinned changed training"
    );
    assert!(
        states[0] == states[2],
        "graph SR with only sigma_1 pinned changed training"
    );
    assert!(
        states[0] != states[3],
        "real static SR must change training (else this test proves nothing)"
    );
}

#[test]
fn a_checkpoint_from_other_params_is_set_aside_and_training_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::ring_dataset(dir.path(), 256, 1);
    let out = dir.path().join("run");
    let fresh = dir.path().join("fresh");
    run(mlp_params(
        &data,
        &out,
        json!("none"),
        json!({"stop_after": 2}),
    ));
    // Another seed (an identity param) in the same directory: a run from iteration 0, the
    // same bits as in an empty directory.
    let other = run(mlp_params(&data, &out, json!("none"), json!({"seed": 9})));
    assert_eq!((other.resumed_from, other.iteration), (0, 24));
    run(mlp_params(&data, &fresh, json!("none"), json!({"seed": 9})));
    assert!(
        checkpoint(&out) == checkpoint(&fresh),
        "a run over another params' checkpoint differs from a fresh one"
    );
    // Params outside the identity may change: the run resumes (at its end, here).
    let same = run(mlp_params(
        &data,
        &out,
        json!("none"),
        json!({"seed": 9, "log_every": 3, "eval_samples": 10}),
    ));
    assert_eq!(same.resumed_from, 24);
}

/// After an upgrade that bumped `train-gan`, a persisted run from the old version starts over
/// (with a message) instead of failing: it ends exactly like a fresh run, with no file of the
/// old one left behind.
#[test]
fn a_checkpoint_from_another_version_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::ring_dataset(dir.path(), 256, 1);
    let fresh = dir.path().join("fresh");
    let old = dir.path().join("old");
    run(mlp_params(&data, &fresh, json!("none"), json!({})));
    // An "old version" run: other sample files, and a checkpoint whose version key says 1.
    run(mlp_params(
        &data,
        &old,
        json!("none"),
        json!({"stop_after": 9, "sample_every": 3}),
    ));
    let ckpt = old.join("checkpoint.safetensors");
    let mut state = candle_core::safetensors::load(&ckpt, &candle_core::Device::Cpu).unwrap();
    state.insert(
        "train_gan_version".into(),
        candle_core::Tensor::new(&[1i64], &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&state, &ckpt).unwrap();
    // The builtin writes this run's params.json before training starts: it must survive.
    std::fs::write(old.join("params.json"), "{}\n").unwrap();
    let said = std::cell::RefCell::new(Vec::new());
    let outcome = train(
        &common::params(mlp_params(&data, &old, json!("none"), json!({}))),
        &|_, _, m: &str| said.borrow_mut().push(m.to_string()),
    )
    .unwrap();
    assert_eq!(outcome.resumed_from, 0);
    assert!(
        said.borrow()
            .iter()
            .any(|m| m.contains("written by train-gan version 1") && m.contains("iteration 0")),
        "{:?}",
        said.borrow()
    );
    assert!(checkpoint(&fresh) == checkpoint(&old));
    assert!(
        !old.join("samples/3.safetensors").exists(),
        "a file of the old run survived"
    );
    assert!(
        old.join("params.json").exists(),
        "the new run's params.json was deleted"
    );
}

#[test]
fn a_non_finite_loss_names_the_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    let ds = stages::data::prepared::Dataset {
        name: "huge".into(),
        samples: stages::data::prepared::Samples::Points {
            coords: vec![f32::NAN; 64],
            shape: [32, 2],
        },
        labels: None,
        metadata: Default::default(),
    };
    stages::data::prepared::save(&path, &ds).unwrap();
    let err = train(
        &common::params(mlp_params(
            &path,
            &dir.path().join("run"),
            json!("none"),
            json!({}),
        )),
        &common::quiet,
    )
    .unwrap_err();
    match &err {
        // Iteration 1's D loss is still finite (candle's relu maps NaN to 0) but its gradient is
        // not; the NaN weights then make iteration 2's G loss NaN, and that is where it stops.
        TrainError::NonFinite { iteration, .. } => assert_eq!(*iteration, 2),
        other => panic!("expected a non-finite loss error, got {other}"),
    }
    assert!(err.to_string().contains("iteration 2"), "{err}");
}

#[test]
fn params_are_checked_by_name() {
    let bad = serde_json::from_value::<stages::train::params::TrainParams>(json!({
        "dataset": "d", "model": {"arch": "mlp"}, "iterations": 1, "optimizer": "C", "lerning_rate": 1
    }));
    assert!(bad.unwrap_err().to_string().contains("lerning_rate"));
    let sr = serde_json::from_value::<stages::train::params::TrainParams>(json!({
        "dataset": "d", "model": {"arch": "mlp"}, "iterations": 1, "optimizer": "C", "sr": "sometimes"
    }));
    assert!(sr.is_err());
    let p: stages::train::params::TrainParams = serde_json::from_value(json!({
        "dataset": "d", "model": {"arch": "mlp"}, "iterations": 1, "optimizer": "C", "sn": false, "sr": {"mode": "static"}
    }))
    .unwrap();
    assert!(p.validate().unwrap_err().contains("sn"));
}

#[test]
fn the_init_spectrum_is_logged_and_logging_spectra_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::ring_dataset(dir.path(), 256, 1);
    let (logged, silent) = (dir.path().join("logged"), dir.path().join("silent"));
    let sr = json!({"mode": "dynamic", "every": 2});
    run(mlp_params(&data, &logged, sr.clone(), json!({})));
    run(mlp_params(&data, &silent, sr, json!({"spectra_every": 0})));
    // Spectra at 0 (the init), every 10, and the end; only the end without an interval.
    let names = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(out.join("spectra"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&logged), ["0.csv", "10.csv", "20.csv", "24.csv"]);
    assert_eq!(names(&silent), ["24.csv"]);
    let init = std::fs::read_to_string(logged.join("spectra/0.csv")).unwrap();
    assert!(init.starts_with("layer,name,index,sigma\n0,"), "{init}");
    // Writing the spectra (the one at 0 included) moved no state: same checkpoint, same samples.
    assert!(checkpoint(&logged) == checkpoint(&silent));
    for f in ["samples/final.safetensors", "spectra/24.csv"] {
        assert!(
            common::bytes(&logged.join(f)) == common::bytes(&silent.join(f)),
            "`{f}` differs"
        );
    }
}

#[test]
fn dynamic_sr_is_plain_sn_until_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::ring_dataset(dir.path(), 256, 1);
    let (sn, dynamic) = (dir.path().join("sn"), dir.path().join("dynamic"));
    run(mlp_params(&data, &sn, json!("none"), json!({})));
    run(mlp_params(
        &data,
        &dynamic,
        json!({"mode": "dynamic", "every": 2, "start": 10}),
        json!({}),
    ));
    // Spectra at 10 are taken after iteration 9, before SR's first call at iteration 10.
    for f in ["spectra/0.csv", "spectra/10.csv"] {
        assert!(
            common::bytes(&sn.join(f)) == common::bytes(&dynamic.join(f)),
            "`{f}` differs: dynamic SR ran before its start"
        );
    }
    assert!(
        common::bytes(&sn.join("spectra/20.csv")) != common::bytes(&dynamic.join("spectra/20.csv")),
        "dynamic SR never ran after its start"
    );
}
