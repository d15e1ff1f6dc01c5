//! Benchmark: one D step and one G step of the SN paper's standard CNN (batch 64, 32x32x3,
//! hinge loss, Adam), and the cost of one SR pass (static, dynamic, graph) over its D.
//! `G_CH`, `D_CH` (default 64 each) and `BATCH` (default 64) in the environment pick other
//! sizes, e.g. the small DCGAN of the extended profile (`G_CH=16 D_CH=4`).
//! Run by `scripts/bench/train_step.sh`, which builds this with `--release` and runs PyTorch
//! on the same model in the same session. Prints one JSON object per measurement.
//!
//! Usage: `train_step [ROUNDS] [steps]` (median of ROUNDS timed steps after 3 warm-up steps;
//! `steps` measures the D and G steps only, for profiling them without the SR passes). Built
//! with the `kernel-timers` feature it also prints, on stderr, where the steps' kernel time went.

use std::time::Instant;

use candle_core::Device;
use serde_json::json;
use stages::nn::linalg;
use stages::nn::models::DataShape;
use stages::nn::spectral_reg::{project_static, DynamicSr};
use stages::train::params::TrainParams;
use stages::train::trainer::{HostData, Trainer};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<F: FnMut()>(rounds: usize, mut f: F) -> f64 {
    for _ in 0..3 {
        f();
    }
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// A size from the environment (`G_CH`, `D_CH`, `BATCH`), else `default`.
fn size(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a positive integer")),
        Err(_) => default,
    }
}

fn params(sr: serde_json::Value) -> TrainParams {
    serde_json::from_value(json!({
        "dataset": "unused",
        "model": {"arch": "cnn", "g_ch": size("G_CH", 64), "d_ch": size("D_CH", 64)},
        "batch_size": size("BATCH", 64), "iterations": 100000, "loss": "hinge", "optimizer": "resnet", "sr": sr,
    }))
    .expect("benchmark params are valid")
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // As `repro builtin` does (its thread and allocator settings are part of what is measured).
    kernels::threads::leave_cores_to_rayon();
    kernels::heap::keep_freed_memory();
    kernels::threads::run_in_pool(run)
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let shape = DataShape::Images {
        channels: 3,
        height: 32,
        width: 32,
    };
    let n = 256;
    let values: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
        .collect();
    let data = HostData { values, n, shape };
    let report = |what: &str, secs: f64| {
        println!("{}", json!({"impl": "ours", "what": what, "seconds": secs}))
    };

    let mut t = Trainer::new(&params(json!("none")), shape, &Device::Cpu)?;
    let d = time(rounds, || {
        t.d_step(&data, 2e-4).expect("d step");
    });
    report("d_step", d);
    kernels::timers::eprint_per("D step", rounds + 3);
    let g = time(rounds, || {
        t.g_step(2e-4).expect("g step");
    });
    report("g_step", g);
    kernels::timers::eprint_per("G step", rounds + 3);
    if std::env::args().nth(2).as_deref() == Some("steps") {
        return Ok(());
    }

    let layers = t.sn_layers();
    report(
        "sr_static_pass",
        time(rounds, || {
            layers
                .iter()
                .for_each(|l| project_static(l, 0.5).expect("static"))
        }),
    );
    // Where a static pass goes, per pass over the layers: the SVD, the rebuild `U diag(s) V^T`,
    // and the copies between the tensor and faer's matrix (both ways).
    let mut pieces = [0.0; 3];
    for _ in 0..rounds {
        for l in &layers {
            let t = Instant::now();
            let m = linalg::to_mat(l.weight().as_tensor())?;
            let copied = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let (u, s, v) = linalg::thin_svd(&m, l.name())?;
            pieces[0] += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let rebuilt = linalg::rebuild(&u, &s, &v);
            pieces[1] += t.elapsed().as_secs_f64();
            let t = Instant::now();
            linalg::set_var(l.weight(), &rebuilt)?;
            pieces[2] += copied + t.elapsed().as_secs_f64();
        }
    }
    for (what, secs) in ["svd", "rebuild", "copies"].iter().zip(pieces) {
        report(&format!("sr_static_{what}"), secs / rounds as f64);
    }
    let mut dynamic = DynamicSr::default();
    layers
        .iter()
        .for_each(|l| dynamic.apply(l).expect("dynamic record"));
    report(
        "sr_dynamic_pass",
        time(rounds, || {
            layers
                .iter()
                .for_each(|l| dynamic.apply(l).expect("dynamic"))
        }),
    );

    let mut tg = Trainer::new(
        &params(json!({"mode": "graph", "i": 0.5})),
        shape,
        &Device::Cpu,
    )?;
    let graph_layers = tg.sn_layers();
    report(
        "sr_graph_pass",
        time(rounds, || {
            graph_layers.iter().for_each(|l| {
                l.graph()
                    .map(|g| g.refresh(l.name(), l.weight()).expect("refresh"))
                    .unwrap_or(())
            })
        }),
    );
    report(
        "d_step_graph_sr",
        time(rounds, || {
            tg.d_step(&data, 2e-4).expect("graph d step");
        }),
    );
    Ok(())
}
