//! The `spectral` builtin end to end on synthetic `spectra/` directories written in the
//! training stage's format (`layer,name,index,sigma`, one file per logged iteration).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

const R: usize = 32;
/// Logged every 1K up to 12K, so the file names do not sort as numbers (`10000.csv` < `2000.csv`).
const ITERATIONS: [u64; 13] = [
    0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000,
];
const COLLAPSE_AT: u64 = 6000;

/// A healthy spectrum that flattens slowly with training: linear from 1 down to `floor`, with
/// a small deterministic wobble.
fn healthy(iteration: u64) -> Vec<f64> {
    let floor = 0.15 + 0.01 * (iteration / 1000) as f64;
    (0..R)
        .map(|j| {
            let x = j as f64 / (R - 1) as f64;
            let wobble = 0.01 * ((j * 7 + iteration as usize / 1000) % 3) as f64;
            if j == 0 {
                1.0
            } else {
                1.0 - (1.0 - floor) * x - wobble
            }
        })
        .collect()
}

/// After collapse the values beyond the first few sit below 0.3 (sn_sr.md §5.3's picture).
fn collapsed() -> Vec<f64> {
    (0..R)
        .map(|j| match j {
            0 => 1.0,
            1 | 2 => 0.7,
            _ => 0.3 * (1.0 - j as f64 / R as f64),
        })
        .collect()
}

/// Writes `run/spectra/<it>.csv` with layer 0 (`block1.c1`) stable and layer 1 (`block4.c2`)
/// collapsing at [`COLLAPSE_AT`]; each spectrum is scaled so sigma_1 is near 1, as W/sigma_hat.
fn write_run(run: &Path) {
    let dir = run.join("spectra");
    std::fs::create_dir_all(&dir).unwrap();
    for it in ITERATIONS {
        let mut text = String::from("layer,name,index,sigma\n");
        let second = if it < COLLAPSE_AT {
            healthy(it + 500)
        } else {
            collapsed()
        };
        for (layer, name, sigmas) in [(0, "block1.c1", healthy(it)), (1, "block4.c2", second)] {
            for (j, s) in sigmas.iter().enumerate() {
                writeln!(text, "{layer},{name},{j},{}", s * 1.0003).unwrap();
            }
        }
        std::fs::write(dir.join(format!("{it}.csv")), text).unwrap();
    }
    // An interrupted writer's temp file is not a spectrum.
    std::fs::write(dir.join(".tmp-abc"), "garbage").unwrap();
}

fn run_builtin(params: Value) -> Result<(), repro_engine::builtin::StageError> {
    crate::common::run_builtin("spectral", params)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn collapse_is_found_at_its_iteration_and_a_stable_layer_is_not_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run);
    let out = tmp.path().join("analysis");
    run_builtin(json!({ "run": run, "out": out })).unwrap();

    let doc = read_json(&out.join("spectral.json"));
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let (stable, falling) = (&layers[0], &layers[1]);
    assert_eq!(stable["name"], "block1.c1");
    assert_eq!(stable["collapse_iteration"], Value::Null, "{stable}");
    assert_eq!(stable["collapsed"], false);
    assert_eq!(falling["layer"], 1);
    assert_eq!(falling["rank"], R);
    assert_eq!(falling["collapse_iteration"], COLLAPSE_AT, "{falling}");
    assert_eq!(falling["collapsed"], true);
    assert_eq!(doc["collapsed_layers"], json!([1]));
    assert_eq!(doc["collapsed"], true);
    assert_eq!(doc["detector"]["threshold"], 0.5);
    let iterations: Vec<u64> = serde_json::from_value(falling["iterations"].clone()).unwrap();
    assert_eq!(iterations, ITERATIONS, "iterations in numeric order");
    // The summaries are those of the normalized spectrum: sigma1 is reported as stored.
    let sigma1 = falling["sigma1"][0].as_f64().unwrap();
    assert!((sigma1 - 1.0003).abs() < 1e-12, "{sigma1}");
    let share = falling["share_above"].as_array().unwrap();
    assert_eq!(
        share[ITERATIONS.len() - 1].as_f64().unwrap(),
        3.0 / R as f64
    );

    let csv = std::fs::read_to_string(out.join("spectral.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("layer,iteration,share_above,auc,effective_rank,sigma1,tail_mean")
    );
    assert_eq!(lines.count(), 2 * ITERATIONS.len());
    assert!(csv.contains("\n1,12000,0.093750,"), "{csv}");
}

