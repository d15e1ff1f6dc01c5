//! FID, IS, npz statistics and `.pth` conversion against reference implementations.
//!
//! Fixtures (all in `tests/fixtures/inception/`):
//! - `fid_is.safetensors`, `stats_a.npz`: `scripts/fixtures/inception_fid_is.py` (pytorch-fid's
//!   sqrtm-based `calculate_frechet_distance`, `np.cov`, `np.savez`, improved-gan's IS in numpy);
//! - `tiny_state_dict*.pth`, `tiny_state_dict_expected.safetensors`:
//!   `scripts/fixtures/inception_pth_layout.py` (`torch.save` in zip and legacy formats with
//!   pytorch-fid's key names).

use crate::inception_common;

use std::collections::HashMap;

use inception_common::{fixture_path, read_fixture};
use stages::metrics::fid::{frechet_distance, Stats};
use stages::metrics::inception_score::inception_score;

type Fixture = HashMap<String, (Vec<usize>, Vec<f64>)>;

fn fixture() -> Fixture {
    read_fixture(&fixture_path("fid_is.safetensors"))
}

fn stats_of(f: &Fixture, name: &str) -> Stats {
    let (shape, v) = &f[name];
    let feats: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Stats::from_features(&feats, shape[0], shape[1]).expect("stats")
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn fid_matches_pytorch_fid_full_rank_and_rank_deficient() {
    let f = fixture();
    let ab = frechet_distance(&stats_of(&f, "feats_a"), &stats_of(&f, "feats_b")).expect("fid");
    let want = f["fid_ab"].1[0];
    assert!(
        rel(ab, want) < 1e-6,
        "full rank: ours {ab}, pytorch-fid {want}"
    );
    // 40 samples in 64-d: both covariances singular, the case sqrtm handles worst.
    let cd = frechet_distance(&stats_of(&f, "feats_c"), &stats_of(&f, "feats_d")).expect("fid");
    let want = f["fid_cd"].1[0];
    assert!(
        rel(cd, want) < 1e-6,
        "rank deficient: ours {cd}, pytorch-fid {want}"
    );
}

#[test]
fn statistics_match_numpy_cov() {
    let f = fixture();
    let s = stats_of(&f, "feats_a");
    assert_eq!(s.n, 300);
    for (name, ours) in [("mu_a", &s.mu), ("sigma_a", &s.sigma)] {
        let want = &f[name].1;
        let worst = ours
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "{name}: max abs diff {worst}");
    }
}

#[test]
fn npz_reads_numpy_savez_and_round_trips() {
    let f = fixture();
    let s = Stats::load_npz(&fixture_path("stats_a.npz")).expect("numpy npz");
    assert_eq!(s.mu, f["mu_a"].1, "bit-exact f64 through np.savez");
    assert_eq!(s.sigma, f["sigma_a"].1);
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("stats.npz");
    s.save_npz(&p).expect("save");
    let back = Stats::load_npz(&p).expect("load ours");
    assert_eq!((back.mu, back.sigma), (s.mu.clone(), s.sigma.clone()));
    let again = dir.path().join("again.npz");
    s.save_npz(&again).expect("save");
    assert_eq!(
        std::fs::read(&p).ok(),
        std::fs::read(&again).ok(),
        "same stats, same bytes"
    );
}

#[test]
fn inception_score_matches_improved_gan_protocol() {
    let f = fixture();
    let (shape, v) = &f["is_logits"];
    let logits: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    let s = inception_score(&logits, shape[0], shape[1], 10).expect("is");
    let want = &f["is_mean_std"].1;
    assert!(
        rel(s.mean, want[0]) < 1e-9,
        "mean: ours {}, numpy {}",
        s.mean,
        want[0]
    );
    assert!(
        rel(s.std, want[1]) < 1e-9,
        "std: ours {}, numpy {}",
        s.std,
        want[1]
    );
}

#[test]
fn pth_state_dicts_convert_in_zip_and_legacy_formats() {
    let expected = read_fixture(&fixture_path("tiny_state_dict_expected.safetensors"));
    let dir = tempfile::tempdir().expect("temp dir");
    for (file, format) in [
        ("tiny_state_dict.pth", "pth"),
        ("tiny_state_dict_legacy.pth", "pth-legacy"),
    ] {
        let out = dir.path().join(format!("{format}.safetensors"));
        let info = stages::metrics::convert_weights(&fixture_path(file), &out).expect(file);
        assert_eq!(info.source_format, format);
        assert!(info.has_logits, "{file}: fc.weight carried over");
        assert_eq!(
            info.tensors,
            expected.len(),
            "{file}: num_batches_tracked dropped"
        );
        let got = read_fixture(&out);
        for (name, want) in &expected {
            assert_eq!(got.get(name), Some(want), "{file}: `{name}`");
        }
    }
}
