//! The one image resize `prepare` and `fetch` offer (`resize: <side>`): an exact box
//! (area-average) downscale by an integer factor, rounded half to even.
//!
//! Why this and nothing else: STL-10 is stored at 96x96 and both papers train on it at 48x48
//! (sn_sr.md §3.1). Halving a side is the only resize the pipeline needs, and for an integer
//! factor `f` the area average is exact and unambiguous: every output pixel is the mean of an
//! `f x f` block of its own channel, so there is no filter, phase or antialiasing choice to get
//! wrong or to differ between libraries. The mean is computed in integers (the block sum) and
//! rounded to u8 half to even (`sum / f^2` with ties to the even value), which is what
//! `numpy.round` and `torch.round` do on the same mean, so a reference downscale
//! (`avg_pool2d(kernel f)` then `round`) gives the same bytes
//! (`scripts/fixtures/stl_resize.py`).
//!
//! What is refused, with both sizes named: a factor that is not an integer (96 -> 40), an
//! upscale (32 -> 48), side 0, and point data. `metrics::resize` (bilinear to 299 for the
//! Inception network, f32, no re-quantization) is deliberately not reused: it is a metric's
//! input convention, not a dataset transform, and it must keep its own exact definition.
//!
//! What must never change silently: the rounding rule and the block layout. They decide the
//! bytes of the prepared file, hence its hash and every downstream stage; change them only
//! together with the `prepare` and `fetch` builtin versions.

use super::prepared::{Dataset, Samples};

/// Why a downscale cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    /// `resize: 0`.
    #[error("`resize: 0` is not a size; give the output side in pixels (e.g. `resize: 48`)")]
    Zero,
    /// The target is larger than the source on some axis.
    #[error(
        "`resize: {side}` would upscale {height}x{width} images; only integer-factor \
         downscales are offered (drop `resize:` or give a side that divides {height})"
    )]
    Upscale {
        side: usize,
        height: usize,
        width: usize,
    },
    /// The target does not divide the source side.
    #[error(
        "`resize: {side}` does not divide {height}x{width} images by an integer factor; \
         only exact box downscales are offered (e.g. 96 -> 48 or 32)"
    )]
    NotInteger {
        side: usize,
        height: usize,
        width: usize,
    },
    /// The dataset holds points.
    #[error("`resize` applies to images, and `{0}` holds points")]
    Points(String),
}

/// `sum / n` rounded to the nearest integer, ties to the even one.
fn round_half_even(sum: u32, n: u32) -> u8 {
    let (q, r) = (sum / n, sum % n);
    let up = match (2 * r).cmp(&n) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => q % 2 == 1,
        std::cmp::Ordering::Less => false,
    };
    // The mean of u8 values is at most 255, and rounding cannot pass the largest value.
    (q + u32::from(up)) as u8
}

/// Box-downscales NCHW u8 `pixels` of `shape` to `side x side`. Returns the new pixels and shape.
pub fn box_downscale(
    pixels: &[u8],
    shape: [usize; 4],
    side: usize,
) -> Result<(Vec<u8>, [usize; 4]), ResizeError> {
    let [n, c, h, w] = shape;
    if side == 0 {
        return Err(ResizeError::Zero);
    }
    if side > h || side > w {
        return Err(ResizeError::Upscale {
            side,
            height: h,
            width: w,
        });
    }
    if !h.is_multiple_of(side) || !w.is_multiple_of(side) {
        return Err(ResizeError::NotInteger {
            side,
            height: h,
            width: w,
        });
    }
    let (fy, fx) = (h / side, w / side);
    // At most 255 * fy * fx: a u32 holds it for any factor an image of u32-addressable size has.
    let area = (fy * fx) as u32;
    let mut out = Vec::with_capacity(n * c * side * side);
    for plane in pixels.chunks_exact(h * w) {
        for oy in 0..side {
            for ox in 0..side {
                let mut sum = 0u32;
                for row in plane[oy * fy * w..(oy + 1) * fy * w].chunks_exact(w) {
                    sum += row[ox * fx..(ox + 1) * fx]
                        .iter()
                        .map(|&v| u32::from(v))
                        .sum::<u32>();
                }
                out.push(round_half_even(sum, area));
            }
        }
    }
    Ok((out, [n, c, side, side]))
}

