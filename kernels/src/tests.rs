//! The kernels against candle's own ops (values and gradients), against central finite
//! differences, and against themselves under different thread counts.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{conv2d, conv2d_leaky_relu, conv_transpose2d, leaky_relu, relu};

fn random(seed: u64, shape: &[usize], dtype: DType) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Largest `|a - b| / (1 + |b|)`.
fn max_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max)
}

/// candle's conv2d, padding each axis on its own.
fn reference_conv(x: &Tensor, w: &Tensor, stride: usize, (ph, pw): (usize, usize)) -> Tensor {
    x.pad_with_zeros(2, ph, ph)
        .unwrap()
        .pad_with_zeros(3, pw, pw)
        .unwrap()
        .conv2d(w, 0, stride, 1, 1)
        .unwrap()
}

/// (x shape, w shape, stride, padding): odd sizes, stride 2, rectangular kernels with their
/// Inception padding, 1x1, and batches that do not divide into the chunk size. (Stride 2 with
/// `H != W` parity is left to the finite-difference test: candle's own conv2d backward fails
/// there, deriving both axes' output padding from the height.)
fn add_bias(y: &Tensor, b: &Tensor) -> Tensor {
    y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1)).unwrap())
        .unwrap()
}

/// (x shape, w shape, stride, (ph, pw)).
type ConvCase = ([usize; 4], [usize; 4], usize, (usize, usize));

const CONV_CASES: &[ConvCase] = &[
    ([3, 3, 9, 7], [5, 3, 3, 3], 1, (1, 1)),
    ([5, 4, 11, 11], [6, 4, 4, 4], 2, (1, 1)),
    ([2, 3, 13, 9], [4, 3, 1, 7], 1, (0, 3)),
    ([2, 3, 9, 13], [4, 3, 7, 1], 1, (3, 0)),
    ([3, 5, 8, 8], [7, 5, 1, 1], 1, (0, 0)),
    ([2, 3, 15, 15], [4, 3, 3, 3], 2, (0, 0)),
    ([17, 4, 4, 4], [8, 4, 3, 3], 1, (1, 1)),
    ([1, 2, 6, 6], [3, 2, 5, 3], 2, (2, 1)),
    ([9, 3, 5, 5], [4, 3, 1, 1], 2, (0, 0)),
    // Stride 3, a kernel wider than the stride, padding on one axis only.
    ([2, 3, 16, 13], [4, 3, 5, 4], 3, (2, 0)),
    // Outputs 8 and more wide, which im2col copies in runs rather than gathers: stride 2 (a
    // 4x4 kernel, as in the discriminators) and stride 1.
    ([2, 3, 18, 20], [4, 3, 4, 4], 2, (1, 1)),
    ([2, 2, 9, 12], [3, 2, 3, 3], 1, (1, 1)),
    // Wide strided outputs, whose data gradient adds tap runs into a row's phases: stride 3
    // with uneven padding, and a kernel narrower than the stride (one phase gets no tap).
    ([2, 3, 16, 29], [4, 3, 5, 4], 3, (2, 1)),
    ([1, 2, 7, 38], [3, 2, 3, 2], 3, (1, 0)),
    // Enough input channels that the weight gradient splits them across tasks, the last one
    // short (19 = 8 + 8 + 3 for a 3x3 kernel; 150 = 64 + 64 + 22 for a 1x1 one, one sample a
    // chunk).
    ([3, 19, 6, 6], [6, 19, 3, 3], 1, (1, 1)),
    ([2, 150, 3, 3], [4, 150, 1, 1], 1, (0, 0)),
];

#[test]
fn conv2d_forward_matches_candle() {
    for (i, &(xs, ws, stride, pad)) in CONV_CASES.iter().enumerate() {
        let x = random(10 + i as u64, &xs, DType::F32);
        let w = random(50 + i as u64, &ws, DType::F32);
        let ours = conv2d(&x, &w, None, stride, pad).unwrap();
        let theirs = reference_conv(&x, &w, stride, pad);
        let err = max_err(&ours, &theirs);
        assert!(err < 1e-5, "case {i}: error {err}");
        let b = random(70 + i as u64, &[ws[0]], DType::F32);
        let ours = conv2d(&x, &w, Some(&b), stride, pad).unwrap();
        let theirs = add_bias(&theirs, &b);
        let err = max_err(&ours, &theirs);
        assert!(err < 1e-5, "case {i} with bias: error {err}");
    }
}

/// The geometry of a test case.
fn case_geom(&(xs, ws, stride, pad): &ConvCase) -> super::im2col::ConvGeom {
    super::im2col::ConvGeom::new(
        (xs[0], xs[1], xs[2], xs[3]),
        (ws[0], ws[2], ws[3]),
        stride,
        pad,
    )
    .unwrap()
}

