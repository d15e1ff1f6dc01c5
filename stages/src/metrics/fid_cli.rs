//! `repro fid A B`: FID between two image sources, each resolved to Gaussian statistics.
//!
//! An input is recognised by what it is, not by a flag:
//! - a **directory**: every `*.png` in it (sorted by name, not recursive), decoded to 8-bit;
//!   grey, grey+alpha, RGB, RGBA and palette PNGs are all accepted (alpha dropped, grey
//!   replicated to RGB), and images of different sizes are each resized to 299 anyway;
//! - an **`.npz`** with `mu` and `sigma` (pytorch-fid's layout): used as-is, no network needed;
//! - any other **file** is read as a prepared dataset (safetensors with `images` u8 [N,C,H,W]).
//!
//! The weights may be our converted safetensors or a PyTorch `.pth`/TorchScript file, which is
//! converted into a temp file first. The network is loaded only if an input needs features.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use candle_core::Device;

use super::fid::{frechet_distance, Stats};
use super::inception::{InceptionNet, POOL3_DIM};
use super::MetricsError;

/// Options of [`fid_cli`].
#[derive(Debug, Clone, Default)]
pub struct FidCliOptions {
    /// Images per forward pass (`None`: the network's default, `InceptionNet::default_batch`).
    pub batch: Option<usize>,
}

/// FID between `a` and `b`; `progress(input, done, total)` reports feature extraction, with
/// `input` the path being processed.
pub fn fid_cli(
    a: &Path,
    b: &Path,
    weights: &Path,
    options: &FidCliOptions,
    progress: &dyn Fn(&Path, usize, usize),
) -> Result<f64, MetricsError> {
    let net: OnceCell<InceptionNet> = OnceCell::new();
    let load = || -> Result<&InceptionNet, MetricsError> {
        if let Some(n) = net.get() {
            return Ok(n);
        }
        let loaded = load_any_weights(weights)?;
        Ok(net.get_or_init(|| loaded))
    };
    let sa = input_stats(a, &load, options, progress)?;
    let sb = input_stats(b, &load, options, progress)?;
    frechet_distance(&sa, &sb)
}

/// Loads our layout directly, or converts a PyTorch file into a temp dir first.
pub fn load_any_weights(weights: &Path) -> Result<InceptionNet, MetricsError> {
    let mut head = [0u8; 4];
    {
        use std::io::Read;
        let mut f =
            std::fs::File::open(weights).map_err(|e| MetricsError::io("open", weights, e))?;
        f.read_exact(&mut head)
            .map_err(|e| MetricsError::io("read", weights, e))?;
    }
    let is_torch = head.starts_with(b"PK") || head.starts_with(&[0x80, 0x02]);
    if !is_torch {
        return InceptionNet::load(weights, &Device::Cpu);
    }
    let dir =
        tempfile::tempdir().map_err(|e| MetricsError::io("create a temp dir for", weights, e))?;
    let converted = dir.path().join("inception.safetensors");
    super::convert_weights(weights, &converted)?;
    InceptionNet::load(&converted, &Device::Cpu)
}

fn input_stats<'n>(
    input: &Path,
    net: &dyn Fn() -> Result<&'n InceptionNet, MetricsError>,
    options: &FidCliOptions,
    progress: &dyn Fn(&Path, usize, usize),
) -> Result<Stats, MetricsError> {
    if input.extension().is_some_and(|e| e == "npz") {
        return Stats::load_npz(input);
    }
    image_stats(input, usize::MAX, net, options.batch, progress)
}

/// FID statistics of the first `cap` images of a PNG folder or a prepared dataset.
pub fn image_stats<'n>(
    input: &Path,
    cap: usize,
    net: &dyn Fn() -> Result<&'n InceptionNet, MetricsError>,
    batch: Option<usize>,
    progress: &dyn Fn(&Path, usize, usize),
) -> Result<Stats, MetricsError> {
    let (pool3, n) = image_features(input, cap, net, batch, progress)?;
    Stats::from_features(&pool3, n, POOL3_DIM)
}

