//! `stages::spectral::checkpoint_spectra` against numpy's SVD.
//!
//! The fixture is made by `scripts/fixtures/spectral_checkpoint.py` (PyTorch's safetensors
//! writer for the file, `numpy.linalg.svd` in float64 for the expected values, and the summary
//! definitions written out in numpy).

use std::path::PathBuf;

use serde_json::Value;
use stages::spectral::checkpoint_spectra;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/spectral")
        .join(name)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn singular_values_and_summaries_match_numpy() {
    let got = checkpoint_spectra(&fixture("checkpoint.safetensors")).unwrap();
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let want = expected["tensors"].as_array().unwrap();
    let names: Vec<&str> = got.tensors.iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, want_names, "the decomposed tensors, sorted by name");
    for (t, w) in got.tensors.iter().zip(want) {
        let shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(t.shape, shape, "{}", t.name);
        let s: Vec<f64> = serde_json::from_value(w["singular_values"].clone()).unwrap();
        assert_eq!(t.singular_values.len(), s.len(), "{}", t.name);
        // Both sides decompose the same f64 matrix; differences are round-off relative to sigma_1.
        let tol = 1e-10 * s[0];
        for (j, (a, b)) in t.singular_values.iter().zip(&s).enumerate() {
            assert!(close(*a, *b, tol), "{} sigma_{j}: {a} vs numpy {b}", t.name);
        }
        let sm = &t.summary;
        assert!(
            close(sm.sigma1, w["sigma1"].as_f64().unwrap(), tol),
            "{}",
            t.name
        );
        assert_eq!(
            sm.share_above,
            w["share_above"].as_f64().unwrap(),
            "{}",
            t.name
        );
        assert!(
            close(sm.auc, w["auc"].as_f64().unwrap(), 1e-10),
            "{}",
            t.name
        );
        assert!(
            close(
                sm.effective_rank,
                w["effective_rank"].as_f64().unwrap(),
                1e-9
            ),
            "{}: {} vs {}",
            t.name,
            sm.effective_rank,
            w["effective_rank"]
        );
        // tail_mean is not in the fixture (it predates the summary): its definition applied to
        // numpy's values, the sorted indices from floor(r/2) on, over sigma_1.
        let tail = &s[s.len() / 2..];
        let want = tail.iter().map(|x| x / s[0]).sum::<f64>() / tail.len() as f64;
        assert!(close(sm.tail_mean, want, 1e-10), "{}", t.name);
    }
    let dtypes: Vec<&str> = got.tensors.iter().map(|t| t.dtype.as_str()).collect();
    for d in ["F16", "BF16", "F32", "F64"] {
        assert!(dtypes.contains(&d), "the fixture covers {d}: {dtypes:?}");
    }
    let skipped: Vec<&str> = got.skipped.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(skipped, ["rng.state"]);
}

#[test]
fn a_file_that_is_not_safetensors_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.safetensors");
    std::fs::write(&path, b"hello").unwrap();
    let err = checkpoint_spectra(&path).unwrap_err().to_string();
    assert!(
        err.contains("notes.safetensors") && err.contains("not a readable safetensors"),
        "{err}"
    );
    let missing = checkpoint_spectra(&dir.path().join("none.safetensors")).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
}