/// The entries of the column matrix of the input channels `channels`, in their defining order
/// (row `(c, ki, kj)`, then sample, then output position): `(row, column, the index of the
/// input element the entry reads, or None where it reads padding)`.
fn column_entries(
    g: &super::im2col::ConvGeom,
    channels: std::ops::Range<usize>,
) -> Vec<(usize, usize, Option<usize>)> {
    let mut entries = Vec::new();
    let mut row = 0;
    for c in channels {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                for s in 0..g.n {
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let iy = (oy * g.stride + ki) as isize - g.ph as isize;
                            let ix = (ox * g.stride + kj) as isize - g.pw as isize;
                            let inside =
                                (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                            let source = inside
                                .then(|| ((s * g.c + c) * g.h + iy as usize) * g.w + ix as usize);
                            entries.push((row, s * g.p() + oy * g.ow + ox, source));
                        }
                    }
                }
                row += 1;
            }
        }
    }
    entries
}

#[test]
fn im2col_matches_a_direct_gather() {
    use super::im2col::im2col_channels;
    for case in CONV_CASES {
        let g = case_geom(case);
        let x: Vec<f32> = (0..g.n * g.in_len()).map(|i| i as f32).collect();
        // Every channel range the weight gradient may ask for: all, a prefix, a suffix.
        for channels in [0..g.c, 0..g.c.div_ceil(2), g.c / 2..g.c] {
            let (k, cols) = (channels.len() * g.kh * g.kw, g.n * g.p());
            let mut ours = vec![f32::NAN; k * cols];
            im2col_channels(&g, &x, channels.clone(), &mut ours);
            for (row, column, source) in column_entries(&g, channels) {
                let want = source.map_or(0.0, |i| x[i]);
                assert_eq!(
                    ours[row * cols + column],
                    want,
                    "{g:?} row {row} column {column}"
                );
            }
        }
    }
}

/// The convolutions of the SN paper's standard CNN D at width `ch` (32x32 input), `n` samples.
fn standard_cnn_d(ch: usize, n: usize) -> Vec<ConvCase> {
    [
        (3, ch, 3, 1, 32),
        (ch, ch, 4, 2, 32),
        (ch, 2 * ch, 3, 1, 16),
        (2 * ch, 2 * ch, 4, 2, 16),
        (2 * ch, 4 * ch, 3, 1, 8),
        (4 * ch, 4 * ch, 4, 2, 8),
        (4 * ch, 8 * ch, 3, 1, 4),
    ]
    .into_iter()
    .map(|(c, o, k, s, hw)| ([n, c, hw, hw], [o, c, k, k], s, (1, 1)))
    .collect()
}

/// `len` values uniform in [-1, 1) as f32.
fn random_f32(seed: u64, len: usize) -> Vec<f32> {
    values(&random(seed, &[len], DType::F32))
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// The bit patterns of `v`, for bit-for-bit comparisons.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn direct_forward_is_the_gemm_path_bit_for_bit() {
    use super::conv::{forward_direct, forward_gemm};
    // The standard CNN's D at widths 4, 16 and 64 (32x32 input, batch 8: two chunks), its G's
    // last conv, and geometries off the models' path: uneven padding, stride 2 without padding,
    // 20 and 40 output channels (partly filled registers), and K = 512, the largest served.
    let mut cases: Vec<ConvCase> = [4, 16, 64].map(|ch| standard_cnn_d(ch, 8)).concat();
    cases.extend([
        ([8, 16, 32, 32], [3, 16, 3, 3], 1, (1, 1)),
        ([2, 3, 9, 16], [5, 3, 3, 5], 1, (1, 2)),
        ([3, 4, 17, 17], [20, 4, 3, 3], 2, (0, 0)),
        ([2, 6, 12, 12], [40, 6, 3, 3], 1, (1, 1)),
        ([2, 32, 8, 8], [16, 32, 4, 4], 2, (1, 1)),
    ]);
    let avx512 = std::is_x86_feature_detected!("avx512f");
    let mut served = 0;
    for (i, case) in cases.iter().enumerate() {
        let g = case_geom(case);
        let x = random_f32(300 + i as u64, g.n * g.in_len());
        let w = random_f32(400 + i as u64, g.o * g.k());
        let b = random_f32(500 + i as u64, g.o);
        for bias in [None, Some(&b[..])] {
            let mut direct = vec![f32::NAN; g.n * g.out_len()];
            if !forward_direct(&g, &x, &w, bias, &mut direct) {
                assert!(
                    !avx512 || g.k() > 512 || g.o > 64 || !g.ow.is_multiple_of(4),
                    "case {i}: {g:?} should be served"
                );
                continue;
            }
            served += 1;
            let mut gemm = vec![f32::NAN; g.n * g.out_len()];
            forward_gemm(&g, &x, &w, bias, &mut gemm);
            assert_eq!(
                bits(&direct),
                bits(&gemm),
                "case {i} (bias {}): {g:?}",
                bias.is_some()
            );
        }
    }
    if avx512 {
        assert!(served >= 30, "only {served} cases ran the direct kernel");
    } else {
        eprintln!("no AVX-512 on this CPU: the direct kernel never runs, nothing to compare");
    }
}

