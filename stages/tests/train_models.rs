//! The architectures: shapes, SN layer inventories (checked against the papers' counts), and a
//! tiny end-to-end image run that writes every output the downstream stages read.

use crate::common;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use stages::data::prepared::{self, Samples};
use stages::nn::layers::{Mode, SnConfig};
use stages::nn::models::{DataShape, Gan, ModelConfig};
use stages::nn::Store;

fn build(cfg: ModelConfig, shape: DataShape, z_dim: usize) -> (Gan, Store, Store) {
    let mut gs = Store::new(&Device::Cpu, DType::F32);
    let mut ds = Store::new(&Device::Cpu, DType::F32);
    let gan = cfg
        .build(
            shape,
            z_dim,
            SnConfig::SN,
            &mut gs,
            &mut ds,
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .unwrap();
    (gan, gs, ds)
}

fn ranks(gan: &Gan) -> Vec<(String, usize)> {
    gan.d
        .sn_layers()
        .iter()
        .map(|l| {
            let (r, c) = l.matrix_dims();
            (l.name().to_string(), r.min(c))
        })
        .collect()
}

const CIFAR: DataShape = DataShape::Images {
    channels: 3,
    height: 32,
    width: 32,
};

#[test]
fn standard_cnn_has_the_sn_papers_singular_value_counts() {
    // SN paper Fig. 3 plots 27, 64, 128, 128, 256, 256, 512 singular values for the seven convs
    // of the standard CNN D on CIFAR-10; the final dense layer (one output) has one.
    let (gan, _, _) = build(ModelConfig::Cnn { g_ch: 8, d_ch: 64 }, CIFAR, 128);
    let r: Vec<usize> = ranks(&gan).into_iter().map(|(_, r)| r).collect();
    assert_eq!(r, vec![27, 64, 128, 128, 256, 256, 512, 1]);
    let z = Tensor::randn(0f32, 1.0, (2, 128), &Device::Cpu).unwrap();
    let x = gan.g.forward(&z, Mode::Train).unwrap();
    assert_eq!(x.dims(), &[2, 3, 32, 32]);
    let max = x
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(max <= 1.0, "tanh output out of range: {max}");
    assert_eq!(gan.d.forward(&x, Mode::Train).unwrap().dims(), &[2]);
}

#[test]
fn standard_cnn_follows_the_data_size_stl10() {
    let stl = DataShape::Images {
        channels: 3,
        height: 48,
        width: 48,
    };
    let (gan, _, _) = build(ModelConfig::Cnn { g_ch: 4, d_ch: 4 }, stl, 16);
    let z = Tensor::randn(0f32, 1.0, (2, 16), &Device::Cpu).unwrap();
    let x = gan.g.forward(&z, Mode::Eval).unwrap();
    assert_eq!(x.dims(), &[2, 3, 48, 48]);
    assert_eq!(gan.d.forward(&x, Mode::Eval).unwrap().dims(), &[2]);
}

#[test]
fn resnet_discriminator_numbers_its_ten_convs_like_the_sr_paper() {
    let (gan, _, _) = build(ModelConfig::Resnet { g_ch: 8, d_ch: 128 }, CIFAR, 128);
    let layers = ranks(&gan);
    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "block1.c1",
            "block1.c2",
            "block1.c_sc",
            "block2.c1",
            "block2.c2",
            "block2.c_sc",
            "block3.c1",
            "block3.c2",
            "block4.c1",
            "block4.c2",
            "l5"
        ]
    );
    // sn_sr.md §3.2: layer 0 is ch x 27, layer 2 is ch x 3, layer 9 is ch x 9ch (r = ch).
    assert_eq!(gan.d.sn_layers()[0].matrix_dims(), (128, 27));
    assert_eq!(gan.d.sn_layers()[2].matrix_dims(), (128, 3));
    assert_eq!(gan.d.sn_layers()[9].matrix_dims(), (128, 1152));
    assert_eq!(layers[9].1, 128);
    let z = Tensor::randn(0f32, 1.0, (2, 128), &Device::Cpu).unwrap();
    let x = gan.g.forward(&z, Mode::Train).unwrap();
    assert_eq!(x.dims(), &[2, 3, 32, 32]);
    assert_eq!(gan.d.forward(&x, Mode::Train).unwrap().dims(), &[2]);
}

