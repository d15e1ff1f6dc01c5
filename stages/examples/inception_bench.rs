//! Feature-extraction throughput of the FID Inception, for `scripts/bench/inception.sh`.
//!
//! Usage: `inception_bench WEIGHTS N BATCH` with WEIGHTS our converted safetensors. Feeds N
//! deterministic 3x32x32 u8 images (CIFAR-sized, so the resize to 299 is included, as in real
//! use) in batches of BATCH after one warm-up batch, and prints one JSON line; with the
//! `kernel-timers` feature also, on stderr, where the timed batches' kernel time went.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use stages::metrics::inception::InceptionNet;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // As `repro builtin` does (its thread and allocator settings are part of what is measured).
    kernels::threads::leave_cores_to_rayon();
    kernels::heap::keep_freed_memory();
    kernels::threads::run_in_pool(run)
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: inception_bench WEIGHTS N BATCH".into());
    }
    let weights = PathBuf::from(&args[1]);
    let n: usize = args[2].parse()?;
    let batch: usize = args[3].parse()?;
    let net = InceptionNet::load(&weights, &Device::Cpu)?;
    let shape = [n, 3, 32, 32];
    let pixels: Vec<u8> = (0..n * 3 * 32 * 32)
        .map(|k| ((k * 2654435761usize) >> 7) as u8)
        .collect();
    let warm = batch.min(n);
    net.features(
        &pixels[..warm * 3 * 32 * 32],
        [warm, 3, 32, 32],
        Some(batch),
        &|_, _| {},
    )?;
    kernels::timers::take();
    let t = Instant::now();
    let f = net.features(&pixels, shape, Some(batch), &|_, _| {})?;
    let secs = t.elapsed().as_secs_f64();
    kernels::timers::eprint_per("image", n);
    let checksum: f64 = f.pool3.iter().map(|&v| f64::from(v)).sum();
    println!(
        "{{\"impl\":\"repro-candle\",\"n\":{n},\"batch\":{batch},\"seconds\":{secs:.3},\"images_per_s\":{:.3},\"pool3_sum\":{checksum:.3}}}",
        n as f64 / secs
    );
    Ok(())
}
