//! The `spectral` builtin end to end on synthetic `spectra/` directories written in the
//! training stage's format (`layer,name,index,sigma`, one file per logged iteration).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use stages::{lookup, Context};

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

fn run_builtin(params: Value) -> Result<(), stages::StageError> {
    let b = lookup("spectral").expect("the spectral builtin is registered");
    let Value::Object(map) = params else {
        panic!("params must be an object")
    };
    (b.run)(&Context::new(b.kind, map))
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
        Some("layer,iteration,share_above,auc,effective_rank,sigma1")
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

    // Demanding a fall of 99% of the level before: the collapse above is no longer sharp enough.
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
