//! The papers' own numbers, as data, so the `paper` profile's report can put them beside ours.
//!
//! Sources (all in `shared/reference/sn_sr.md`):
//! - SN paper (Miyato et al., ICLR 2018) Table 2: IS and FID, unsupervised CIFAR-10 and STL-10,
//!   exact values as printed (§2.3). Strings, not numbers, so the paper's own `±` and
//!   precision are reproduced verbatim.
//! - SR paper (Liu et al., ICCV 2019) Figs. 1–3: the 26-setting grid `X_{batch-ch}` and which
//!   settings collapse under SN (§5.4). The paper's per-setting IS/FID tables were not
//!   reachable, so no numbers are claimed for them. The group letters' datasets are an
//!   inference of the reference (A–D CIFAR-10, E STL-10) and are labelled as such.
//!
//! Which of our runs a Table 2 row is put beside ([`sn_table2_match`]) is as strict as the paper
//! is specific: architecture and widths, loss, dataset, and for the standard CNN the number of G
//! updates (100K, or 200K for the "2x updates" rows). Several runs may share a row (the six Adam
//! settings A-F of the CIFAR-10 standard CNN all match "SN-GANs"); [`optimizer_label`] names each.
//!
//! What must never change silently: these values. They are checked by a test against the
//! reference text, never edited to match our results.

/// One row of SN paper Table 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnTable2Row {
    pub section: &'static str,
    pub method: &'static str,
    pub is_cifar10: Option<&'static str>,
    pub is_stl10: Option<&'static str>,
    pub fid_cifar10: Option<&'static str>,
    pub fid_stl10: Option<&'static str>,
}

const fn row(
    section: &'static str,
    method: &'static str,
    is_c: &'static str,
    is_s: &'static str,
    fid_c: &'static str,
    fid_s: &'static str,
) -> SnTable2Row {
    const fn opt(s: &'static str) -> Option<&'static str> {
        if s.is_empty() {
            None
        } else {
            Some(s)
        }
    }
    SnTable2Row {
        section,
        method,
        is_cifar10: opt(is_c),
        is_stl10: opt(is_s),
        fid_cifar10: opt(fid_c),
        fid_stl10: opt(fid_s),
    }
}

/// SN paper Table 2 (sn_sr.md §2.3), in the paper's order. `""` = not reported.
pub const SN_TABLE2: &[SnTable2Row] = &[
    row("", "Real data", "11.24±.12", "26.08±.26", "7.8", "7.9"),
    row(
        "Standard CNN",
        "Weight clipping",
        "6.41±.11",
        "7.57±.10",
        "42.6",
        "64.2",
    ),
    row("Standard CNN", "GAN-GP", "6.93±.08", "", "37.7", ""),
    row(
        "Standard CNN",
        "WGAN-GP",
        "6.68±.06",
        "8.42±.13",
        "40.2",
        "55.1",
    ),
    row("Standard CNN", "Batch Norm.", "6.27±.10", "", "56.3", ""),
    row(
        "Standard CNN",
        "Layer Norm.",
        "7.19±.12",
        "7.61±.12",
        "33.9",
        "75.6",
    ),
    row(
        "Standard CNN",
        "Weight Norm.",
        "6.84±.07",
        "7.16±.10",
        "34.7",
        "73.4",
    ),
    row(
        "Standard CNN",
        "Orthonormal",
        "7.40±.12",
        "8.56±.07",
        "29.0",
        "46.7",
    ),
    row(
        "Standard CNN",
        "SN-GANs",
        "7.42±.08",
        "8.28±.09",
        "29.3",
        "53.1",
    ),
    row(
        "Standard CNN",
        "Orthonormal (2x updates)",
        "",
        "8.67±.08",
        "",
        "44.2",
    ),
    row(
        "Standard CNN",
        "SN-GANs (2x updates)",
        "",
        "8.69±.09",
        "",
        "47.5",
    ),
    row(
        "Standard CNN",
        "SN-GANs, hinge (Eq.17)",
        "7.58±.12",
        "",
        "25.5",
        "",
    ),
    row(
        "Standard CNN",
        "SN-GANs, hinge (2x updates)",
        "",
        "8.79±.14",
        "",
        "43.2",
    ),
    row(
        "ResNet",
        "Orthonormal, hinge",
        "7.92±.04",
        "8.72±.06",
        "23.8±.58",
        "42.4±.99",
    ),
    row(
        "ResNet",
        "SN-GANs, hinge",
        "8.22±.05",
        "9.10±.04",
        "21.7±.21",
        "40.1±.50",
    ),
];

/// Which dataset column of Table 2 a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table2Column {
    Cifar10,
    Stl10,
}