/// Downscales every image of `ds` to `side x side` in place and records `resize` (the side) and
/// `resized_from` (`HxW`) in its metadata.
pub fn downscale_dataset(ds: &mut Dataset, side: usize) -> Result<(), ResizeError> {
    let Samples::Images { pixels, shape } = &mut ds.samples else {
        return Err(ResizeError::Points(ds.name.clone()));
    };
    let from = format!("{}x{}", shape[2], shape[3]);
    let (p, s) = box_downscale(pixels, *shape, side)?;
    *pixels = p;
    *shape = s;
    ds.metadata.insert("resize".to_string(), side.to_string());
    ds.metadata.insert("resized_from".to_string(), from);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_by_four_to_two_by_two_by_hand() {
        // Blocks (top-left, top-right, bottom-left, bottom-right) and their means:
        //   0 1 / 1 0     -> 0.5   -> 0   (tie, to even)
        //   1 2 / 2 1     -> 1.5   -> 2   (tie, to even)
        //   10 11 / 10 10 -> 10.25 -> 10
        //   255 255 / 255 254 -> 254.75 -> 255
        #[rustfmt::skip]
        let src = [
            0, 1,    1, 2,
            1, 0,    2, 1,
            10, 11,  255, 255,
            10, 10,  255, 254,
        ];
        let (out, shape) = box_downscale(&src, [1, 1, 4, 4], 2).unwrap();
        assert_eq!(shape, [1, 1, 2, 2]);
        assert_eq!(out, [0, 2, 10, 255]);
    }

    #[test]
    fn ties_round_to_even_and_other_means_to_nearest() {
        assert_eq!(round_half_even(2, 4), 0); // 0.5
        assert_eq!(round_half_even(6, 4), 2); // 1.5
        assert_eq!(round_half_even(10, 4), 2); // 2.5
        assert_eq!(round_half_even(14, 4), 4); // 3.5
        assert_eq!(round_half_even(5, 9), 1); // 0.56
        assert_eq!(round_half_even(4, 9), 0); // 0.44
        assert_eq!(round_half_even(255 * 9, 9), 255);
    }

    #[test]
    fn shape_follows_and_planes_stay_apart() {
        // Two images of two channels, 6x6 -> 2x2 (factor 3): each plane is a constant, so each
        // output plane is that constant, in the same order.
        let shape = [2, 2, 6, 6];
        let pixels: Vec<u8> = (0..4u8).flat_map(|p| vec![p * 50 + 7; 36]).collect();
        let (out, s) = box_downscale(&pixels, shape, 2).unwrap();
        assert_eq!(s, [2, 2, 2, 2]);
        let want: Vec<u8> = (0..4u8).flat_map(|p| vec![p * 50 + 7; 4]).collect();
        assert_eq!(out, want);
        // Factor 1 is the identity.
        assert_eq!(box_downscale(&pixels, shape, 6).unwrap(), (pixels, shape));
    }

    #[test]
    fn non_integer_factors_upscales_and_zero_are_refused_with_the_sizes() {
        let px = vec![0u8; 96 * 96 * 3];
        let err = box_downscale(&px, [1, 3, 96, 96], 40).unwrap_err();
        assert_eq!(
            err,
            ResizeError::NotInteger {
                side: 40,
                height: 96,
                width: 96
            }
        );
        assert!(err.to_string().contains("`resize: 40`") && err.to_string().contains("96x96"));
        let err = box_downscale(&px[..32 * 32 * 3], [1, 3, 32, 32], 48).unwrap_err();
        assert!(
            matches!(err, ResizeError::Upscale { side: 48, .. })
                && err.to_string().contains("32x32"),
            "{err}"
        );
        assert_eq!(
            box_downscale(&px, [1, 3, 96, 96], 0).unwrap_err(),
            ResizeError::Zero
        );
        // A non-square image whose sides are not both multiples.
        let err = box_downscale(&px[..96 * 64], [1, 1, 96, 64], 48).unwrap_err();
        assert!(err.to_string().contains("96x64"), "{err}");
    }

    #[test]
    fn datasets_record_the_resize_and_points_are_refused() {
        let mut ds = Dataset {
            name: "t".into(),
            samples: Samples::Images {
                pixels: vec![4, 4, 4, 4],
                shape: [1, 1, 2, 2],
            },
            labels: None,
            metadata: Default::default(),
        };
        downscale_dataset(&mut ds, 1).unwrap();
        assert_eq!(
            ds.samples,
            Samples::Images {
                pixels: vec![4],
                shape: [1, 1, 1, 1]
            }
        );
        assert_eq!(ds.metadata["resize"], "1");
        assert_eq!(ds.metadata["resized_from"], "2x2");
        let mut pts = Dataset {
            name: "ring".into(),
            samples: Samples::Points {
                coords: vec![0.0, 1.0],
                shape: [1, 2],
            },
            labels: None,
            metadata: Default::default(),
        };
        assert_eq!(
            downscale_dataset(&mut pts, 1).unwrap_err(),
            ResizeError::Points("ring".into())
        );
    }
}