#[test]
fn direct_backward_data_is_gemm_and_col2im_bit_for_bit() {
    use super::conv::{backward_data_direct, backward_data_gemm};
    // The standard CNN's D at widths 4, 16 and 64 and its G's transposed convolutions at width
    // 16 (as the convolutions they are the adjoints of), then geometries off the models' path:
    // odd sizes whose edge positions take the position-by-position path, uneven padding,
    // stride 2 without padding, 20 and 40 input channels (partly filled registers).
    let mut cases: Vec<ConvCase> = [4, 16, 64].map(|ch| standard_cnn_d(ch, 8)).concat();
    cases.extend([
        ([8, 64, 8, 8], [128, 64, 4, 4], 2, (1, 1)),
        ([8, 32, 16, 16], [64, 32, 4, 4], 2, (1, 1)),
        ([8, 16, 32, 32], [32, 16, 4, 4], 2, (1, 1)),
        ([2, 5, 13, 11], [6, 5, 3, 3], 1, (1, 1)),
        ([2, 3, 9, 16], [5, 3, 3, 5], 1, (1, 2)),
        ([3, 4, 17, 17], [7, 4, 3, 3], 2, (0, 0)),
        ([2, 20, 15, 9], [9, 20, 4, 4], 2, (1, 1)),
        ([2, 40, 12, 12], [6, 40, 3, 3], 1, (1, 1)),
        ([2, 3, 16, 13], [4, 3, 5, 4], 2, (2, 0)),
    ]);
    let avx512 = std::is_x86_feature_detected!("avx512f");
    let mut served = 0;
    for (i, case) in cases.iter().enumerate() {
        let g = case_geom(case);
        let dy = random_f32(600 + i as u64, g.n * g.out_len());
        let w = random_f32(700 + i as u64, g.o * g.k());
        let b = random_f32(800 + i as u64, g.c);
        for bias in [None, Some(&b[..])] {
            let mut direct = vec![0.0; g.n * g.in_len()];
            if !backward_data_direct(&g, &dy, &w, bias, &mut direct) {
                assert!(
                    !avx512 || !(8..=32).contains(&g.c),
                    "case {i}: {g:?} should be served"
                );
                continue;
            }
            served += 1;
            let mut gemm = vec![0.0; g.n * g.in_len()];
            backward_data_gemm(&g, &dy, &w, bias, &mut gemm);
            assert_eq!(
                bits(&direct),
                bits(&gemm),
                "case {i} (bias {}): {g:?}",
                bias.is_some()
            );
        }
    }
    if avx512 {
        assert!(served >= 20, "only {served} cases ran the direct kernel");
    } else {
        eprintln!("no AVX-512 on this CPU: the direct kernel never runs, nothing to compare");
    }
}

#[test]
fn direct_backward_weight_is_im2col_and_gemm_bit_for_bit() {
    use super::conv::backward_weight_by;
    // The standard CNN's D at widths 16 and 64 and D 32's 4x4 layers at batch 64 (8 chunks of
    // 8; 2048 columns a chunk at 16x16 outputs, so four blocks of 512), a batch whose last
    // chunk is short, and the first layer's 3 channels (one task, groups of chunks).
    let mut cases: Vec<ConvCase> = [16, 32, 64].map(|ch| standard_cnn_d(ch, 64)).concat();
    cases.extend([
        ([13, 16, 16, 16], [16, 16, 4, 4], 2, (1, 1)),
        ([5, 3, 12, 12], [16, 3, 3, 3], 1, (0, 0)),
        ([9, 8, 10, 10], [32, 8, 4, 4], 1, (2, 1)),
    ]);
    let avx512 = std::is_x86_feature_detected!("avx512f");
    let mut served = 0;
    for (i, case) in cases.iter().enumerate() {
        let g = case_geom(case);
        let x = random_f32(900 + i as u64, g.n * g.in_len());
        let dy = random_f32(1000 + i as u64, g.n * g.out_len());
        let direct = backward_weight_by(&g, &x, &dy, true);
        let gemm = backward_weight_by(&g, &x, &dy, false);
        assert_eq!(bits(&direct), bits(&gemm), "case {i}: {g:?}");
        if super::direct::serves_backward_weight(&g, 64.min(g.k())) {
            served += 1;
        }
    }
    if avx512 {
        assert!(served >= 8, "only {served} cases ran the direct kernel");
    } else {
        eprintln!("no AVX-512 on this CPU: the direct kernel never runs, nothing to compare");
    }
}