#[test]
fn points_need_the_mlp_and_images_need_a_conv_net() {
    let mut gs = Store::new(&Device::Cpu, DType::F32);
    let mut ds = Store::new(&Device::Cpu, DType::F32);
    let mut r = ChaCha8Rng::seed_from_u64(0);
    let mut r2 = ChaCha8Rng::seed_from_u64(0);
    let err = ModelConfig::Mlp {
        hidden: 4,
        d_hidden: None,
        layers: 1,
    }
    .build(CIFAR, 4, SnConfig::SN, &mut gs, &mut ds, &mut r, &mut r2);
    assert!(err.is_err());
    let odd = DataShape::Images {
        channels: 3,
        height: 30,
        width: 30,
    };
    let err = ModelConfig::Cnn { g_ch: 4, d_ch: 4 }.build(
        odd,
        4,
        SnConfig::SN,
        &mut gs,
        &mut ds,
        &mut r,
        &mut r2,
    );
    assert!(err.err().unwrap().to_string().contains("divisible by 8"));
}

#[test]
fn a_tiny_image_run_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::image_dataset(dir.path(), 16, 3, 32);
    let out = dir.path().join("run");
    let p = common::params(json!({
        "dataset": data, "out": out, "model": {"arch": "cnn", "g_ch": 4, "d_ch": 4},
        "z_dim": 16, "batch_size": 4, "iterations": 2, "optimizer": "C", "loss": "standard",
        "sr": {"mode": "dynamic", "every": 1}, "log_every": 1, "spectra_every": 1,
        "sample_every": 1, "checkpoint_every": 1, "eval_samples": 70,
    }));
    stages::train::train(&p, &common::quiet).unwrap();
    let final_ = prepared::load(&out.join("samples/final.safetensors")).unwrap();
    match final_.samples {
        // (After two steps the BN running statistics are still near their initial values, so the
        // eval-mode samples are nearly constant; only the format is checked here.)
        Samples::Images { shape, pixels } => {
            assert_eq!((shape, pixels.len()), ([70, 3, 32, 32], 70 * 3 * 32 * 32))
        }
        _ => panic!("images expected"),
    }
    let first = prepared::load(&out.join("samples/1.safetensors")).unwrap();
    assert_eq!(
        first.metadata.get("iteration").map(String::as_str),
        Some("1")
    );
    let png = std::fs::read(out.join("samples/2.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let spectra = std::fs::read_to_string(out.join("spectra/2.csv")).unwrap();
    assert_eq!(spectra.lines().next().unwrap(), "layer,name,index,sigma");
    // Ranks with d_ch 4: widths 4, 4, 8, 8, 16, 16, 32 (each below its fan-in), 1 for the dense layer.
    assert_eq!(
        spectra.lines().count(),
        1 + 4 + 4 + 8 + 8 + 16 + 16 + 32 + 1
    );
    let top: Vec<f64> = spectra
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(2) == Some("0"))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    // W / sigma_hat has spectral norm ~1 (one power step per forward; not exact at step 2).
    assert!(top.iter().all(|s| (0.5..1.5).contains(s)), "{top:?}");
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3);
    assert!(log.starts_with("iteration,loss_d,loss_g,lr,seconds_per_step\n1,"));
}

#[test]
fn both_image_archs_train_a_step_at_stl10s_48x48() {
    // The paper profile's STL-10 runs (SR grid group E, SN Table 2 standard CNN) train at 48x48:
    // G starts from 6x6, and the ResNet D pools 48 -> 24 -> 12 before its global sum.
    let dir = tempfile::tempdir().unwrap();
    let data = common::image_dataset(dir.path(), 8, 3, 48);
    for (arch, optimizer, loss) in [
        ("resnet", "resnet", "hinge"),
        ("cnn", "B", "standard"),
        ("resnet-stl", "resnet", "hinge"),
    ] {
        let out = dir.path().join(arch);
        let model = if arch == "resnet-stl" {
            json!({"arch": arch, "ch": 2})
        } else {
            json!({"arch": arch, "g_ch": 4, "d_ch": 4})
        };
        let p = common::params(json!({
            "dataset": data, "out": out, "model": model,
            "z_dim": 8, "batch_size": 4, "iterations": 1, "optimizer": optimizer, "loss": loss,
            "lr_decay": "linear", "sr": "static", "log_every": 1, "spectra_every": 1,
            "sample_every": 1, "checkpoint_every": 1, "eval_samples": 3,
        }));
        stages::train::train(&p, &common::quiet).unwrap();
        let samples = prepared::load(&out.join("samples/final.safetensors")).unwrap();
        assert!(
            matches!(
                samples.samples,
                Samples::Images {
                    shape: [3, 3, 48, 48],
                    ..
                }
            ),
            "{arch}: {:?}",
            samples.samples
        );
        let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
        let row: Vec<f64> = log
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(row[1].is_finite() && row[2].is_finite(), "{arch}: {log}");
    }
}