impl Table2Column {
    /// From a dataset path or stem: `cifar10` or `stl10` anywhere in it (case, `-` and `_`
    /// ignored), so `data/stl10.safetensors` and `CIFAR-10` both count.
    pub fn of_dataset(dataset: &str) -> Option<Self> {
        let ds = dataset.to_ascii_lowercase().replace(['-', '_'], "");
        if ds.contains("cifar10") {
            Some(Table2Column::Cifar10)
        } else if ds.contains("stl10") {
            Some(Table2Column::Stl10)
        } else {
            None
        }
    }
}

/// What decides which Table 2 row one of our runs is: its params, as `train-gan` reads them
/// (absent widths and loss take `train-gan`'s defaults: cnn 64/64, resnet G 256 / D 128, hinge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunShape<'a> {
    /// The `dataset` param (a path).
    pub dataset: &'a str,
    /// `model.arch`.
    pub arch: &'a str,
    pub loss: &'a str,
    pub g_ch: Option<usize>,
    pub d_ch: Option<usize>,
    /// `model.ch` (`resnet-stl`'s one width).
    pub ch: Option<usize>,
    pub batch: Option<usize>,
    /// G updates.
    pub iterations: Option<u64>,
}

/// A Table 2 row and the column our run is compared in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Table2Match {
    pub row: &'static SnTable2Row,
    pub column: Table2Column,
}

impl Table2Match {
    /// The paper's (IS, FID) in our run's column.
    pub fn paper_values(&self) -> (Option<&'static str>, Option<&'static str>) {
        match self.column {
            Table2Column::Cifar10 => (self.row.is_cifar10, self.row.fid_cifar10),
            Table2Column::Stl10 => (self.row.is_stl10, self.row.fid_stl10),
        }
    }
}

/// The Table 2 row an SN run of ours reproduces, if any. The match is as strict as the paper is
/// specific, so a number is never put beside a run that is not that experiment:
/// - standard CNN: Table 3 widths (G and D `ch` 64); 100K G updates for the plain rows, 200K
///   for the "2x updates" rows; standard loss -> "SN-GANs", hinge -> "SN-GANs, hinge". Any Adam
///   setting A-F matches (the paper does not say which gave its numbers; the report names ours);
/// - ResNet: hinge at batch 64 (sngan_projection's config). On CIFAR-10 `resnet` with Table 4's
///   G ch 256 / D ch 128; on STL-10 `resnet-stl` with Table 5's `ch` 64. An STL-10 `resnet` run
///   (the SR grid's group E) matches nothing: Table 5 has another channel plan. The update
///   count is not checked: the paper does not state it for the ResNets (the official config
///   trains 50K);
/// - and the row must report a value in the run's column (no CIFAR-10 "2x updates" entry).
pub fn sn_table2_match(run: &RunShape) -> Option<Table2Match> {
    let column = Table2Column::of_dataset(run.dataset)?;
    let method = match run.arch {
        "cnn" => {
            if run.g_ch.unwrap_or(64) != 64 || run.d_ch.unwrap_or(64) != 64 {
                return None;
            }
            let twice = match run.iterations {
                Some(100_000) => false,
                Some(200_000) => true,
                _ => return None,
            };
            let method = match (run.loss, twice) {
                ("standard", false) => "SN-GANs",
                ("standard", true) => "SN-GANs (2x updates)",
                ("hinge", false) => "SN-GANs, hinge (Eq.17)",
                ("hinge", true) => "SN-GANs, hinge (2x updates)",
                _ => return None,
            };
            ("Standard CNN", method)
        }
        "resnet" => {
            let table4 = run.g_ch.unwrap_or(256) == 256
                && run.d_ch.unwrap_or(128) == 128
                && run.batch.unwrap_or(64) == 64;
            if run.loss != "hinge" || column != Table2Column::Cifar10 || !table4 {
                return None;
            }
            ("ResNet", "SN-GANs, hinge")
        }
        "resnet-stl" => {
            let table5 = run.ch.unwrap_or(64) == 64 && run.batch.unwrap_or(64) == 64;
            if run.loss != "hinge" || column != Table2Column::Stl10 || !table5 {
                return None;
            }
            ("ResNet", "SN-GANs, hinge")
        }
        _ => return None,
    };
    let row = SN_TABLE2
        .iter()
        .find(|r| r.section == method.0 && r.method == method.1)?;
    let m = Table2Match { row, column };
    let (is, fid) = m.paper_values();
    (is.is_some() || fid.is_some()).then_some(m)
}

