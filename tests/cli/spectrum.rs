//! `repro spectrum FILE` against numpy's SVD.
//!
//! The fixture is shared with the stages crate's test and made by
//! `scripts/fixtures/spectral_checkpoint.py` (PyTorch's safetensors writer, `numpy.linalg.svd`
//! in float64 on the stored values).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::bin;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("stages/tests/fixtures/spectral")
        .join(name)
}

fn spectrum(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("spectrum")
        .args(args)
        .output()
        .expect("run repro");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_matches_numpy() {
    let file = fixture("checkpoint.safetensors");
    let (code, stdout, stderr) = spectrum(&[file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let got: Value = serde_json::from_str(&stdout).unwrap();
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let layers = got["layers"].as_array().unwrap();
    let expected = want["tensors"].as_array().unwrap();
    assert_eq!(layers.len(), expected.len(), "{stdout}");
    for (g, w) in layers.iter().zip(expected) {
        assert_eq!(g["name"], w["name"]);
        assert_eq!(g["shape"], w["shape"]);
        let s = w["singular_values"].as_array().unwrap();
        let sg = g["singular_values"].as_array().unwrap();
        assert_eq!(sg.len(), s.len(), "{}", w["name"]);
        let tol = 1e-10 * s[0].as_f64().unwrap();
        for (a, b) in sg.iter().zip(s) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= tol, "{}: {a} vs numpy {b}", w["name"]);
        }
        assert_eq!(g["share_above_0_5"], w["share_above"], "{}", w["name"]);
        let erank = g["effective_rank"].as_f64().unwrap();
        assert!((erank - w["effective_rank"].as_f64().unwrap()).abs() < 1e-9);
    }
    assert_eq!(got["skipped"][0]["name"], "rng.state");
}

#[test]
fn text_is_a_table_of_every_weight() {
    let file = fixture("checkpoint.safetensors");
    let (code, stdout, stderr) = spectrum(&[file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let mut lines = stdout.lines();
    let header = lines.next().unwrap();
    for col in ["name", "shape", "sigma_1", "share>0.5", "effective rank"] {
        assert!(header.contains(col), "{header}");
    }
    let row = stdout
        .lines()
        .find(|l| l.starts_with("dis.block2.c2.weight"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("10x6x3x3") && row.contains("BF16"), "{row}");
    assert!(stdout.contains("skipped `rng.state` (I64 2x3)"), "{stdout}");
}

#[test]
fn unreadable_files_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, "not a tensor file").unwrap();
    let (code, _, stderr) = spectrum(&[bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.safetensors"), "{stderr}");
    let (code, _, stderr) = spectrum(&[dir.path().join("none").to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
}