/// pool3 features (`n × 2048`, row-major, in input order) of the first `cap` images of a PNG
/// folder or a prepared dataset, with n; fewer than 2 images is an error (no FID statistics).
pub fn image_features<'n>(
    input: &Path,
    cap: usize,
    net: &dyn Fn() -> Result<&'n InceptionNet, MetricsError>,
    batch: Option<usize>,
    progress: &dyn Fn(&Path, usize, usize),
) -> Result<(Vec<f32>, usize), MetricsError> {
    let mut groups = if input.is_dir() {
        read_png_dir(input)?
    } else {
        read_prepared(input)?
    };
    let mut left = cap;
    for g in &mut groups {
        let keep = g.shape[0].min(left);
        let per = g.shape[1] * g.shape[2] * g.shape[3];
        g.pixels.truncate(keep * per);
        g.shape[0] = keep;
        left -= keep;
    }
    groups.retain(|g| g.shape[0] > 0);
    let total: usize = groups.iter().map(|g| g.shape[0]).sum();
    if total < 2 {
        return Err(MetricsError::Input(format!(
            "`{}` has {total} image(s); FID needs at least 2 (and 2048+ for a full-rank covariance)",
            input.display()
        )));
    }
    let net = net()?;
    let mut pool3 = Vec::with_capacity(total * POOL3_DIM);
    let mut done = 0;
    for g in &groups {
        let cb = |d: usize, _t: usize| progress(input, done + d, total);
        let f = net.features(&g.pixels, g.shape, batch, &cb)?;
        pool3.extend(f.pool3);
        done += g.shape[0];
    }
    Ok((pool3, total))
}

/// Images of one shape, u8 NCHW.
struct Group {
    pixels: Vec<u8>,
    shape: [usize; 4],
}

fn read_prepared(path: &Path) -> Result<Vec<Group>, MetricsError> {
    let bytes = std::fs::read(path).map_err(|e| MetricsError::io("read", path, e))?;
    let bad = |message: String| MetricsError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        bad(format!(
            "{e}; expected a folder of PNGs, an npz with `mu`/`sigma`, or a prepared dataset"
        ))
    })?;
    let t = st.tensor("images").map_err(|_| {
        bad("no `images` tensor (a `points` dataset has no images to compute FID on)".into())
    })?;
    let [n, c, h, w] = t.shape()[..] else {
        return Err(bad(format!(
            "`images` has shape {:?}, expected [N, C, H, W]",
            t.shape()
        )));
    };
    if t.dtype() != safetensors::Dtype::U8 {
        return Err(bad(format!("`images` is {:?}, expected U8", t.dtype())));
    }
    Ok(vec![Group {
        pixels: t.data().to_vec(),
        shape: [n, c, h, w],
    }])
}

/// Every PNG of `dir`, as RGB, grouped by size in name order.
fn read_png_dir(dir: &Path) -> Result<Vec<Group>, MetricsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| MetricsError::io("list", dir, e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for e in entries {
        let p = e.map_err(|e| MetricsError::io("list", dir, e))?.path();
        if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")) {
            files.push(p);
        }
    }
    files.sort();
    let mut groups: Vec<Group> = Vec::new();
    for f in &files {
        let (h, w, rgb) = read_png_rgb(f)?;
        match groups
            .iter_mut()
            .find(|g| g.shape[2] == h && g.shape[3] == w)
        {
            Some(g) => {
                g.pixels.extend(rgb);
                g.shape[0] += 1;
            }
            None => groups.push(Group {
                pixels: rgb,
                shape: [1, 3, h, w],
            }),
        }
    }
    Ok(groups)
}

/// Decodes a PNG to planar (CHW) 8-bit RGB.
pub fn read_png_rgb(path: &Path) -> Result<(usize, usize, Vec<u8>), MetricsError> {
    let bad = |message: String| MetricsError::Image {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| MetricsError::io("open", path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(e.to_string()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(bad("palette was not expanded".into())),
    };
    let plane = h * w;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in buf[..plane * channels].chunks_exact(channels).enumerate() {
        let (r, g, b) = if channels < 3 {
            (px[0], px[0], px[0])
        } else {
            (px[0], px[1], px[2])
        };
        out[i] = r;
        out[plane + i] = g;
        out[2 * plane + i] = b;
    }
    Ok((h, w, out))
}