/// How one of our runs was optimized, in the paper's terms, so runs that share a Table 2 row
/// can be told apart: `setting C (Adam α 0.0002, β1 0.5, β2 0.999, n_dis 1), 100K G updates`.
/// Overrides of the preset (`lr`, `beta1`, `beta2`, `n_dis`) are applied and marked; a preset
/// name the optimizer does not know is shown as given.
pub fn optimizer_label(
    preset: Option<&str>,
    overrides: [Option<f64>; 4],
    lr_decay: Option<&str>,
    iterations: Option<u64>,
) -> String {
    let known = preset.and_then(|p| {
        serde_json::from_value::<crate::nn::optim::Preset>(serde_json::Value::from(p)).ok()
    });
    let mut out = match (preset, known) {
        (Some(name), Some(pr)) => {
            let (lr, b1, b2, n_dis) = pr.settings();
            let pick = |i: usize, v: f64| match overrides[i] {
                Some(o) => format!("{o}*"),
                None => format!("{v}"),
            };
            let setting = if name == "resnet" {
                "ResNet setting".to_string()
            } else {
                format!("setting {name}")
            };
            format!(
                "{setting} (Adam α {}, β1 {}, β2 {}, n_dis {})",
                pick(0, lr),
                pick(1, b1),
                pick(2, b2),
                pick(3, f64::from(n_dis))
            )
        }
        (Some(name), None) => format!("optimizer `{name}`"),
        (None, _) => "optimizer not recorded".to_string(),
    };
    if lr_decay == Some("linear") {
        out.push_str(", lr linear to 0");
    }
    if let Some(it) = iterations {
        if it % 1000 == 0 {
            out.push_str(&format!(", {}K G updates", it / 1000));
        } else {
            out.push_str(&format!(", {it} G updates"));
        }
    }
    out
}

/// One setting of the SR paper's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrSetting {
    /// Group letter A–E.
    pub group: char,
    pub batch: usize,
    /// The discriminator width `ch`.
    pub d_ch: usize,
    /// Whether SN collapsed in the paper's Figs. 2/3 (SR avoided every one of them).
    pub sn_collapses: bool,
}

impl SrSetting {
    /// The paper's name, `B_{128-64}` written `B128-64`.
    pub fn name(&self) -> String {
        format!("{}{}-{}", self.group, self.batch, self.d_ch)
    }

    /// The dataset the group most plausibly used (an inference, see the module doc).
    pub fn dataset_guess(&self) -> &'static str {
        if self.group == 'E' {
            "stl10"
        } else {
            "cifar10"
        }
    }
}