#[test]
fn col2im_is_the_direct_scatter_bit_for_bit() {
    use super::im2col::col2im;
    // Also a geometry candle's own gradient cannot check (its transposed convolution has no
    // output padding): taps that never reach the last input columns.
    let unreached: ConvCase = ([1, 2, 7, 40], [3, 2, 3, 2], 3, (1, 0));
    for (i, case) in CONV_CASES.iter().chain([&unreached]).enumerate() {
        let g = case_geom(case);
        let cols = g.n * g.p();
        let col = random_f32(90 + i as u64, g.k() * cols);
        let start = random_f32(120 + i as u64, g.n * g.in_len());
        let mut ours = start.clone();
        col2im(&g, &col, &mut ours);
        // The scatter in the entries' defining order.
        let mut want = start;
        for (row, column, source) in column_entries(&g, 0..g.c) {
            if let Some(at) = source {
                want[at] += col[row * cols + column];
            }
        }
        assert_eq!(bits(&ours), bits(&want), "case {i}: {g:?}");
    }
}

/// The gradients of `sum(f(x, w, b) * r)` for a fixed random `r`.
fn grads(
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    seed: u64,
) -> [Tensor; 3] {
    let vars = [x, w, b].map(|t| Var::from_tensor(t).unwrap());
    let y = f(
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        vars[2].as_tensor(),
    );
    let r = random(seed, y.dims(), y.dtype());
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    // An operand `f` ignores gets a zero gradient.
    vars.map(|v| match g.get(v.as_tensor()) {
        Some(d) => d.clone(),
        None => v.as_tensor().zeros_like().unwrap(),
    })
}

fn assert_grads_close(ours: &[Tensor; 3], theirs: &[Tensor; 3], tol: f64, what: &str) {
    for (name, (a, b)) in ["dx", "dw", "db"].iter().zip(ours.iter().zip(theirs)) {
        let err = max_err(a, b);
        assert!(err < tol, "{what}: {name} error {err}");
    }
}

#[test]
fn conv2d_gradients_match_candle() {
    for (i, &(xs, ws, stride, pad)) in CONV_CASES.iter().enumerate() {
        let x = random(10 + i as u64, &xs, DType::F32);
        let w = random(50 + i as u64, &ws, DType::F32);
        let b = random(70 + i as u64, &[ws[0]], DType::F32);
        let ours = grads(
            |x, w, b| conv2d(x, w, Some(b), stride, pad).unwrap(),
            &x,
            &w,
            &b,
            90,
        );
        let theirs = grads(
            |x, w, b| add_bias(&reference_conv(x, w, stride, pad), b),
            &x,
            &w,
            &b,
            90,
        );
        assert_grads_close(&ours, &theirs, 1e-5, &format!("case {i}"));
        // Without a bias the same op runs as a two-operand op; its gradients must agree.
        let [dx, dw, _] = &ours;
        let plain = grads(
            |x, w, _| conv2d(x, w, None, stride, pad).unwrap(),
            &x,
            &w,
            &b,
            90,
        );
        assert_eq!(values(dx), values(&plain[0]), "case {i}: dx without bias");
        assert_eq!(values(dw), values(&plain[1]), "case {i}: dw without bias");
    }
}

/// (x shape, w shape, stride, padding) for the transposed convolution, including the
/// generators' `k4 s2 p1`.
const CONVT_CASES: &[([usize; 4], [usize; 4], usize, usize)] = &[
    ([3, 6, 4, 4], [6, 5, 4, 4], 2, 1),
    // 20 output channels: the weight gradient's channel tasks (4 + 4 + ... for a 4x4 kernel).
    ([2, 3, 4, 4], [3, 20, 4, 4], 2, 1),
    ([2, 3, 5, 3], [3, 4, 3, 3], 1, 1),
    ([11, 4, 3, 5], [4, 2, 3, 2], 2, 0),
    ([1, 2, 4, 4], [2, 3, 5, 5], 3, 2),
];

#[test]
fn conv_transpose2d_forward_and_gradients_match_candle() {
    let reference =
        |x: &Tensor, w: &Tensor, stride, pad| x.conv_transpose2d(w, pad, 0, stride, 1).unwrap();
    for (i, &(xs, ws, stride, pad)) in CONVT_CASES.iter().enumerate() {
        let x = random(20 + i as u64, &xs, DType::F32);
        let w = random(60 + i as u64, &ws, DType::F32);
        let b = random(80 + i as u64, &[ws[1]], DType::F32);
        let ours = conv_transpose2d(&x, &w, None, stride, pad).unwrap();
        let err = max_err(&ours, &reference(&x, &w, stride, pad));
        assert!(err < 1e-5, "case {i}: forward error {err}");
        let ours = conv_transpose2d(&x, &w, Some(&b), stride, pad).unwrap();
        let err = max_err(&ours, &add_bias(&reference(&x, &w, stride, pad), &b));
        assert!(err < 1e-5, "case {i}: forward with bias error {err}");
        let ours = grads(
            |x, w, b| conv_transpose2d(x, w, Some(b), stride, pad).unwrap(),
            &x,
            &w,
            &b,
            91,
        );
        let theirs = grads(
            |x, w, b| add_bias(&reference(x, w, stride, pad), b),
            &x,
            &w,
            &b,
            91,
        );
        assert_grads_close(&ours, &theirs, 1e-5, &format!("case {i}"));
    }
}