#[test]
fn output_is_byte_identical_and_keys_are_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run);
    let a = tmp.path().join("a.json");
    let b = tmp.path().join("b/spectral.json");
    run_builtin(json!({ "run": run, "out": a })).unwrap();
    run_builtin(json!({ "run": run, "out": b })).unwrap();
    let (ja, jb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ja, jb);
    assert_eq!(
        std::fs::read(tmp.path().join("a.csv")).unwrap(),
        std::fs::read(tmp.path().join("b/spectral.csv")).unwrap()
    );
    let text = String::from_utf8(ja).unwrap();
    let top: Vec<usize> = [
        "\"collapsed\"",
        "\"collapsed_layers\"",
        "\"detector\"",
        "\"layers\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(top.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.find("\"auc\"").unwrap() < text.find("\"collapse_iteration\"").unwrap());
}

#[test]
fn layers_pick_by_number_or_name_and_thresholds_change_the_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run);
    let out = tmp.path().join("one.json");
    run_builtin(json!({ "run": run, "out": out, "layers": ["block4.c2"] })).unwrap();
    let doc = read_json(&out);
    assert_eq!(doc["layers"].as_array().unwrap().len(), 1);
    assert_eq!(doc["layers"][0]["layer"], 1);

    // Demanding a fall of 99% of the level before: the collapse above (the tail mean loses about
    // three quarters of its level) is no longer sharp enough.
    run_builtin(json!({ "run": run, "out": out, "layers": [1], "drop": 0.99 })).unwrap();
    let doc = read_json(&out);
    assert_eq!(doc["layers"][0]["collapse_iteration"], Value::Null);
    assert_eq!(doc["detector"]["drop"], 0.99);
}

#[test]
fn bad_params_are_params_errors_that_say_what_is_known() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run);
    let out = tmp.path().join("x");
    let cases = [
        (
            json!({ "run": run, "out": out, "layers": [7] }),
            "1 (`block4.c2`)",
        ),
        (
            json!({ "run": run, "out": out, "thresold": 0.5 }),
            "thresold",
        ),
        (json!({ "run": run, "out": out, "window": 0 }), "`window`"),
        (
            json!({ "run": run, "out": out, "threshold": 2.0 }),
            "`threshold`",
        ),
        (json!({ "run": run, "out": out, "tail": 1.0 }), "`tail`"),
    ];
    for (params, needle) in cases {
        let err = run_builtin(params.clone()).unwrap_err();
        assert!(err.is_params(), "{params}: {err}");
        assert!(err.to_string().contains(needle), "{params}: {err}");
    }
    assert!(!out.exists(), "nothing is written on a params error");
}

#[test]
fn a_run_without_spectra_or_with_a_bad_file_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("spectra")).unwrap();
    let err = run_builtin(json!({ "run": empty, "out": tmp.path().join("o") })).unwrap_err();
    assert!(!err.is_params());
    assert!(
        err.to_string().contains("no `<iteration>.csv` files"),
        "{err}"
    );

    let missing = tmp.path().join("missing");
    let err = run_builtin(json!({ "run": missing, "out": tmp.path().join("o") })).unwrap_err();
    assert!(
        err.to_string().contains("no `<iteration>.csv` files"),
        "{err}"
    );

    let run = tmp.path().join("run");
    write_run(&run);
    std::fs::write(
        run.join("spectra/3000.csv"),
        "layer,name,index,sigma\n0,block1.c1,0,1\n0,block1.c1,1,inf\n",
    )
    .unwrap();
    let err = run_builtin(json!({ "run": run, "out": tmp.path().join("o") })).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("3000.csv") && msg.contains("line 3"), "{msg}");
}

// --- The tail measure: what SR leaves free -------------------------------------------------

