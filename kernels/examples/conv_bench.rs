//! The kernels against the candle ops they replace, in the same process: forward and backward of
//! each convolution of the SN paper's standard CNN discriminator (batch 64, 32x32x3), and of the
//! generator's transposed convolutions, timed through `kernels` and through candle's own
//! `conv2d` / `conv_transpose2d`. Prints one JSON line per layer with both medians and the ratio.
//!
//! `cargo run --release -p repro-kernels --example conv_bench -- [ROUNDS]` (default 5, after one
//! warm-up). Run it on a quiet machine (`scripts/bench/quiet.py run -- BINARY`): a loaded one
//! flatters whichever side uses fewer threads. End-to-end steps against PyTorch:
//! `scripts/bench/train_step.sh`.

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};

/// One layer: input `(n, c, h, w)`, `o` filters of `k x k`, stride, padding; transposed or not.
struct Layer {
    name: &'static str,
    x: [usize; 4],
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    transposed: bool,
}

const LAYERS: &[Layer] = &[
    Layer {
        name: "d.c0 3->64 3x3",
        x: [64, 3, 32, 32],
        o: 64,
        k: 3,
        stride: 1,
        pad: 1,
        transposed: false,
    },
    Layer {
        name: "d.c1 64->64 4x4/2",
        x: [64, 64, 32, 32],
        o: 64,
        k: 4,
        stride: 2,
        pad: 1,
        transposed: false,
    },
    Layer {
        name: "d.c2 64->128 3x3",
        x: [64, 64, 16, 16],
        o: 128,
        k: 3,
        stride: 1,
        pad: 1,
        transposed: false,
    },
    Layer {
        name: "d.c5 256->512 3x3",
        x: [64, 256, 8, 8],
        o: 512,
        k: 3,
        stride: 1,
        pad: 1,
        transposed: false,
    },
    Layer {
        name: "g.dc1 512->256 4x4/2",
        x: [64, 512, 4, 4],
        o: 256,
        k: 4,
        stride: 2,
        pad: 1,
        transposed: true,
    },
    Layer {
        name: "g.dc3 128->64 4x4/2",
        x: [64, 128, 16, 16],
        o: 64,
        k: 4,
        stride: 2,
        pad: 1,
        transposed: true,
    },
];

/// Seconds for one forward and backward pass through `layer`, ours or candle's.
fn step(layer: &Layer, x: &Var, w: &Var, ours: bool) -> Result<f64> {
    let start = Instant::now();
    let y = match (layer.transposed, ours) {
        (false, true) => kernels::conv2d(x, w, None, layer.stride, (layer.pad, layer.pad))?,
        (false, false) => x.conv2d(w, layer.pad, layer.stride, 1, 1)?,
        (true, true) => kernels::conv_transpose2d(x, w, None, layer.stride, layer.pad)?,
        (true, false) => x.conv_transpose2d(w, layer.pad, 0, layer.stride, 1)?,
    };
    let grads = y.sqr()?.sum_all()?.backward()?;
    // Touch both gradients so nothing is left lazy.
    grads.get(x).map(|g| g.dims().len());
    grads.get(w).map(|g| g.dims().len());
    Ok(start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    kernels::threads::leave_cores_to_rayon();
    kernels::heap::keep_freed_memory();
    kernels::threads::run_in_pool(run)
}

fn run() -> Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let dev = Device::Cpu;
    for layer in LAYERS {
        let [n, c, h, w] = layer.x;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev)?)?;
        let wshape = if layer.transposed {
            (c, layer.o, layer.k, layer.k)
        } else {
            (layer.o, c, layer.k, layer.k)
        };
        let wt = Var::from_tensor(&(Tensor::randn(0f32, 1.0, wshape, &dev)? * 0.05)?)?;
        let mut ours = Vec::new();
        let mut candle = Vec::new();
        for round in 0..=rounds {
            let (a, b) = (step(layer, &x, &wt, true)?, step(layer, &x, &wt, false)?);
            if round > 0 {
                ours.push(a);
                candle.push(b);
            }
        }
        let (ours, candle) = (median(ours), median(candle));
        println!(
            "{{\"layer\":\"{}\",\"ours_ms\":{:.2},\"candle_ms\":{:.2},\"candle_over_ours\":{:.2}}}",
            layer.name,
            ours * 1e3,
            candle * 1e3,
            candle / ours
        );
    }
    Ok(())
}