const fn s(group: char, batch: usize, d_ch: usize, sn_collapses: bool) -> SrSetting {
    SrSetting {
        group,
        batch,
        d_ch,
        sn_collapses,
    }
}

/// The 26 settings of sn_sr.md §5.4; 10 collapse under SN.
pub const SR_GRID: &[SrSetting] = &[
    s('A', 16, 128, false),
    s('A', 32, 128, false),
    s('A', 64, 128, false),
    s('A', 128, 128, false),
    s('A', 256, 128, false),
    s('A', 512, 128, false),
    s('A', 1024, 128, false),
    s('B', 8, 64, false),
    s('B', 16, 64, false),
    s('B', 32, 64, false),
    s('B', 64, 64, true),
    s('B', 128, 64, true),
    s('B', 256, 64, true),
    s('C', 8, 32, true),
    s('C', 16, 32, true),
    s('C', 32, 32, true),
    s('C', 64, 32, true),
    s('C', 128, 32, true),
    s('D', 128, 256, false),
    s('D', 256, 256, false),
    s('D', 512, 256, false),
    s('E', 16, 128, false),
    s('E', 64, 128, false),
    s('E', 256, 128, false),
    s('E', 256, 64, true),
    s('E', 256, 32, true),
];

/// The grid settings a run of `dataset` (file stem), batch size and D width corresponds to.
pub fn sr_grid_match(dataset: &str, batch: usize, d_ch: usize) -> Vec<&'static SrSetting> {
    let ds = dataset.to_ascii_lowercase().replace(['-', '_'], "");
    SR_GRID
        .iter()
        .filter(|g| g.batch == batch && g.d_ch == d_ch && ds.contains(g.dataset_guess()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_26_settings_and_10_collapses() {
        assert_eq!(SR_GRID.len(), 26);
        assert_eq!(SR_GRID.iter().filter(|g| g.sn_collapses).count(), 10);
        let collapsed: Vec<String> = SR_GRID
            .iter()
            .filter(|g| g.sn_collapses)
            .map(SrSetting::name)
            .collect();
        assert_eq!(
            collapsed,
            [
                "B64-64", "B128-64", "B256-64", "C8-32", "C16-32", "C32-32", "C64-32", "C128-32",
                "E256-64", "E256-32"
            ]
        );
    }

    fn shape<'a>(dataset: &'a str, arch: &'a str, loss: &'a str, it: u64) -> RunShape<'a> {
        RunShape {
            dataset,
            arch,
            loss,
            g_ch: None,
            d_ch: None,
            ch: None,
            batch: Some(64),
            iterations: Some(it),
        }
    }

    fn matched(run: &RunShape) -> Option<(&'static str, Option<&'static str>)> {
        sn_table2_match(run).map(|m| (m.row.method, m.paper_values().1))
    }

    #[test]
    fn sn_rows_match_by_architecture_loss_dataset_and_updates() {
        // Every run kind of the paper profile's `sn_table2` map, with the FID it is put beside.
        let c = "data/cifar10.safetensors";
        let s = "data/stl10.safetensors";
        assert_eq!(
            matched(&shape(c, "cnn", "standard", 100_000)),
            Some(("SN-GANs", Some("29.3")))
        );
        assert_eq!(
            matched(&shape(c, "cnn", "hinge", 100_000)),
            Some(("SN-GANs, hinge (Eq.17)", Some("25.5")))
        );
        assert_eq!(
            matched(&shape(s, "cnn", "standard", 100_000)),
            Some(("SN-GANs", Some("53.1")))
        );
        assert_eq!(
            matched(&shape(s, "cnn", "standard", 200_000)),
            Some(("SN-GANs (2x updates)", Some("47.5")))
        );
        assert_eq!(
            matched(&shape(s, "cnn", "hinge", 200_000)),
            Some(("SN-GANs, hinge (2x updates)", Some("43.2")))
        );
        let resnet = RunShape {
            g_ch: Some(256),
            d_ch: Some(128),
            ..shape(c, "resnet", "hinge", 50_000)
        };
        assert_eq!(matched(&resnet), Some(("SN-GANs, hinge", Some("21.7±.21"))));
        let m = sn_table2_match(&resnet).unwrap();
        assert_eq!(m.paper_values().0, Some("8.22±.05"));
        assert_eq!(m.column, Table2Column::Cifar10);
        let stl = shape(s, "resnet-stl", "hinge", 50_000);
        assert_eq!(matched(&stl), Some(("SN-GANs, hinge", Some("40.1±.50"))));
    }

    #[test]
    fn runs_that_are_not_the_papers_experiment_match_nothing() {
        let c = "data/cifar10.safetensors";
        // No CIFAR-10 value in the 2x rows, no STL-10 value for hinge at 100K.
        assert!(matched(&shape(c, "cnn", "standard", 200_000)).is_none());
        assert!(matched(&shape("stl10", "cnn", "hinge", 100_000)).is_none());
        // Other update counts and widths than Table 3's.
        assert!(matched(&shape(c, "cnn", "standard", 50_000)).is_none());
        let narrow = RunShape {
            d_ch: Some(16),
            ..shape(c, "cnn", "standard", 100_000)
        };
        assert!(matched(&narrow).is_none());
        // The SR grid's ResNets other than Table 4's (D 64, batch 128), and an STL-10 ResNet
        // (Table 5's architecture is not ours).
        let b128 = RunShape {
            d_ch: Some(64),
            batch: Some(128),
            ..shape(c, "resnet", "hinge", 50_000)
        };
        assert!(matched(&b128).is_none());
        assert!(matched(&shape("data/stl10.safetensors", "resnet", "hinge", 50_000)).is_none());
        assert!(matched(&shape(c, "resnet", "standard", 50_000)).is_none());
        assert!(matched(&shape(c, "resnet-stl", "hinge", 50_000)).is_none());
        let wide = RunShape {
            ch: Some(128),
            ..shape("stl10", "resnet-stl", "hinge", 50_000)
        };
        assert!(matched(&wide).is_none());
        assert!(matched(&shape(
            "data/mnist32.safetensors",
            "cnn",
            "standard",
            100_000
        ))
        .is_none());
        assert!(matched(&shape(c, "mlp", "hinge", 100_000)).is_none());
    }

    #[test]
    fn optimizer_labels_name_the_setting_and_the_updates() {
        assert_eq!(
            optimizer_label(Some("C"), [None; 4], Some("none"), Some(100_000)),
            "setting C (Adam α 0.0002, β1 0.5, β2 0.999, n_dis 1), 100K G updates"
        );
        assert_eq!(
            optimizer_label(Some("resnet"), [None; 4], Some("linear"), Some(50_000)),
            "ResNet setting (Adam α 0.0002, β1 0, β2 0.9, n_dis 5), lr linear to 0, 50K G updates"
        );
        assert_eq!(
            optimizer_label(Some("D"), [None, None, None, Some(1.0)], None, Some(1500)),
            "setting D (Adam α 0.001, β1 0.5, β2 0.9, n_dis 1*), 1500 G updates"
        );
        assert_eq!(
            optimizer_label(Some("sgd"), [None; 4], None, None),
            "optimizer `sgd`"
        );
    }

    #[test]
    fn grid_matches_by_dataset_batch_and_width() {
        let m: Vec<String> = sr_grid_match("cifar10", 128, 64)
            .into_iter()
            .map(SrSetting::name)
            .collect();
        assert_eq!(m, ["B128-64"]);
        let m: Vec<String> = sr_grid_match("stl10", 256, 128)
            .into_iter()
            .map(SrSetting::name)
            .collect();
        assert_eq!(m, ["E256-128"]);
        assert!(sr_grid_match("ring", 64, 64).is_empty());
    }
}