/// The layers of one logged iteration: `(layer, name, sigmas)`.
type Spectra = Vec<(u32, &'static str, Vec<f64>)>;

/// Writes `run/spectra/<it>.csv` for each iteration in the training stage's format, and
/// `run/params.json` with `sr` when given (as the train-gan builtin does).
fn write_spectra(run: &Path, iterations: &[u64], sr: Option<Value>, at: impl Fn(u64) -> Spectra) {
    let dir = run.join("spectra");
    std::fs::create_dir_all(&dir).unwrap();
    for &it in iterations {
        let mut text = String::from("layer,name,index,sigma\n");
        for (layer, name, sigmas) in at(it) {
            for (j, s) in sigmas.iter().enumerate() {
                writeln!(text, "{layer},{name},{j},{s}").unwrap();
            }
        }
        std::fs::write(dir.join(format!("{it}.csv")), text).unwrap();
    }
    if let Some(sr) = sr {
        let params = json!({ "model": {"arch": "mlp"}, "sr": sr, "out": run });
        std::fs::write(run.join("params.json"), params.to_string()).unwrap();
    }
}

/// A static-SR spectrum: the top `floor(r/2)` values pinned to 1 (a little drift below it, as
/// after the D steps since the last projection), the tail `tail(j)` as training left it.
fn sr_static(drift: f64, tail: impl Fn(usize) -> f64) -> Vec<f64> {
    (0..R)
        .map(|j| {
            if j < R / 2 {
                1.0 - drift * j as f64 / R as f64
            } else {
                tail(j)
            }
        })
        .collect()
}

/// A healthy tail: linear from 0.6 at j = r/2 down to 0.3 at j = r - 1.
fn healthy_tail(j: usize) -> f64 {
    0.6 - 0.3 * (j - R / 2) as f64 / (R / 2 - 1) as f64
}

/// A collapsed tail: everything below the pinned head near zero.
fn collapsed_tail(j: usize) -> f64 {
    0.08 * (1.0 - (j - R / 2) as f64 / R as f64)
}

fn layer_verdict(doc: &Value, k: usize) -> (Value, bool) {
    let l = &doc["layers"][k];
    (
        l["collapse_iteration"].clone(),
        l["collapsed"].as_bool().unwrap(),
    )
}

#[test]
fn an_sr_static_run_whose_tail_collapses_is_flagged_though_its_share_stays_at_one_half() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("sr");
    write_spectra(&run, &ITERATIONS, Some(json!("static")), |it| {
        let drift = 0.01 * (it % 3000) as f64 / 1000.0;
        let spectrum = if it < COLLAPSE_AT {
            sr_static(drift, healthy_tail)
        } else {
            sr_static(drift, collapsed_tail)
        };
        vec![(0, "d.fc1", spectrum)]
    });
    let out = tmp.path().join("analysis");
    run_builtin(json!({ "run": run, "out": out })).unwrap();
    let doc = read_json(&out.join("spectral.json"));
    assert_eq!(doc["detector"]["summary"], "tail_mean");
    assert_eq!(layer_verdict(&doc, 0), (json!(COLLAPSE_AT), true), "{doc}");
    assert_eq!(doc["collapsed_layers"], json!([0]));
    // Version 1's measure could not have seen it: the pinned head keeps the share at 1/2 or
    // more in every logged spectrum, before and after the collapse.
    for share in doc["layers"][0]["share_above"].as_array().unwrap() {
        assert!(share.as_f64().unwrap() >= 0.5, "{share}");
    }
    let tail: Vec<f64> = serde_json::from_value(doc["layers"][0]["tail_mean"].clone()).unwrap();
    assert!(
        tail[0] > 0.4 && tail[ITERATIONS.len() - 1] < 0.1,
        "{tail:?}"
    );
    let csv = std::fs::read_to_string(out.join("spectral.csv")).unwrap();
    assert!(csv.starts_with("layer,iteration,share_above,auc,effective_rank,sigma1,tail_mean\n"));
}

#[test]
fn a_healthy_sn_run_is_not_flagged_even_from_a_flat_random_init() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("sn");
    // Iteration 0: a near-flat random-init spectrum (tail mean about 0.8); from 1000 on, the
    // trained spectrum flattens slowly (tail mean about 0.3). Falling from the init is training.
    write_spectra(&run, &ITERATIONS, Some(json!("none")), |it| {
        let init: Vec<f64> = (0..R).map(|j| 1.0 - 0.3 * j as f64 / R as f64).collect();
        let s = if it == 0 { init } else { healthy(it) };
        vec![(0, "d.fc0", s.clone()), (1, "d.fc1", s)]
    });
    let out = tmp.path().join("analysis");
    run_builtin(json!({ "run": run, "out": out })).unwrap();
    let doc = read_json(&out.join("spectral.json"));
    for k in 0..2 {
        assert_eq!(layer_verdict(&doc, k), (Value::Null, false), "{doc}");
    }
    assert_eq!(doc["collapsed"], false);
    assert_eq!(doc["detector"]["from"], 1);
    // Judging the init spectrum too turns that first fall into a "collapse" at 1000: the reason
    // `from` defaults to 1.
    run_builtin(json!({ "run": run, "out": out, "from": 0 })).unwrap();
    let doc = read_json(&out.join("spectral.json"));
    assert_eq!(doc["layers"][0]["collapse_iteration"], 1000);
}

