//! The one resize the FID Inception input goes through: bilinear, PyTorch half-pixel convention.
//!
//! Exactly `torch.nn.functional.interpolate(x, size, mode="bilinear", align_corners=False,
//! antialias=False)` on float pixels in [0, 255], which is what pytorch-fid does, and for
//! upsampling (MNIST 28 -> 299) also what NVIDIA's `grid_sample` border resize does:
//! - source coordinate `s = (d + 0.5) * in/out - 0.5`, clamped below at 0 (the scale `in/out` in
//!   f32, as PyTorch computes it);
//! - neighbours `floor(s)` and `floor(s) + 1`, the upper one clamped to the last pixel;
//! - no antialiasing filter when shrinking, and no re-quantization to u8 afterwards.
//!
//! This choice enters every FID we report (metrics.md §4: resize filters change FID by whole
//! points), so it must never change silently: a different resize is a different metric version.
//! TF1-legacy bilinear (TTUR) and clean-fid's PIL bicubic are deliberately not offered.

/// The per-axis interpolation table: for each output index, the two source indices and the
/// weight of the upper one.
fn axis(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|d| {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

/// Resizes one u8 plane (`h` x `w`, row-major) to `out_h` x `out_w` f32 values in [0, 255],
/// appending them to `out`.
pub fn resize_plane(
    src: &[u8],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    out: &mut Vec<f32>,
) {
    let ys = axis(h, out_h);
    let xs = axis(w, out_w);
    out.reserve(out_h * out_w);
    for &(y0, y1, ly) in &ys {
        let r0 = &src[y0 * w..(y0 + 1) * w];
        let r1 = &src[y1 * w..(y1 + 1) * w];
        for &(x0, x1, lx) in &xs {
            // Same association as PyTorch's CPU kernel: lerp along x, then y.
            let top = f32::from(r0[x0]) * (1.0 - lx) + f32::from(r0[x1]) * lx;
            let bot = f32::from(r1[x0]) * (1.0 - lx) + f32::from(r1[x1]) * lx;
            out.push(top * (1.0 - ly) + bot * ly);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_sizes_match() {
        let src: Vec<u8> = (0..12).map(|i| i * 20).collect();
        let mut out = Vec::new();
        resize_plane(&src, 3, 4, 3, 4, &mut out);
        assert_eq!(out, src.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
    }

    #[test]
    fn upsampling_two_pixels_matches_half_pixel_rule() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 100.]]]]), (1, 4),
        //   mode="bilinear", align_corners=False) == [0, 25, 75, 100]
        let mut out = Vec::new();
        resize_plane(&[0, 100], 1, 2, 1, 4, &mut out);
        assert_eq!(out, vec![0.0, 25.0, 75.0, 100.0]);
    }
}
