//! The FID Inception-v3: TF's `inception-2015-12-05` graph, as pytorch-fid and NVIDIA port it.
//!
//! This is *not* torchvision's Inception (metrics.md §1); the quirks that make FIDs comparable
//! with the literature are reproduced on purpose and must never be "fixed":
//! - batch norm has no gamma (unless the weights carry one) and eps = 1e-3; it is folded into
//!   the conv weights and a bias at load time (f64 arithmetic, then f32);
//! - the 3x3/s1/p1 average pools of the pool branches exclude the padding from the count
//!   (TF semantics, `count_include_pad=False`: 9 inside, 6 on edges, 4 in corners); candle has
//!   no padded pool, so it is `kernels::avg_pool3x3_same_exclude_pad`;
//! - `Mixed_7c`'s pool branch max-pools (3x3/s1/p1, padding -inf) instead of averaging;
//! - the 1x7/7x1 and 1x3/3x1 convolutions pad asymmetrically (see `inception_weights::UNITS`);
//! - the features are "pool3": the spatial mean of `Mixed_7c`'s 8x8x2048 output.
//!
//! Input pipeline, fixed for every number we report: u8 NCHW pixels, C = 1 (replicated to 3
//! channels, the MNIST convention) or 3, any H x W, resized to 299x299 with PyTorch-style
//! half-pixel bilinear in f32 (`resize`), then scaled as `(x - 128) / 128`.
//!
//! Logits (for IS) are `pool3 · fc.weightᵀ` **without the bias**, as the original improved-gan
//! IS code reads `softmax/logits/MatMul` (metrics.md §2); they exist only when the weights
//! carry `fc.weight` (pytorch-fid's `.pth`), and are `None` otherwise, never zeros.
//!
//! The weights' sha256 is exposed so stages can put it into their fingerprints.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::inception_weights::{Unit, LAYOUT, UNITS};
use super::resize::resize_plane;
use super::MetricsError;

/// Side of the network's input.
pub const INPUT_SIZE: usize = 299;
/// pool3 width.
pub const POOL3_DIM: usize = 2048;
/// Classes of the TF graph's softmax (1000 ImageNet classes plus unused slots).
pub const LOGITS_DIM: usize = 1008;
const BN_EPS: f64 = 1e-3;
/// Images per forward pass on the CPU when the caller names no batch ([`InceptionNet::features`]).
///
/// Small on purpose. The first layers' activations take 2.8-5.5 MB an image (32-64 maps of
/// 147-149 pixels square), so at 4 images every activation stays under glibc's 32 MiB mmap
/// ceiling and reuses freed heap memory (`kernels::heap`). At pytorch-fid's 50 each one was a
/// fresh `mmap` that the kernel zeroed page by page: 256 MNIST digits in the `evaluate` stage
/// took 2.97M page faults and ran at 9.5 images/s, against 0.17M faults and 12.7 images/s at 4
/// (this 2-core machine). The features are the same bits at any batch (every op treats each
/// image on its own; `inception_features::batch_does_not_change_the_features`).
pub const CPU_BATCH: usize = 4;
/// The same on a GPU: pytorch-fid's default, where a larger batch keeps the device busy.
pub const GPU_BATCH: usize = 50;

/// A conv unit with its batch norm folded in.
struct Conv {
    weight: Tensor,
    /// Shape `[1, out, 1, 1]`, ready to broadcast.
    bias: Tensor,
    stride: usize,
    pad: (usize, usize),
}

/// The network, loaded and ready.
pub struct InceptionNet {
    convs: Vec<Conv>,
    /// `[2048, 1008]`, i.e. `fc.weight` transposed.
    fc_t: Option<Tensor>,
    sha256: String,
    path: PathBuf,
    device: Device,
}

/// What [`InceptionNet::features`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub n: usize,
    /// `n x 2048`, row-major.
    pub pool3: Vec<f32>,
    /// `n x 1008`, row-major; `None` when the weights have no classifier.
    pub logits: Option<Vec<f32>>,
}

