//! `fid_cli` resolves its three input kinds (PNG folder, prepared dataset, npz stats) to the
//! same statistics. The expected values are analytic (identical image sets give FID 0), so no
//! reference fixture is involved beyond the weights (fetched by `inception_common`; skipped
//! without pip).

use crate::{common, inception_common};

use std::path::Path;

use stages::metrics::fid_cli::{fid_cli, FidCliOptions};

const H: usize = 20;
const W: usize = 24;

/// Two fixed images, planar RGB: a grey gradient (saved as a grey PNG) and a colour pattern.
fn images() -> Vec<Vec<u8>> {
    let plane = H * W;
    let grey: Vec<u8> = (0..plane)
        .map(|k| ((k % W) * 10 + (k / W) * 3) as u8)
        .collect();
    let mut a = Vec::with_capacity(3 * plane);
    for _ in 0..3 {
        a.extend_from_slice(&grey);
    }
    let b: Vec<u8> = (0..3 * plane)
        .map(|k| ((k * 37 + (k / plane) * 80) % 256) as u8)
        .collect();
    vec![a, b]
}

fn write_png(path: &Path, rgb_planar: &[u8], grey: bool) {
    let file = std::fs::File::create(path).expect("create png");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(if grey {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    });
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().expect("png header");
    let plane = H * W;
    let data: Vec<u8> = if grey {
        rgb_planar[..plane].to_vec()
    } else {
        (0..plane)
            .flat_map(|i| {
                [
                    rgb_planar[i],
                    rgb_planar[plane + i],
                    rgb_planar[2 * plane + i],
                ]
            })
            .collect()
    };
    w.write_image_data(&data).expect("png data");
}

fn write_prepared(path: &Path, images: &[Vec<u8>]) {
    let data: Vec<u8> = images.concat();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::U8,
        vec![images.len(), 3, H, W],
        &data,
    )
    .expect("view");
    safetensors::tensor::serialize_to_file([("images", view)], None, path).expect("write");
}

#[test]
fn png_folder_prepared_dataset_and_npz_agree() {
    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let imgs = images();
    let pngs = dir.path().join("pngs");
    std::fs::create_dir(&pngs).expect("mkdir");
    write_png(&pngs.join("0.png"), &imgs[0], true);
    write_png(&pngs.join("1.png"), &imgs[1], false);
    std::fs::write(pngs.join("notes.txt"), "not an image").expect("write");
    let prepared = dir.path().join("set.safetensors");
    write_prepared(&prepared, &imgs);

    let opts = FidCliOptions { batch: Some(2) };
    let fid = fid_cli(&pngs, &prepared, &weights, &opts, &|_, _, _| {}).expect("fid");
    assert!(
        fid.abs() < 1e-3,
        "same images through PNG and safetensors: FID {fid}"
    );

    // Stats saved as npz stand in for the images they came from.
    let net = stages::metrics::fid_cli::load_any_weights(&weights).expect("weights");
    let f = net
        .features(&imgs.concat(), [2, 3, H, W], Some(2), &|_, _| {})
        .expect("features");
    let stats = stages::metrics::fid::Stats::from_features(&f.pool3, 2, 2048).expect("stats");
    let npz = dir.path().join("ref.npz");
    stats.save_npz(&npz).expect("npz");
    let fid = fid_cli(&npz, &npz, &weights, &opts, &|_, _, _| {}).expect("fid");
    assert!(fid.abs() < 1e-6, "npz against itself: {fid}");
    let swapped = [imgs[1].clone(), imgs[1].clone()];
    write_prepared(&prepared, &swapped);
    let fid = fid_cli(&npz, &prepared, &weights, &opts, &|_, _, _| {}).expect("fid");
    assert!(fid > 1.0, "different images must be far apart: {fid}");
}

#[test]
fn unusable_inputs_are_errors_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No weights are needed to reject these: the inputs fail before the network loads.
    let weights = dir.path().join("absent.safetensors");
    let one = dir.path().join("one.safetensors");
    write_prepared(&one, &images()[..1]);
    let err = fid_cli(
        &one,
        &one,
        &weights,
        &FidCliOptions::default(),
        &|_, _, _| {},
    );
    let msg = err.expect_err("one image").to_string();
    assert!(msg.contains("at least 2"), "{msg}");
    let points = dir.path().join("points.safetensors");
    let data = vec![0u8; 4 * 2 * 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 2], &data)
        .expect("view");
    safetensors::tensor::serialize_to_file([("points", view)], None, &points).expect("write");
    let err = fid_cli(
        &points,
        &points,
        &weights,
        &FidCliOptions::default(),
        &|_, _, _| {},
    );
    let msg = err.expect_err("points").to_string();
    assert!(msg.contains("no `images` tensor"), "{msg}");
}