#[test]
fn the_pinned_head_alone_decides_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // The same tails (healthy, then collapsed at COLLAPSE_AT in layer 1) under three different
    // heads, each staying above the tail (the head is the largest values by definition): pinned
    // at 1, falling to 0.65 at COLLAPSE_AT, and rising from 0.7 to 1. The verdicts agree.
    let heads: [fn(u64, usize) -> f64; 3] = [
        |_, _| 1.0,
        |it, j| {
            if it < COLLAPSE_AT {
                1.0
            } else {
                1.0 - 0.35 * j as f64 / (R / 2) as f64
            }
        },
        |it, j| 0.7 + 0.3 * (it as f64 / 12000.0) * (1.0 - j as f64 / R as f64),
    ];
    let mut verdicts = Vec::new();
    for (h, head) in heads.iter().enumerate() {
        let run = tmp.path().join(format!("run{h}"));
        write_spectra(&run, &ITERATIONS, None, |it| {
            let spectrum = |collapse: bool| -> Vec<f64> {
                (0..R)
                    .map(|j| match j {
                        0 => 1.0,
                        j if j < R / 2 => head(it, j).min(1.0),
                        j if collapse => collapsed_tail(j),
                        j => healthy_tail(j),
                    })
                    .collect()
            };
            vec![
                (0, "d.fc0", spectrum(false)),
                (1, "d.fc1", spectrum(it >= COLLAPSE_AT)),
            ]
        });
        let out = tmp.path().join(format!("out{h}"));
        run_builtin(json!({ "run": run, "out": out })).unwrap();
        let doc = read_json(&out.join("spectral.json"));
        verdicts.push((layer_verdict(&doc, 0), layer_verdict(&doc, 1)));
    }
    assert_eq!(
        verdicts[0],
        ((Value::Null, false), (json!(COLLAPSE_AT), true))
    );
    assert!(verdicts.iter().all(|v| *v == verdicts[0]), "{verdicts:?}");

    // A head that falls on its own from 1 to 0.3 (most values now under 0.5) over a low, steady
    // tail is no collapse either: the head is what SR pins, so the measure never looks at it.
    let run = tmp.path().join("head-only");
    write_spectra(&run, &ITERATIONS, None, |it| {
        let s = (0..R)
            .map(|j| match j {
                0 => 1.0,
                j if j < R / 2 && it >= COLLAPSE_AT => 0.3,
                j if j < R / 2 => 1.0,
                j => 0.25 - 0.01 * (j - R / 2) as f64,
            })
            .collect();
        vec![(0, "d.fc0", s)]
    });
    let out = tmp.path().join("head-only-out");
    run_builtin(json!({ "run": run, "out": out })).unwrap();
    let doc = read_json(&out.join("spectral.json"));
    assert_eq!(layer_verdict(&doc, 0), (Value::Null, false), "{doc}");
    // The share above 0.5 fell from a half to 1/r: version 1 would have called it collapse.
    let share: Vec<f64> = serde_json::from_value(doc["layers"][0]["share_above"].clone()).unwrap();
    assert_eq!(share[0], 0.5);
    assert_eq!(share[ITERATIONS.len() - 1], 1.0 / R as f64);
}

#[test]
fn sr_that_pins_part_of_the_tail_is_refused_until_the_tail_moves_past_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    for (sr, refused) in [
        (json!({"mode": "static", "i": 0.8}), true),
        (json!({"mode": "graph", "i": 0.75}), true),
        (json!("static"), false),
        (json!("graph"), false),
        (json!({"mode": "dynamic", "start": 5000}), false),
        (json!("none"), false),
    ] {
        let run = tmp.path().join("run");
        let _ = std::fs::remove_dir_all(&run);
        write_spectra(&run, &ITERATIONS, Some(sr.clone()), |it| {
            vec![(0, "d.fc0", healthy(it))]
        });
        let got = run_builtin(json!({ "run": run, "out": out }));
        if refused {
            let err = got.unwrap_err();
            assert!(err.is_params(), "{sr}: {err}");
            assert!(
                err.to_string().contains("`tail`") && err.to_string().contains("sr.i"),
                "{err}"
            );
            run_builtin(json!({ "run": run, "out": out, "tail": 0.8 })).unwrap();
        } else {
            got.unwrap();
        }
    }
    // A params.json whose `sr` is not an SR setting is named, not ignored.
    let run = tmp.path().join("run");
    std::fs::write(run.join("params.json"), r#"{"sr": "statik"}"#).unwrap();
    let err = run_builtin(json!({ "run": run, "out": out })).unwrap_err();
    assert!(err.to_string().contains("params.json"), "{err}");
}
