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

/// The Table 2 row our SN runs of a given architecture and loss correspond to.
pub fn sn_table2_match(arch: &str, loss: &str) -> Option<&'static SnTable2Row> {
    let method = match (arch, loss) {
        ("cnn", "standard") => ("Standard CNN", "SN-GANs"),
        ("cnn", "hinge") => ("Standard CNN", "SN-GANs, hinge (Eq.17)"),
        ("resnet", "hinge") => ("ResNet", "SN-GANs, hinge"),
        _ => return None,
    };
    SN_TABLE2
        .iter()
        .find(|r| r.section == method.0 && r.method == method.1)
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

    #[test]
    fn sn_rows_match_by_architecture_and_loss() {
        let r = sn_table2_match("resnet", "hinge").map(|r| (r.is_cifar10, r.fid_cifar10));
        assert_eq!(r, Some((Some("8.22±.05"), Some("21.7±.21"))));
        let r = sn_table2_match("cnn", "standard").map(|r| r.fid_stl10);
        assert_eq!(r, Some(Some("53.1")));
        assert!(sn_table2_match("mlp", "hinge").is_none());
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