impl InceptionNet {
    /// Loads weights in our safetensors layout (see `inception_weights`; make them with
    /// `convert_weights`).
    pub fn load(weights: &Path, device: &Device) -> Result<Self, MetricsError> {
        let bytes = std::fs::read(weights).map_err(|e| MetricsError::io("read", weights, e))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let bad = |message: String| MetricsError::Weights {
            path: weights.to_path_buf(),
            message,
        };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            MetricsError::Safetensors {
                path: weights.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            MetricsError::Safetensors {
                path: weights.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let format = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .cloned();
        if format.as_deref() != Some(LAYOUT) {
            return Err(bad(format!(
                "layout is {format:?}, expected `{LAYOUT}`; convert the PyTorch file with \
                 `convert_weights` first"
            )));
        }
        let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>), MetricsError> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(bad(format!("tensor `{name}` is not f32")));
            }
            let data = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            Ok((t.shape().to_vec(), data.collect()))
        };
        let mut convs = Vec::with_capacity(UNITS.len());
        let mut in_ch = 3;
        for (i, unit) in UNITS.iter().enumerate() {
            let conv = load_unit(unit, &get, device).map_err(|e| match e {
                MetricsError::Input(m) => bad(m),
                e => e,
            })?;
            let (_, c_in, _, _) = conv.weight.dims4()?;
            // The stem is a chain, so its input channels are checkable; inside the mixed blocks
            // the branches' channels are checked by the forward pass itself.
            if i < 5 && c_in != in_ch {
                return Err(bad(format!(
                    "`{}` expects {c_in} input channels, not {in_ch}",
                    unit.name
                )));
            }
            in_ch = conv.weight.dims4()?.0;
            convs.push(conv);
        }
        let fc_t = match st.tensor("fc.weight") {
            Ok(_) => {
                let (shape, data) = get("fc.weight")?;
                if shape != [LOGITS_DIM, POOL3_DIM] {
                    return Err(bad(format!(
                        "`fc.weight` has shape {shape:?}, not [1008, 2048]"
                    )));
                }
                Some(
                    Tensor::from_vec(data, (LOGITS_DIM, POOL3_DIM), device)?
                        .t()?
                        .contiguous()?,
                )
            }
            Err(_) => None,
        };
        Ok(InceptionNet {
            convs,
            fc_t,
            sha256,
            path: weights.to_path_buf(),
            device: device.clone(),
        })
    }

    /// sha256 of the weight file, hex.
    pub fn weights_sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether [`Features::logits`] will be filled (needed for the Inception Score).
    pub fn has_logits(&self) -> bool {
        self.fc_t.is_some()
    }

    /// The error to return when IS is asked of logit-less weights.
    pub fn no_logits_error(&self) -> MetricsError {
        MetricsError::NoLogits {
            path: self.path.clone(),
        }
    }

    /// Images per forward pass when the caller names none: [`CPU_BATCH`] on the CPU, else
    /// [`GPU_BATCH`].
    pub fn default_batch(&self) -> usize {
        if self.device.is_cpu() {
            CPU_BATCH
        } else {
            GPU_BATCH
        }
    }

    /// pool3 features (and logits when available) of `shape[0]` u8 NCHW images, `batch` at a
    /// time (`None`: [`Self::default_batch`]); `progress(done, total)` is called after each
    /// batch.
    pub fn features(
        &self,
        pixels: &[u8],
        shape: [usize; 4],
        batch: Option<usize>,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Features, MetricsError> {
        let [n, c, h, w] = shape;
        if c != 1 && c != 3 {
            return Err(MetricsError::Input(format!(
                "images must have 1 or 3 channels, not {c}"
            )));
        }
        if h == 0 || w == 0 {
            return Err(MetricsError::Input("images must not be empty".into()));
        }
        if pixels.len() != n * c * h * w {
            return Err(MetricsError::Input(format!(
                "{} bytes of pixels do not make {n}x{c}x{h}x{w} images",
                pixels.len()
            )));
        }
        let batch = batch.unwrap_or_else(|| self.default_batch()).max(1);
        let mut pool3 = Vec::with_capacity(n * POOL3_DIM);
        let mut logits = self
            .fc_t
            .as_ref()
            .map(|_| Vec::with_capacity(n * LOGITS_DIM));
        let plane = h * w;
        let mut start = 0;
        while start < n {
            let end = (start + batch).min(n);
            let mut input = Vec::with_capacity((end - start) * 3 * INPUT_SIZE * INPUT_SIZE);
            for img in start..end {
                let base = img * c * plane;
                for ch in 0..3 {
                    let src_ch = if c == 1 { 0 } else { ch };
                    let src = &pixels[base + src_ch * plane..base + (src_ch + 1) * plane];
                    let from = input.len();
                    resize_plane(src, h, w, INPUT_SIZE, INPUT_SIZE, &mut input);
                    for v in &mut input[from..] {
                        *v = (*v - 128.0) / 128.0;
                    }
                }
            }
            let x = Tensor::from_vec(
                input,
                (end - start, 3, INPUT_SIZE, INPUT_SIZE),
                &self.device,
            )?;
            let f = self.forward(&x)?;
            if let (Some(fc_t), Some(l)) = (&self.fc_t, logits.as_mut()) {
                l.extend(f.matmul(fc_t)?.flatten_all()?.to_vec1::<f32>()?);
            }
            pool3.extend(f.flatten_all()?.to_vec1::<f32>()?);
            start = end;
            progress(end, n);
        }
        Ok(Features { n, pool3, logits })
    }

    /// `[n, 3, 299, 299]` normalized input to `[n, 2048]` pool3.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let mut k = self.convs.iter();
        let mut next = || {
            k.next()
                .ok_or_else(|| MetricsError::Input("unit table exhausted".into()))
        };
        let mut x = conv(x, next()?)?; // 149
        x = conv(&x, next()?)?; // 147
        x = conv(&x, next()?)?;
        x = kernels::max_pool3x3_stride2(&x)?; // 73
        x = conv(&x, next()?)?;
        x = conv(&x, next()?)?; // 71
        x = kernels::max_pool3x3_stride2(&x)?; // 35
        for _ in 0..3 {
            // InceptionA: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1
            let b1 = conv(&x, next()?)?;
            let b5 = conv(&conv(&x, next()?)?, next()?)?;
            let b3 = conv(&conv(&conv(&x, next()?)?, next()?)?, next()?)?;
            let bp = conv(&kernels::avg_pool3x3_same_exclude_pad(&x)?, next()?)?;
            x = Tensor::cat(&[b1, b5, b3, bp], 1)?;
        }
        {
            // InceptionB: 3x3/s2 | 1x1-3x3-3x3/s2 | maxpool/s2
            let b3 = conv(&x, next()?)?;
            let bd = conv(&conv(&conv(&x, next()?)?, next()?)?, next()?)?;
            let bp = kernels::max_pool3x3_stride2(&x)?;
            x = Tensor::cat(&[b3, bd, bp], 1)?; // 17
        }
        for _ in 0..4 {
            // InceptionC: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1
            let b1 = conv(&x, next()?)?;
            let mut b7 = conv(&x, next()?)?;
            for _ in 0..2 {
                b7 = conv(&b7, next()?)?;
            }
            let mut bd = conv(&x, next()?)?;
            for _ in 0..4 {
                bd = conv(&bd, next()?)?;
            }
            let bp = conv(&kernels::avg_pool3x3_same_exclude_pad(&x)?, next()?)?;
            x = Tensor::cat(&[b1, b7, bd, bp], 1)?;
        }
        {
            // InceptionD: 1x1-3x3/s2 | 1x1-1x7-7x1-3x3/s2 | maxpool/s2
            let b3 = conv(&conv(&x, next()?)?, next()?)?;
            let mut b7 = conv(&x, next()?)?;
            for _ in 0..3 {
                b7 = conv(&b7, next()?)?;
            }
            let bp = kernels::max_pool3x3_stride2(&x)?;
            x = Tensor::cat(&[b3, b7, bp], 1)?; // 8
        }
        for block in 0..2 {
            // InceptionE: 1x1 | 1x1-(1x3,3x1) | 1x1-3x3-(1x3,3x1) | pool-1x1
            let b1 = conv(&x, next()?)?;
            let a = conv(&x, next()?)?;
            let a1 = conv(&a, next()?)?;
            let a2 = conv(&a, next()?)?;
            let b = conv(&conv(&x, next()?)?, next()?)?;
            let b1b = conv(&b, next()?)?;
            let b2b = conv(&b, next()?)?;
            // The TF graph's quirk: the last block max-pools (metrics.md §1).
            let pooled = if block == 0 {
                kernels::avg_pool3x3_same_exclude_pad(&x)?
            } else {
                kernels::max_pool3x3_same(&x)?
            };
            let bp = conv(&pooled, next()?)?;
            x = Tensor::cat(&[b1, a1, a2, b1b, b2b, bp], 1)?;
        }
        Ok(x.mean((2, 3))?)
    }
}