/// The `fid-stats` builtin writes the statistics of the *first* `max_samples` images, with
/// their count, in a file `repro fid` (and pytorch-fid) reads as a reference.
#[test]
fn fid_stats_builtin_summarizes_the_first_images() {
    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let imgs = images();
    let three = [imgs[0].clone(), imgs[1].clone(), imgs[1].clone()];
    let prepared = dir.path().join("set.safetensors");
    write_prepared(&prepared, &three);
    let out = dir.path().join("stats/ref.npz");
    fid_stats(serde_json::json!({
        "images": prepared, "inception_weights": weights, "max_samples": 2, "batch_size": 2,
        "out": out,
    }))
    .expect("fid-stats");

    let stats = stages::metrics::fid::Stats::load_npz(&out).expect("npz");
    assert_eq!(stats.n, 2, "the count travels with the statistics");
    let first_two = dir.path().join("two.safetensors");
    write_prepared(&first_two, &imgs);
    let opts = FidCliOptions { batch: Some(2) };
    let fid = fid_cli(&out, &first_two, &weights, &opts, &|_, _, _| {}).expect("fid");
    assert!(fid.abs() < 1e-3, "stats of the first two images: FID {fid}");

    let err = fid_stats(serde_json::json!({
        "images": prepared, "inception_weights": weights, "max_samples": 0, "out": out,
    }))
    .expect_err("zero");
    assert!(err.to_string().contains("max_samples"), "{err}");
}

/// Runs the `fid-stats` builtin with `params` (a JSON object).
fn fid_stats(params: serde_json::Value) -> Result<(), repro_engine::builtin::StageError> {
    common::run_builtin("fid-stats", params)
}

/// `kid_samples` adds the pool3 features of the first images as `features` (f32, [k, 2048])
/// after the statistics, which stay as they were; without it (or with 0) the file is the same
/// bytes as before the key existed.
#[test]
fn fid_stats_kid_samples_stores_the_first_features() {
    use stages::metrics::fid_stats::{load_features, FEATURES};
    use stages::metrics::inception::POOL3_DIM;
    use stages::metrics::npy::read_npz;

    let Some(weights) = inception_common::fid_weights() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let imgs = images();
    let three = [imgs[0].clone(), imgs[1].clone(), imgs[1].clone()];
    let prepared = dir.path().join("set.safetensors");
    write_prepared(&prepared, &three);
    let npz = |name: &str| dir.path().join(name);
    let base = serde_json::json!({
        "images": prepared, "inception_weights": weights, "batch_size": 3,
    });
    let with = |out: &Path, extra: serde_json::Value| {
        let mut p = base.clone();
        p["out"] = serde_json::json!(out);
        for (k, v) in extra.as_object().expect("map") {
            p[k] = v.clone();
        }
        fid_stats(p).expect("fid-stats");
    };
    with(&npz("plain.npz"), serde_json::json!({}));
    with(&npz("zero.npz"), serde_json::json!({"kid_samples": 0}));
    with(&npz("two.npz"), serde_json::json!({"kid_samples": 2}));
    with(&npz("many.npz"), serde_json::json!({"kid_samples": 100}));

    let bytes = |name: &str| std::fs::read(npz(name)).expect("read npz");
    assert_eq!(
        bytes("plain.npz"),
        bytes("zero.npz"),
        "kid_samples: 0 is absent"
    );
    let plain = read_npz(&npz("plain.npz")).expect("npz");
    let mut names: Vec<&String> = plain.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["mu", "n", "sigma"],
        "no features without kid_samples"
    );
    assert_eq!(load_features(&npz("plain.npz")).expect("read"), None);

    // The features are those of the first images, as Inception gives them in one batch.
    let net = stages::metrics::fid_cli::load_any_weights(&weights).expect("weights");
    let f = net
        .features(&three.concat(), [3, 3, H, W], Some(3), &|_, _| {})
        .expect("features");
    for (name, k) in [("two.npz", 2), ("many.npz", 3)] {
        let all = read_npz(&npz(name)).expect("npz");
        for stat in ["mu", "sigma", "n"] {
            assert_eq!(all[stat], plain[stat], "{name}: `{stat}` unchanged");
        }
        assert_eq!(all[FEATURES].shape, [k, POOL3_DIM], "{name}");
        let (values, rows, d) = load_features(&npz(name)).expect("read").expect("features");
        assert_eq!((rows, d), (k, POOL3_DIM));
        assert_eq!(
            values,
            f.pool3[..k * POOL3_DIM],
            "{name}: first {k} images' pool3"
        );
        // The statistics part reads as before, e.g. by `repro fid`.
        let stats = stages::metrics::fid::Stats::load_npz(&npz(name)).expect("stats");
        assert_eq!(
            stats,
            stages::metrics::fid::Stats::load_npz(&npz("plain.npz")).expect("stats")
        );
    }
    // The file numpy reads: `<f4` features.
    let raw = bytes("two.npz");
    assert!(
        raw.windows(b"'descr': '<f4'".len())
            .any(|w| w == b"'descr': '<f4'"),
        "features are float32"
    );
}
