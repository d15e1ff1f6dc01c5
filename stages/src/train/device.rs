//! Device selection for `device: cpu | cuda | cuda:N | auto`.
//!
//! `auto` prefers CUDA when the binary was built with the `cuda` feature and a GPU answers, and
//! falls back to the CPU with a one-line notice (returned to the caller, which reports it as
//! progress: library code never prints). An explicit `cuda` that cannot be had is an error, never
//! a silent CPU run: a GPU job that quietly trains on CPU would look like a hang.

use candle_core::Device;

use super::TrainError;

/// The chosen device and, when `auto` fell back to the CPU, why.
pub fn select(spec: &str) -> Result<(Device, Option<String>), TrainError> {
    match spec {
        "cpu" => Ok((Device::Cpu, None)),
        "auto" => match cuda(0) {
            Ok(d) => Ok((d, None)),
            Err(why) => Ok((
                Device::Cpu,
                Some(format!("device auto: using the cpu ({why})")),
            )),
        },
        "cuda" => cuda(0)
            .map(|d| (d, None))
            .map_err(|why| TrainError::Device {
                spec: spec.into(),
                why,
            }),
        other => {
            let ordinal = other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| TrainError::Device {
                    spec: other.into(),
                    why: "expected `cpu`, `cuda`, `cuda:N` or `auto`".into(),
                })?;
            cuda(ordinal)
                .map(|d| (d, None))
                .map_err(|why| TrainError::Device {
                    spec: spec.into(),
                    why,
                })
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device, String> {
    // cudarc panics instead of returning an error when libcuda is missing; contain that.
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(format!("cuda device {ordinal} is unavailable: {e}")),
        Err(_) => Err("the cuda driver library could not be loaded".into()),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Result<Device, String> {
    Err("this binary was built without the `cuda` feature; rebuild with `--features cuda` or use `device: cpu`".into())
}