/// A tensor read from the weight file: shape and f32 values.
type Loaded = (Vec<usize>, Vec<f32>);

fn load_unit(
    unit: &Unit,
    get: &dyn Fn(&str) -> Result<Loaded, MetricsError>,
    device: &Device,
) -> Result<Conv, MetricsError> {
    let n = unit.name;
    let (wshape, w) = get(&format!("{n}.weight"))?;
    let [c_out, c_in, kh, kw] = wshape[..] else {
        return Err(MetricsError::Input(format!(
            "`{n}.weight` is not 4-d: {wshape:?}"
        )));
    };
    let vec = |what: &str| -> Result<Vec<f32>, MetricsError> {
        let (s, v) = get(&format!("{n}.{what}"))?;
        if s != [c_out] {
            return Err(MetricsError::Input(format!(
                "`{n}.{what}` has shape {s:?}, not [{c_out}]"
            )));
        }
        Ok(v)
    };
    let (beta, mean, var) = (vec("beta")?, vec("mean")?, vec("var")?);
    let gamma = match get(&format!("{n}.gamma")) {
        Ok(_) => Some(vec("gamma")?),
        Err(_) => None,
    };
    let per_out = c_in * kh * kw;
    let mut folded = Vec::with_capacity(w.len());
    let mut bias = Vec::with_capacity(c_out);
    for o in 0..c_out {
        let g = gamma.as_ref().map_or(1.0, |g| f64::from(g[o]));
        let scale = g / (f64::from(var[o]) + BN_EPS).sqrt();
        folded.extend(
            w[o * per_out..(o + 1) * per_out]
                .iter()
                .map(|&v| (f64::from(v) * scale) as f32),
        );
        bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
    }
    Ok(Conv {
        weight: Tensor::from_vec(folded, (c_out, c_in, kh, kw), device)?,
        bias: Tensor::from_vec(bias, c_out, device)?,
        stride: unit.stride,
        pad: unit.pad,
    })
}

/// conv (with folded batch norm) then ReLU, one op on the CPU. The fast kernel pads each axis
/// on its own (no padded copy for the 1x7 / 7x1 kernels).
fn conv(x: &Tensor, c: &Conv) -> Result<Tensor, MetricsError> {
    Ok(kernels::conv2d_leaky_relu(
        x,
        &c.weight,
        Some(&c.bias),
        c.stride,
        c.pad,
        0.0,
    )?)
}
