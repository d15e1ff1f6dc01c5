//! Spectral normalization: power iteration, gradient, and agreement with PyTorch.
//!
//! The PyTorch values come from `scripts/fixtures/sn_torch.py` (run with the shared torch
//! venv), which wrote `fixtures/sn/sn_torch.safetensors` with `torch.nn.utils.spectral_norm`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stages::nn::init::standard_normal;
use stages::nn::linalg;
use stages::nn::spectral_norm::SpectralNorm;

fn randn(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = standard_normal(rng, n).into_iter().map(f64::from).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn sn_of(w: &Tensor, u: &Tensor) -> SpectralNorm {
    let rows = w.dims()[0];
    SpectralNorm::new(
        "layer",
        Var::from_tensor(w).unwrap(),
        Var::from_tensor(&u.reshape((rows, 1)).unwrap()).unwrap(),
        None,
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn max_abs(a: &Tensor) -> f64 {
    a.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn sigma_after_many_power_iterations_is_the_top_singular_value() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let w = randn(&mut rng, &[24, 5, 3, 3]);
    let sn = sn_of(&w, &randn(&mut rng, &[24]));
    for _ in 0..300 {
        sn.normalized(true).unwrap();
    }
    let exact = linalg::singular_values(&linalg::to_mat(&w).unwrap(), "layer").unwrap()[0];
    let sigma = sn.sigma_estimate().unwrap();
    assert!(
        (sigma - exact).abs() / exact < 1e-9,
        "sigma {sigma} vs faer {exact}"
    );
    // And the normalized weight has spectral norm 1.
    let wbar = sn.normalized(false).unwrap();
    let top = linalg::singular_values(&linalg::to_mat(&wbar).unwrap(), "layer").unwrap()[0];
    assert!(
        (top - 1.0).abs() < 1e-9,
        "spectral norm of W/sigma is {top}"
    );
}

#[test]
fn gradient_matches_central_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let w0 = randn(&mut rng, &[6, 3, 2, 2]);
    let r = randn(&mut rng, &[6, 3, 2, 2]);
    let u0 = randn(&mut rng, &[6]);
    let sn = sn_of(&w0, &u0);
    // Converge u so that the power step's own dependence on W is second order (the paper's
    // Eq. 12 treats u and v as constants; at the fixed point that is exact to first order).
    for _ in 0..500 {
        sn.normalized(true).unwrap();
    }
    let u = sn.u().as_tensor().copy().unwrap();
    let loss = |w: &Tensor| -> f64 {
        let s = SpectralNorm::new(
            "layer",
            Var::from_tensor(w).unwrap(),
            Var::from_tensor(&u).unwrap(),
            None,
        );
        (s.normalized(false).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let y = (sn.normalized(false).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = y.backward().unwrap();
    let g: Vec<f64> = grads
        .get(sn.weight().as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let flat: Vec<f64> = w0.flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for idx in 0..flat.len() {
        let mut plus = flat.clone();
        plus[idx] += eps;
        let mut minus = flat.clone();
        minus[idx] -= eps;
        let fd = (loss(&Tensor::from_vec(plus, w0.shape(), &Device::Cpu).unwrap())
            - loss(&Tensor::from_vec(minus, w0.shape(), &Device::Cpu).unwrap()))
            / (2.0 * eps);
        worst = worst.max((fd - g[idx]).abs() / (1.0 + fd.abs()));
    }
    assert!(worst < 1e-6, "worst relative gradient error {worst}");
}

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sn/sn_torch.safetensors"
    );
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

#[test]
fn matches_pytorch_spectral_norm_on_conv_and_linear() {
    let fx = fixture();
    for prefix in ["conv", "linear"] {
        let get = |k: &str| fx[&format!("{prefix}.{k}")].to_dtype(DType::F64).unwrap();
        let w = get("weight");
        let sn = sn_of(&w, &get("u0"));
        let x = get("x");
        let forward = |wbar: &Tensor| -> Tensor {
            if prefix == "conv" {
                x.conv2d(wbar, 1, 1, 1, 1).unwrap()
            } else {
                x.matmul(&wbar.t().unwrap()).unwrap()
            }
        };
        let mut y = None;
        for step in 1..=2 {
            let wbar = sn.normalized(true).unwrap();
            let u = sn.u().as_tensor().flatten_all().unwrap();
            let du = max_abs_diff(&u, &get(&format!("step{step}.u")));
            assert!(
                du < 1e-12,
                "{prefix} step {step}: u differs from torch by {du}"
            );
            let sigma = (w.flatten_all().unwrap() * wbar.flatten_all().unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                / wbar
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
            let ts = get(&format!("step{step}.sigma"))
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()[0];
            assert!(
                (sigma - ts).abs() / ts < 1e-12,
                "{prefix} step {step}: sigma {sigma} vs torch {ts}"
            );
            let out = forward(&wbar);
            let ty = get(&format!("step{step}.y"));
            let dy = max_abs_diff(&out, &ty);
            assert!(
                dy < 1e-10 * (1.0 + max_abs(&ty)),
                "{prefix} step {step}: output differs by {dy}"
            );
            y = Some(out);
        }
        let loss = (y.unwrap() * get("r")).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(sn.weight().as_tensor()).unwrap();
        let tg = get("grad_weight");
        let dg = max_abs_diff(g, &tg);
        assert!(
            dg < 1e-10 * (1.0 + max_abs(&tg)),
            "{prefix}: weight gradient differs from torch by {dg}"
        );
    }
}

#[test]
fn eval_forward_does_not_advance_u() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let sn = sn_of(&randn(&mut rng, &[4, 9]), &randn(&mut rng, &[4]));
    let before: Vec<f64> = sn.u().as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    sn.normalized(false).unwrap();
    let after: Vec<f64> = sn.u().as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(before, after);
    sn.normalized(true).unwrap();
    let trained: Vec<f64> = sn.u().as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    assert_ne!(before, trained);
}
