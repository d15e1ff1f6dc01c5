//! Tests of the prepared format and the 2-D synthetic sets.
//!
//! Reference fixtures come from `scripts/fixtures/data_prepared.py` (python `safetensors` +
//! torch, and the mixture constants of reference/metrics.md §6.1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stages::data::prepared::{self, Dataset, Samples};
use stages::data::synthetic;
use stages::data::DataError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn tiny_images() -> Dataset {
    let mut metadata = BTreeMap::new();
    metadata.insert("source".to_string(), "test".to_string());
    metadata.insert("a-key".to_string(), "first".to_string());
    Dataset {
        name: "tiny".to_string(),
        samples: Samples::Images {
            pixels: (0..24).collect(),
            shape: [2, 3, 2, 2],
        },
        labels: Some(vec![3, 1]),
        metadata,
    }
}

#[test]
fn images_round_trip_and_bytes_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/tiny.safetensors");
    let ds = tiny_images();
    prepared::save(&path, &ds).unwrap();
    assert_eq!(prepared::load(&path).unwrap(), ds);
    // Same dataset, same bytes: the content hash of a re-prepared set must not move.
    let first = std::fs::read(&path).unwrap();
    for _ in 0..5 {
        assert_eq!(prepared::to_bytes(&ds).unwrap(), first);
    }
    // No temp files left beside the output.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn our_files_read_back_with_the_safetensors_crate() {
    let ds = synthetic::ring(10, 3);
    let bytes = prepared::to_bytes(&ds).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let pts = st.tensor("points").unwrap();
    assert_eq!(pts.dtype(), safetensors::Dtype::F32);
    assert_eq!(pts.shape(), &[10, 2]);
    let labels = st.tensor("labels").unwrap();
    assert_eq!(labels.dtype(), safetensors::Dtype::U32);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["name"], "ring");
}

#[test]
fn reads_files_written_by_python_safetensors() {
    let ds = prepared::load(&fixture("prepared_py_images.safetensors")).unwrap();
    assert_eq!(ds.name, "tiny-images");
    assert_eq!(
        ds.metadata.get("source").map(String::as_str),
        Some("python")
    );
    let want: Vec<u8> = (0..12u8).map(|v| v * 17).collect();
    assert_eq!(
        ds.samples,
        Samples::Images {
            pixels: want,
            shape: [3, 1, 2, 2]
        }
    );
    assert_eq!(
        ds.labels,
        Some(vec![7, 0, 9]),
        "i64 labels are narrowed to u32"
    );

    let ds = prepared::load(&fixture("prepared_py_points.safetensors")).unwrap();
    assert_eq!(
        ds.samples,
        Samples::Points {
            coords: vec![0.5, -1.25, 3.0, 1e-3],
            shape: [2, 2]
        }
    );
    assert_eq!(ds.labels, Some(vec![1, 2]));
}

#[test]
fn rejects_truncated_and_inconsistent_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("prepared_py_images.safetensors")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let err = prepared::load(&cut).unwrap_err();
    assert!(matches!(err, DataError::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("cut.safetensors"), "{err}");

    let mut bad = tiny_images();
    bad.labels = Some(vec![1]);
    let err = prepared::save(&dir.path().join("x.safetensors"), &bad).unwrap_err();
    assert!(err.to_string().contains("1 labels for 2 samples"), "{err}");
    assert!(!dir.path().join("x.safetensors").exists());

    let mut bad = tiny_images();
    bad.samples = Samples::Images {
        pixels: vec![0; 5],
        shape: [2, 3, 2, 2],
    };
    assert!(prepared::to_bytes(&bad).is_err());
}

#[test]
fn rejects_negative_labels_and_foreign_tensors() {
    use safetensors::tensor::TensorView;
    let labels: Vec<u8> = [-1i64].iter().flat_map(|v| v.to_le_bytes()).collect();
    let px = [0u8; 4];
    let bytes = safetensors::serialize(
        [
            (
                "images",
                TensorView::new(safetensors::Dtype::U8, vec![1, 1, 2, 2], &px).unwrap(),
            ),
            (
                "labels",
                TensorView::new(safetensors::Dtype::I64, vec![1], &labels).unwrap(),
            ),
        ],
        Some(
            [("name".to_string(), "neg".to_string())]
                .into_iter()
                .collect(),
        ),
    )
    .unwrap();
    let err = prepared::from_bytes(Path::new("neg.safetensors"), &bytes).unwrap_err();
    assert!(err.to_string().contains("label 0 is -1"), "{err}");

    let bytes = safetensors::serialize(
        [(
            "weights",
            TensorView::new(safetensors::Dtype::U8, vec![4], &px).unwrap(),
        )],
        Some(
            [("name".to_string(), "w".to_string())]
                .into_iter()
                .collect(),
        ),
    )
    .unwrap();
    let err = prepared::from_bytes(Path::new("w.safetensors"), &bytes).unwrap_err();
    assert!(
        err.to_string().contains("unexpected tensor `weights`"),
        "{err}"
    );
}