#[test]
fn stl10_resnet_has_table_5s_channel_plan() {
    // SN paper Table 5: G dense to 6x6x512, up-blocks to 256, 128, 64; D blocks down to 64, 128,
    // 256, 512, then a block to 1024, global sum, dense. With `ch` 64 the SN layers of D are
    // (rows, cols) of each conv reshaped, in name order, then the dense layer.
    let stl = DataShape::Images {
        channels: 3,
        height: 48,
        width: 48,
    };
    let (gan, gs, _) = build(ModelConfig::ResnetStl { ch: 64 }, stl, 128);
    let dims: Vec<(String, (usize, usize))> = gan
        .d
        .sn_layers()
        .iter()
        .map(|l| (l.name().to_string(), l.matrix_dims()))
        .collect();
    let want: Vec<(String, (usize, usize))> = [
        ("block1.c1", (64, 27)),
        ("block1.c2", (64, 576)),
        ("block1.c_sc", (64, 3)),
        ("block2.c1", (128, 576)),
        ("block2.c2", (128, 1152)),
        ("block2.c_sc", (128, 64)),
        ("block3.c1", (256, 1152)),
        ("block3.c2", (256, 2304)),
        ("block3.c_sc", (256, 128)),
        ("block4.c1", (512, 2304)),
        ("block4.c2", (512, 4608)),
        ("block4.c_sc", (512, 256)),
        ("block5.c1", (1024, 4608)),
        ("block5.c2", (1024, 9216)),
        ("block5.c_sc", (1024, 512)),
        ("l6", (1, 1024)),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    assert_eq!(dims, want);
    // G: the dense layer feeds 6x6x512 and the last block is 64 wide.
    let shapes: std::collections::BTreeMap<String, Vec<usize>> = gs
        .params()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().dims().to_vec()))
        .collect();
    assert_eq!(
        shapes["l1.weight"].iter().product::<usize>(),
        128 * 6 * 6 * 512
    );
    assert_eq!(shapes["block2.c1.weight"], [256, 512, 3, 3]);
    assert_eq!(shapes["block4.c2.weight"], [64, 64, 3, 3]);
    assert_eq!(shapes["c5.weight"], [3, 64, 3, 3]);
}

/// The data gradient of D's logits' sum at `x` in `mode`, every D parameter that received a
/// gradient, and D's buffers afterwards (all on the host).
fn d_backward(
    cfg: &ModelConfig,
    shape: DataShape,
    x: &[f32],
    mode: Mode,
) -> (Vec<f32>, Vec<String>, Vec<Vec<f32>>) {
    let (gan, _, ds) = build(cfg.clone(), shape, 8);
    let dims = match shape {
        DataShape::Images {
            channels,
            height,
            width,
        } => vec![2, channels, height, width],
        DataShape::Points { dim } => vec![2, dim],
    };
    let x =
        candle_core::Var::from_tensor(&Tensor::from_slice(x, dims, &Device::Cpu).unwrap()).unwrap();
    let grads = gan
        .d
        .forward(&x, mode)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dx = flat(grads.get(x.as_tensor()).expect("a data gradient"));
    let with_grad = ds
        .params()
        .iter()
        .filter(|(_, v)| grads.get(v.as_tensor()).is_some())
        .map(|(name, _)| name.clone())
        .collect();
    let buffers = ds.buffers().values().map(|v| flat(v.as_tensor())).collect();
    (dx, with_grad, buffers)
}

#[test]
fn a_frozen_discriminator_passes_the_same_gradient_to_its_input_and_none_to_its_parameters() {
    // G's step runs D frozen: the data gradient G learns from, and D's SN state afterwards,
    // must be the same bits as in a training pass, with no gradient left on D's parameters.
    let points = DataShape::Points { dim: 2 };
    let cases = [
        (ModelConfig::Cnn { g_ch: 4, d_ch: 4 }, CIFAR),
        (ModelConfig::Resnet { g_ch: 4, d_ch: 4 }, CIFAR),
        (
            ModelConfig::Mlp {
                hidden: 8,
                d_hidden: Some(4),
                layers: 2,
            },
            points,
        ),
    ];
    for (cfg, shape) in cases {
        let n = match shape {
            DataShape::Images { .. } => 2 * 3 * 32 * 32,
            DataShape::Points { .. } => 4,
        };
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let (dx_train, trained, buffers_train) = d_backward(&cfg, shape, &x, Mode::Train);
        let (dx_frozen, frozen, buffers_frozen) = d_backward(&cfg, shape, &x, Mode::Frozen);
        assert!(
            !trained.is_empty(),
            "{cfg:?}: training D gave its parameters no gradient"
        );
        assert_eq!(
            frozen,
            Vec::<String>::new(),
            "{cfg:?}: frozen D's parameters got gradients"
        );
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&dx_frozen),
            bits(&dx_train),
            "{cfg:?}: the data gradients differ"
        );
        assert_eq!(
            buffers_frozen, buffers_train,
            "{cfg:?}: the SN state advanced differently"
        );
    }
}