/// Central differences of `sum(f(x, w, b) * r)` in every element of `x`, `w` and `b`, in f64,
/// against the backprop gradients.
fn check_finite_differences(
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) {
    let analytic = grads(&f, x, w, b, 92);
    let r = random(92, f(x, w, b).dims(), DType::F64);
    let loss = |args: &[Tensor]| -> f64 {
        (f(&args[0], &args[1], &args[2]) * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let eps = 1e-5;
    let args = [x.clone(), w.clone(), b.clone()];
    for (which, g) in analytic.iter().enumerate() {
        let base = values(&args[which]);
        let g = values(g);
        for j in 0..base.len() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[j] += d;
                let mut moved = args.clone();
                moved[which] = Tensor::from_vec(v, args[which].dims(), &Device::Cpu).unwrap();
                loss(&moved)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let err = (numeric - g[j]).abs() / (1.0 + g[j].abs());
            assert!(
                err < 1e-7,
                "operand {which}[{j}]: numeric {numeric}, backprop {}",
                g[j]
            );
        }
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let x = random(1, &[2, 2, 5, 4], DType::F64);
    let w = random(2, &[3, 2, 3, 2], DType::F64);
    let b = random(8, &[3], DType::F64);
    check_finite_differences(
        |x, w, b| conv2d(x, w, Some(b), 2, (1, 0)).unwrap(),
        &x,
        &w,
        &b,
    );
}

#[test]
fn conv_transpose2d_gradients_match_finite_differences() {
    let x = random(3, &[2, 3, 3, 2], DType::F64);
    let w = random(4, &[3, 2, 4, 4], DType::F64);
    let b = random(9, &[2], DType::F64);
    check_finite_differences(
        |x, w, b| conv_transpose2d(x, w, Some(b), 2, 1).unwrap(),
        &x,
        &w,
        &b,
    );
}

#[test]
fn leaky_relu_forward_gradient_and_finite_differences() {
    let x = random(5, &[3, 4, 5, 6], DType::F32);
    let y = leaky_relu(&x, 0.1).unwrap();
    for (a, b) in values(&x).iter().zip(values(&y)) {
        let want = if *a > 0.0 {
            *a
        } else {
            (*a as f32 * 0.1f32) as f64
        };
        assert_eq!(b, want, "leaky relu of {a}");
    }
    // Gradient against candle-ops leaky ReLU (f32) and central differences (f64).
    let r = random(6, x.dims(), DType::F32);
    let xv = Var::from_tensor(&x).unwrap();
    let g = (leaky_relu(xv.as_tensor(), 0.1).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let ours = g.get(xv.as_tensor()).unwrap();
    let reference = (xv.as_tensor().relu().unwrap().affine(0.9, 0.0).unwrap()
        + xv.as_tensor().affine(0.1, 0.0).unwrap())
    .unwrap();
    let g = (reference * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let err = max_err(ours, g.get(xv.as_tensor()).unwrap());
    assert!(err < 1e-6, "gradient error {err}");

    let x64 = random(7, &[2, 3, 4], DType::F64);
    // The extra operands enter linearly so the shared checker applies.
    let (w, b) = (random(8, &[1], DType::F64), random(9, &[1], DType::F64));
    check_finite_differences(
        |x, w, b| {
            let shift = (w + b).unwrap().sum_all().unwrap();
            leaky_relu(x, 0.2).unwrap().broadcast_add(&shift).unwrap()
        },
        &x64,
        &w,
        &b,
    );
}

#[test]
fn relu_is_max_with_zero_and_passes_no_gradient_at_or_below_zero() {
    // Exact zeros and negative zeros among the inputs, where the conventions differ.
    let mut v = values(&random(10, &[2, 3, 4, 5], DType::F64));
    v[0] = 0.0;
    v[1] = -0.0;
    let x = Tensor::from_vec(v, (2, 3, 4, 5), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let y = relu(&x).unwrap();
    let bits = |t: &Tensor| bits(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    // Bit for bit candle's relu, so a forward pass is unchanged by the fast op.
    assert_eq!(bits(&y), bits(&x.relu().unwrap()));
    let r = random(11, x.dims(), DType::F32);
    let xv = Var::from_tensor(&x).unwrap();
    let g = (relu(xv.as_tensor()).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let dx = values(g.get(xv.as_tensor()).unwrap());
    for ((dx, x), r) in dx.iter().zip(values(&x)).zip(values(&r)) {
        let want = if x > 0.0 { r } else { 0.0 };
        assert_eq!(*dx, want, "d relu at {x}");
    }
}

#[test]
fn fused_conv_activation_is_the_two_ops_bit_for_bit() {
    let x = Var::from_tensor(&random(40, &[5, 3, 9, 9], DType::F32)).unwrap();
    let w = Var::from_tensor(&random(41, &[16, 3, 4, 4], DType::F32)).unwrap();
    let b = Var::from_tensor(&random(42, &[16], DType::F32)).unwrap();
    let r = random(43, &[5, 16, 4, 4], DType::F32);
    let bits = |t: &Tensor| bits(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    for slope in [0.1, 0.0] {
        let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
        let fused = conv2d_leaky_relu(xt, wt, Some(bt), 2, (1, 1), slope).unwrap();
        let apart = leaky_relu(&conv2d(xt, wt, Some(bt), 2, (1, 1)).unwrap(), slope).unwrap();
        assert_eq!(bits(&fused), bits(&apart), "values, slope {slope}");
        let g1 = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (apart * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", xt), ("w", wt), ("b", bt)] {
            assert_eq!(
                bits(g1.get(v).unwrap()),
                bits(g2.get(v).unwrap()),
                "d{name}, slope {slope}"
            );
        }
    }
    assert!(conv2d_leaky_relu(x.as_tensor(), w.as_tensor(), None, 1, (0, 0), -0.1).is_err());
    let x64 = random(44, &[2, 3, 5, 5], DType::F64);
    let w64 = random(45, &[4, 3, 3, 3], DType::F64);
    let b64 = random(46, &[4], DType::F64);
    check_finite_differences(
        |x, w, b| conv2d_leaky_relu(x, w, Some(b), 1, (1, 1), 0.2).unwrap(),
        &x64,
        &w64,
        &b64,
    );
}

/// Forward and both gradients of a discriminator-like stack, as raw bits.
fn bits_of_a_training_pass() -> Vec<u32> {
    let x = random(30, &[13, 3, 12, 12], DType::F32);
    let w1 = Var::from_tensor(&random(31, &[8, 3, 3, 3], DType::F32)).unwrap();
    let b1 = Var::from_tensor(&random(35, &[8], DType::F32)).unwrap();
    let w2 = Var::from_tensor(&random(32, &[16, 8, 4, 4], DType::F32)).unwrap();
    let wt = Var::from_tensor(&random(33, &[16, 4, 4, 4], DType::F32)).unwrap();
    let h = leaky_relu(
        &conv2d(&x, w1.as_tensor(), Some(b1.as_tensor()), 1, (1, 1)).unwrap(),
        0.1,
    )
    .unwrap();
    let h = conv2d(&h, w2.as_tensor(), None, 2, (1, 1)).unwrap();
    let y = conv_transpose2d(&h, wt.as_tensor(), None, 2, 1).unwrap();
    let gamma = Var::from_tensor(&random(36, &[4], DType::F32)).unwrap();
    let beta = Var::from_tensor(&random(37, &[4], DType::F32)).unwrap();
    let y = super::batch_norm_train(&y, gamma.as_tensor(), beta.as_tensor(), 2e-5)
        .unwrap()
        .0;
    let r = random(34, y.dims(), DType::F32);
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut bits = Vec::new();
    for t in [
        &y,
        g.get(w1.as_tensor()).unwrap(),
        g.get(b1.as_tensor()).unwrap(),
        g.get(w2.as_tensor()).unwrap(),
        g.get(wt.as_tensor()).unwrap(),
        g.get(gamma.as_tensor()).unwrap(),
        g.get(beta.as_tensor()).unwrap(),
    ] {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        bits.extend(v.iter().map(|f| f.to_bits()));
    }
    bits
}

#[test]
fn results_are_bit_identical_across_runs_and_thread_counts() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(bits_of_a_training_pass);
    let three = pool(3).install(bits_of_a_training_pass);
    let again = pool(3).install(bits_of_a_training_pass);
    assert_eq!(one, three, "1 vs 3 threads");
    assert_eq!(three, again, "two runs with 3 threads");
}

#[test]
fn other_dtypes_fall_back_to_candle() {
    let x = random(40, &[2, 3, 6, 6], DType::F16);
    let w = random(41, &[4, 3, 3, 3], DType::F16);
    let ours = conv2d(&x, &w, None, 1, (1, 1)).unwrap();
    assert_eq!(ours.dtype(), DType::F16);
    let theirs = x.conv2d(&w, 1, 1, 1, 1).unwrap();
    assert_eq!(values(&ours), values(&theirs));
}

/// Training-mode batch norm from candle ops (what `BatchNorm2d` computed before the kernel).
fn reference_batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Tensor {
    let c = x.dim(1).unwrap();
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let centered = x.broadcast_sub(&mean).unwrap();
    let var = centered.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let inv = var
        .affine(1.0, eps)
        .unwrap()
        .sqrt()
        .unwrap()
        .recip()
        .unwrap();
    centered
        .broadcast_mul(&inv)
        .unwrap()
        .broadcast_mul(&gamma.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
}

#[test]
fn batch_norm_matches_candle_ops_and_finite_differences() {
    use super::batch_norm_train;
    let x = (random(100, &[5, 4, 3, 7], DType::F32) * 3.0)
        .unwrap()
        .affine(1.0, 0.5)
        .unwrap();
    let gamma = random(101, &[4], DType::F32);
    let beta = random(102, &[4], DType::F32);
    let (y, mean, var) = batch_norm_train(&x, &gamma, &beta, 2e-5).unwrap();
    let err = max_err(&y, &reference_batch_norm(&x, &gamma, &beta, 2e-5));
    assert!(err < 1e-5, "forward error {err}");
    let want_mean = x.mean_keepdim((0, 2, 3)).unwrap().flatten_all().unwrap();
    assert!(max_err(&mean, &want_mean) < 1e-6);
    let want_var = x
        .broadcast_sub(&x.mean_keepdim((0, 2, 3)).unwrap())
        .unwrap()
        .sqr()
        .unwrap()
        .mean_keepdim((0, 2, 3))
        .unwrap()
        .flatten_all()
        .unwrap();
    assert!(max_err(&var, &want_var) < 1e-5);

    let ours = grads(
        |x, g, b| batch_norm_train(x, g, b, 2e-5).unwrap().0,
        &x,
        &gamma,
        &beta,
        103,
    );
    let theirs = grads(
        |x, g, b| reference_batch_norm(x, g, b, 2e-5),
        &x,
        &gamma,
        &beta,
        103,
    );
    assert_grads_close(&ours, &theirs, 1e-4, "batch norm");

    let [x, gamma, beta] = [&x, &gamma, &beta].map(|t| t.to_dtype(DType::F64).unwrap());
    let x = x
        .narrow(0, 0, 3)
        .unwrap()
        .narrow(3, 0, 3)
        .unwrap()
        .contiguous()
        .unwrap();
    check_finite_differences(
        |x, g, b| batch_norm_train(x, g, b, 2e-5).unwrap().0,
        &x,
        &gamma,
        &beta,
    );
}

#[test]
fn transpose_columns_matches_an_element_wise_transpose() {
    use super::conv::transpose_columns;
    // Whole 8 x 8 blocks, ragged edges on either axis, and column ranges not at 0.
    for (rows, cols) in [(1, 1), (3, 5), (8, 8), (13, 21), (16, 40), (64, 9)] {
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        for (c0, n) in [(0, cols), (cols / 3, cols - cols / 3), (cols - 1, 1)] {
            let mut dst = vec![f32::NAN; n * rows];
            transpose_columns(&src, (rows, cols), c0, &mut dst);
            for j in 0..n {
                for r in 0..rows {
                    assert_eq!(
                        dst[j * rows + r],
                        src[r * cols + c0 + j],
                        "{rows}x{cols}, columns {c0}..{}: ({r}, {j})",
                        c0 + n
                    );
                }
            }
        }
    }
}

#[test]
fn max_pool2_is_the_candle_ops_bit_for_bit() {
    // Few distinct values, so windows tie (at one level and at both), signed zeros among them;
    // even and odd sizes (an odd last row or column is dropped).
    for (i, &[n, c, h, w]) in [[2, 3, 6, 8], [1, 2, 11, 11], [3, 1, 5, 4]]
        .iter()
        .enumerate()
    {
        let mut rng = ChaCha8Rng::seed_from_u64(300 + i as u64);
        let len = n * c * h * w;
        let xv: Vec<f32> = (0..len)
            .map(|_| [-1.0, -0.0, 0.0, 1.0, 2.0][rng.random_range(0..5)])
            .collect();
        let x = Tensor::from_vec(xv, (n, c, h, w), &Device::Cpu).unwrap();
        let r = random(400 + i as u64, &[n, c, h / 2, w / 2], DType::F32);
        let run = |f: &dyn Fn(&Tensor) -> Tensor| {
            let var = Var::from_tensor(&x).unwrap();
            let y = f(var.as_tensor());
            let grad = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                v.iter().map(|f| f.to_bits()).collect()
            };
            (bits(&y), bits(grad.get(var.as_tensor()).unwrap()))
        };
        let ours = run(&|t| super::max_pool2(t).unwrap());
        let theirs = run(&|t| super::max_pool2_candle(t).unwrap());
        assert_eq!(ours.0, theirs.0, "case {i}: values");
        assert_eq!(ours.1, theirs.1, "case {i}: gradients");
    }
}

#[test]
fn pool3x3_is_the_candle_ops_bit_for_bit() {
    // Few distinct values, so windows tie, signed zeros among them; odd and even sizes, a
    // plane of one row or column (the padded pools), and an Inception size.
    for (i, &[n, c, h, w]) in [
        [2, 3, 7, 9],
        [1, 2, 8, 8],
        [2, 1, 1, 5],
        [1, 1, 4, 1],
        [1, 4, 17, 17],
    ]
    .iter()
    .enumerate()
    {
        let mut rng = ChaCha8Rng::seed_from_u64(500 + i as u64);
        let xv: Vec<f32> = (0..n * c * h * w)
            .map(|_| [-1.5, -0.0, 0.0, 0.25, 1.0, 3.0][rng.random_range(0..6)])
            .collect();
        let x = Tensor::from_vec(xv, (n, c, h, w), &Device::Cpu).unwrap();
        let bits = |t: Tensor| -> (Vec<usize>, Vec<u32>) {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (t.dims().to_vec(), v.iter().map(|f| f.to_bits()).collect())
        };
        assert_eq!(
            bits(super::max_pool3x3_same(&x).unwrap()),
            bits(super::max_pool3x3_same_candle(&x).unwrap()),
            "case {i}: max, same"
        );
        assert_eq!(
            bits(super::avg_pool3x3_same_exclude_pad(&x).unwrap()),
            bits(super::avg_pool3x3_same_exclude_pad_candle(&x).unwrap()),
            "case {i}: average, same"
        );
        if h >= 3 && w >= 3 {
            assert_eq!(
                bits(super::max_pool3x3_stride2(&x).unwrap()),
                bits(x.max_pool2d_with_stride(3, 2).unwrap()),
                "case {i}: max, stride 2"
            );
        }
    }
}

#[test]
fn pool3x3_padding_semantics() {
    for fast in [true, false] {
        type Pool = fn(&Tensor) -> candle_core::Result<Tensor>;
        let (avg, max): (Pool, Pool) = if fast {
            (super::avg_pool3x3_same_exclude_pad, super::max_pool3x3_same)
        } else {
            (
                super::avg_pool3x3_same_exclude_pad_candle,
                super::max_pool3x3_same_candle,
            )
        };
        let values = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // The average counts only real pixels: windows of ones average to one, whatever their
        // count, and a 2x2 plane's every window is the mean of its four values, not their sum / 9.
        let ones = Tensor::ones((1, 1, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let v = values(avg(&ones).unwrap());
        assert!(v.iter().all(|&a| (a - 1.0).abs() < 1e-6), "{v:?}");
        let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).unwrap();
        assert_eq!(values(avg(&x).unwrap()), vec![2.5; 4], "fast {fast}");
        // The max ignores the padding even where every real value is negative.
        let x = Tensor::new(&[[[[-1f32, -2.], [-3., -4.]]]], &Device::Cpu).unwrap();
        assert_eq!(values(max(&x).unwrap()), vec![-1.0; 4], "fast {fast}");
    }
}

/// `(w / (u^T m v)) . r` summed, through `divide` (`m`: `w` as an `O x K` matrix); `w`'s
/// value and gradient as f64s.
fn spectral_division(
    divide: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    shape: &[usize],
    dtype: DType,
) -> (Vec<f64>, Vec<f64>) {
    let (o, k) = (shape[0], shape[1..].iter().product());
    let w = Var::from_tensor(&random(1, shape, dtype)).unwrap();
    let (u, v) = (random(2, &[o, 1], dtype), random(3, &[k, 1], dtype));
    let r = random(4, shape, dtype);
    let y = divide(w.as_tensor(), &u, &v);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    (values(&y), values(grads.get(w.as_tensor()).unwrap()))
}

#[test]
fn spectral_divide_is_the_candle_expression_bit_for_bit() {
    let candle = |w: &Tensor, u: &Tensor, v: &Tensor| {
        let m = w.reshape((w.dim(0).unwrap(), ())).unwrap();
        let sigma = u.t().unwrap().matmul(&m).unwrap().matmul(v).unwrap();
        m.broadcast_div(&sigma).unwrap().reshape(w.shape()).unwrap()
    };
    let fused = |w: &Tensor, u: &Tensor, v: &Tensor| super::spectral_divide(w, u, v).unwrap();
    // A linear layer's single row and single column, conv weights, and enough rows and columns
    // that the passes split into several tasks, the last one short.
    let shapes: [&[usize]; 5] = [
        &[1, 300],
        &[7, 1],
        &[64, 3, 3, 3],
        &[130, 128, 3, 3],
        &[256, 256, 4, 4],
    ];
    for shape in shapes {
        for dtype in [DType::F32, DType::F64] {
            let (ours, theirs) = (
                spectral_division(fused, shape, dtype),
                spectral_division(candle, shape, dtype),
            );
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours.0), bits(&theirs.0), "{shape:?} {dtype:?}: value");
            assert_eq!(
                bits(&ours.1),
                bits(&theirs.1),
                "{shape:?} {dtype:?}: gradient"
            );
        }
    }
}