#[derive(serde::Deserialize)]
struct Centers {
    ring: Vec<[f32; 2]>,
    ring_sigma: f32,
    grid: Vec<[f32; 2]>,
    grid_sigma: f32,
}

fn reference_centers() -> Centers {
    let text = std::fs::read_to_string(fixture("synthetic_centers.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn centers_and_sigmas_match_the_reference() {
    let r = reference_centers();
    assert_eq!(synthetic::ring_centers(), r.ring);
    assert_eq!(synthetic::grid_centers(), r.grid);
    assert_eq!(synthetic::RING_SIGMA, r.ring_sigma);
    assert_eq!(synthetic::GRID_SIGMA, r.grid_sigma);
}

/// Per-mode sample mean and std must match the mixture: a wrong sigma, a swapped axis or a
/// label that does not name the sample's mode all fail here.
fn check_mixture(ds: &Dataset, centers: &[[f32; 2]], sigma: f32) {
    let Samples::Points { coords, shape } = &ds.samples else {
        panic!("points expected")
    };
    assert_eq!(shape[1], 2);
    let labels = ds.labels.as_ref().unwrap();
    let k = centers.len();
    let mut count = vec![0usize; k];
    let mut sum = vec![[0f64; 2]; k];
    let mut sq = vec![0f64; k];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        let c = centers[l];
        let (dx, dy) = (
            coords[2 * i] as f64 - c[0] as f64,
            coords[2 * i + 1] as f64 - c[1] as f64,
        );
        count[l] += 1;
        sum[l][0] += dx;
        sum[l][1] += dy;
        sq[l] += dx * dx + dy * dy;
    }
    let n = labels.len() as f64;
    for m in 0..k {
        // Uniform mode choice: each count within 5 binomial std of n/k.
        let p = 1.0 / k as f64;
        let sd = (n * p * (1.0 - p)).sqrt();
        assert!(
            (count[m] as f64 - n * p).abs() < 5.0 * sd,
            "mode {m}: {} samples",
            count[m]
        );
        let c = count[m] as f64;
        let s = sigma as f64;
        assert!(
            (sum[m][0] / c).abs() < 5.0 * s / c.sqrt(),
            "mode {m} mean x off"
        );
        assert!(
            (sum[m][1] / c).abs() < 5.0 * s / c.sqrt(),
            "mode {m} mean y off"
        );
        let est = (sq[m] / (2.0 * c)).sqrt();
        assert!(
            (est / s - 1.0).abs() < 0.05,
            "mode {m}: std {est} vs sigma {s}"
        );
    }
}

#[test]
fn ring_and_grid_follow_their_mixtures() {
    let r = reference_centers();
    check_mixture(&synthetic::ring(40_000, 1), &r.ring, r.ring_sigma);
    check_mixture(&synthetic::grid(100_000, 2), &r.grid, r.grid_sigma);
}

#[test]
fn synthetic_sets_are_seeded() {
    assert_eq!(synthetic::ring(100, 7), synthetic::ring(100, 7));
    assert_ne!(synthetic::ring(100, 7), synthetic::ring(100, 8));
    assert_eq!(synthetic::grid(100, 7), synthetic::grid(100, 7));
    let ds = synthetic::grid(3, 0);
    assert_eq!(ds.name, "grid");
    assert_eq!(ds.len(), 3);
}

#[test]
fn synthetic_builtin_writes_the_seeded_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ring.safetensors");
    let params = serde_json::json!({"set": "ring", "n": 500, "seed": 4, "out": out});
    crate::common::run_builtin("synthetic", params).unwrap();
    assert_eq!(prepared::load(&out).unwrap(), synthetic::ring(500, 4));

    let bad = serde_json::json!({"set": "spiral", "n": 5, "seed": 0, "out": out});
    let err = crate::common::run_builtin("synthetic", bad).unwrap_err();
    assert!(
        err.is_params() && err.to_string().contains("`spiral`"),
        "{err}"
    );
}
