//! The report of a small fixed set of fake runs matches committed snapshots, is byte-identical
//! across two runs, and names every missing input.
//!
//! Inputs: `tests/fixtures/report/` (runs, evals, spectral, dag, run records), written by
//! `scripts/fixtures/report_runs.py`. Expected outputs: insta snapshots in
//! `tests/fixtures/report/expected/` (the project's one snapshot system). After an intended
//! change of the report, review and accept the new outputs with `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test -p stages --test stages report_snapshot`, then read the diff
//! before committing it).

use std::path::{Path, PathBuf};

use stages::report::{generate, write_files, Files, ReportError, ReportParams};

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report")
}

fn params(json: serde_json::Value) -> ReportParams {
    serde_json::from_value(json).expect("test params deserialize")
}

pub(crate) fn full_params() -> ReportParams {
    params(serde_json::json!({
        "runs_root": "runs",
        "evals_root": "evals",
        "spectral_root": "spectral",
        "dag": "dag.mmd",
        "run_records": "run_records.json",
        "paper": true,
        "out": "unused",
        "verdict": {"baseline": {"model.d_hidden": 128}},
    }))
}

pub(crate) fn report(p: &ReportParams) -> Files {
    generate(p, &fixtures(), &|_, _, _| {}).expect("the fixture report builds")
}

pub(crate) fn text(files: &Files, name: &str) -> String {
    let bytes = files
        .get(Path::new(name))
        .unwrap_or_else(|| panic!("the report has no `{name}`"));
    String::from_utf8(bytes.clone()).expect("utf-8 output")
}

#[test]
fn report_matches_snapshots() {
    let files = report(&full_params());
    let mut names: Vec<String> = files
        .keys()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(fixtures().join("expected"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!("files.txt", names.join("\n") + "\n");
        for name in [
            "report.md",
            "verdict.json",
            "dag.mmd",
            "runs.csv",
            "summary.csv",
            "deltas.csv",
            "stages.csv",
        ] {
            insta::assert_snapshot!(name, text(&files, name));
        }
    });
}

#[test]
fn two_runs_give_identical_bytes_on_disk() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let first = report(&full_params());
    let second = report(&full_params());
    write_files(a.path(), &first).expect("write first");
    write_files(b.path(), &second).expect("write second");
    assert_eq!(first.len(), second.len());
    for (rel, bytes) in &first {
        let on_a = std::fs::read(a.path().join(rel)).expect("read back");
        let on_b = std::fs::read(b.path().join(rel)).expect("read back");
        assert_eq!(&on_a, bytes, "`{}` written as produced", rel.display());
        assert!(on_a == on_b, "`{}` differs between two runs", rel.display());
    }
    // The figures are real images: PNG signature, and SVG text with the chart's title.
    let png = &first[Path::new("figures/spectra/ring-sn-1.png")];
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = String::from_utf8(first[Path::new("figures/spectra/ring-sn-1.svg")].clone())
        .expect("svg is text");
    assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
    assert!(svg.contains("ring-sn-1"));
}

#[test]
fn a_missing_metrics_file_is_reported_as_missing() {
    let md = text(&report(&full_params()), "report.md");
    assert!(
        md.contains("| ring-srd-1 | metrics | `evals/ring-srd-1/metrics.json` | missing |"),
        "{md}"
    );
    assert!(
        md.contains("| grid-srg-1 | spectral | `spectral/grid-srg-1/spectral.json` | missing |")
    );
    // The run is still in the runs table, with no metric values.
    assert!(
        md.contains(
            "| ring-srd-1 | ring · mlp hidden=64 layers=2 · batch 64 · iterations=300 | SR dynamic | 1 |"
        ),
        "{md}"
    );
    // A directory without params.json is not a run.
    assert!(!md.contains("notes"));
}

/// `classifier.json` has the layout `train-classifier` writes (hand-made: 98.94% of 10,000).
#[test]
fn the_mode_counters_accuracy_is_stated_against_the_target() {
    let mut p = full_params();
    p.classifier = Some("classifier.json".into());
    let md = text(&report(&p), "report.md");
    assert!(md.contains("## The Stacked MNIST mode counter"), "{md}");
    assert!(
        md.contains("**98.94% test accuracy** on 10000 MNIST test digits, after 3 epochs on 60000 training digits; this is below the 99% aimed for"),
        "{md}"
    );
    // Without the param the section is absent; a named file that is not there is listed.
    assert!(!text(&report(&full_params()), "report.md").contains("mode counter"));
    p.classifier = Some("models/nothing.json".into());
    let md = text(&report(&p), "report.md");
    assert!(
        md.contains("| - | classifier | `models/nothing.json` | missing |"),
        "{md}"
    );
}

/// The verdict opens the report and is worded from the statistics, whatever they say.
#[test]
fn the_verdict_comes_first_and_states_the_statistics() {
    let files = report(&full_params());
    let md = text(&files, "report.md");
    let verdict_at = md.find("## Verdict").expect("a verdict section");
    let first_section = md.find("\n## ").expect("a section");
    assert_eq!(
        verdict_at,
        first_section + 1,
        "the verdict is the first section"
    );
    // The gate: the control (wide D) is healthy in 2 of its 3 seeds (one ends with a
    // high-quality share of 0.4), and 2 = ceil(2/3 x 3) is enough.
    assert!(
        md.contains("**Healthy-baseline gate: PASS.** SN in `ring · mlp d_hidden=128 hidden=128 layers=2 · batch 64 · iterations=3000`: 2/3 seeds healthy (final modes ≥ 7 of 8 and high-quality share ≥ 0.5); the gate needs 2 (⌈2/3 × 3⌉)"),
        "{md}"
    );
    // Narrow D: SN lost modes in 3/4 seeds, SR static in 0/4; with 4 seeds per arm and ties
    // the test does not reach 0.05, and the report says so instead of claiming a difference.
    let narrow = md
        .lines()
        .find(|l| l.starts_with("- **ring · mlp d_hidden=32"))
        .expect("a headline for narrow D");
    assert!(
        narrow.contains("SN lost modes (final < 7 of 8) in 3/4 seeds, SR static (0.5) in 0/4 (no significant difference in final modes: one-sided Mann–Whitney p = "),
        "{narrow}"
    );
    assert!(
        narrow.contains("spectral collapse came within 500 iterations of the largest mode drop in 2/2 SN runs with both (0 spectral collapse only, 1 lost modes only, of 4)"),
        "{narrow}"
    );
    let section = &md[verdict_at..md.find("## Comparison").expect("the details")];
    assert!(
        !section.contains("avoid"),
        "no verdict by construction: {section}"
    );
    assert!(
        md.contains("Not judged (no mode metrics): `cifar10"),
        "{md}"
    );
    // The DAG is its own file, linked, not inlined.
    assert!(!md.contains("```mermaid"));
    assert!(md.contains("[dag.mmd](dag.mmd)"));
    assert!(text(&files, "dag.mmd").starts_with("flowchart TD\n"));
    assert!(!files.contains_key(Path::new("verdicts.csv")));

    let v: serde_json::Value =
        serde_json::from_str(&text(&files, "verdict.json")).expect("verdict.json parses");
    assert_eq!(v["baseline"]["seeds"], 3);
    assert_eq!(v["baseline"]["healthy_seeds"], 2);
    assert_eq!(v["baseline"]["passed"], true);
    let narrow = v["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .find(|s| {
            s["setting"]
                .as_str()
                .is_some_and(|s| s.contains("d_hidden=32"))
        })
        .expect("narrow setting");
    assert_eq!(narrow["methods"]["SN"]["mode_collapsed"], 3);
    assert_eq!(narrow["methods"]["SN"]["spectral_collapsed"], 2);
    let p = narrow["p_sr_vs_sn"]["SR static (0.5)"]
        .as_f64()
        .expect("a p-value");
    // scipy.stats.mannwhitneyu([8, 8, 8, 7], [3, 5, 8, 5], alternative="greater",
    // method="asymptotic"): not below 0.05, so "no significant difference".
    assert!((p - 0.06077397817469042).abs() < 1e-9, "{p}");
    let run = v["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["name"] == "toy-ring-d32-none-s1")
        .expect("run row");
    assert_eq!(run["mode_drop_iteration"], 2000);
    assert_eq!(run["spectral_iteration"], 1750);
    // The recovered spectrum: a first fall, no collapse.
    let run = v["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["name"] == "toy-ring-d32-none-s3")
        .expect("run row");
    assert_eq!(run["spectral_iteration"], 1500);
    assert_eq!(run["spectral_collapsed"], false);
}

#[test]
fn a_baseline_selector_that_matches_nothing_is_a_params_error() {
    let mut p = full_params();
    p.verdict = params(
        serde_json::json!({"runs_root": "runs", "verdict": {"baseline": {"model.d_hidden": 64}}}),
    )
    .verdict;
    match generate(&p, &fixtures(), &|_, _, _| {}) {
        Err(ReportError::Params(m)) => {
            assert!(
                m.contains("`verdict.baseline` (model.d_hidden: 64) matches no setting"),
                "{m}"
            )
        }
        other => panic!("expected a params error, got {:?}", other.map(|f| f.len())),
    }
}

/// No percentage beside a delta whose arms have 3 or fewer seeds; the absolute delta stays.
#[test]
fn no_percentage_deltas_on_three_seeds_or_fewer() {
    let files = report(&full_params());
    let deltas = text(&files, "deltas.csv");
    let md = text(&files, "report.md");
    let table =
        &md[md.find("## SN → SR deltas").expect("deltas")..md.find("## Runs").expect("runs")];
    // Every fixture arm has at most 4 seeds, and only the narrow-D modes have 4 on both sides.
    let narrow = table
        .lines()
        .find(|l| l.contains("d_hidden=32"))
        .expect("narrow row");
    assert!(
        narrow.contains("(+"),
        "4 vs 4 seeds: a percentage: {narrow}"
    );
    let wide = table
        .lines()
        .find(|l| l.contains("d_hidden=128"))
        .expect("wide row");
    assert!(!wide.contains('%'), "3 vs 3 seeds: no percentage: {wide}");
    assert!(deltas
        .lines()
        .next()
        .expect("header")
        .contains("modes_delta_pct"));
}

#[test]
fn without_paper_there_is_no_paper_section_and_without_figures_no_figures() {
    let mut p = full_params();
    p.paper = false;
    p.figures = false;
    let files = report(&p);
    let md = text(&files, "report.md");
    assert!(!md.contains("The papers' numbers"));
    assert!(files.keys().all(|k| !k.starts_with("figures")));
}

#[test]
fn explicit_runs_need_params() {
    let p = params(serde_json::json!({
        "runs": [
            {"run": "runs/ring-sn-1", "eval": "evals/ring-sn-1/metrics.json"},
            {"run": "runs/notes"}
        ],
        "figures": false,
    }));
    match generate(&p, &fixtures(), &|_, _, _| {}) {
        Err(ReportError::MissingParams { run, .. }) => assert_eq!(run, "notes"),
        other => panic!(
            "expected a missing-params error, got {:?}",
            other.map(|f| f.len())
        ),
    }
}

#[test]
fn runs_and_runs_root_together_are_rejected() {
    let p = params(serde_json::json!({"runs": [], "runs_root": "runs"}));
    let err = generate(&p, &fixtures(), &|_, _, _| {}).expect_err("both forms at once");
    assert!(
        err.to_string().contains("either `runs` or `runs_root`"),
        "{err}"
    );
}

/// The paper profile's Table 2 runs: several settings share a row, and the report names each
/// one's optimization; runs that are not a Table 2 experiment get no row.
#[test]
fn table2_rows_name_each_runs_optimization() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = std::fs::read(fixtures().join("evals/cifar-sn-1/metrics.json")).expect("read");
    let runs = [
        (
            "sn-cnn-cifar10-A",
            "cifar10",
            "cnn",
            64,
            64,
            "standard",
            "A",
            100_000,
        ),
        (
            "sn-cnn-cifar10-C",
            "cifar10",
            "cnn",
            64,
            64,
            "standard",
            "C",
            100_000,
        ),
        (
            "sn-cnn-stl10-B-2x",
            "stl10",
            "cnn",
            64,
            64,
            "standard",
            "B",
            200_000,
        ),
        (
            "sn-cnn-stl10-hinge-B-2x",
            "stl10",
            "cnn",
            64,
            64,
            "hinge",
            "B",
            200_000,
        ),
        // The SR grid's B128-64 is not the SN paper's ResNet (D ch 128, batch 64 there).
        (
            "sr-B128-64-none",
            "cifar10",
            "resnet",
            256,
            64,
            "hinge",
            "resnet",
            50_000,
        ),
    ];
    let mut specs = Vec::new();
    for (name, data, arch, g_ch, d_ch, loss, optimizer, iterations) in runs {
        let run = dir.path().join("runs").join(name);
        std::fs::create_dir_all(&run).expect("mkdir");
        let batch = if arch == "resnet" { 128 } else { 64 };
        let params = serde_json::json!({
            "dataset": format!("data/{data}.safetensors"),
            "model": {"arch": arch, "g_ch": g_ch, "d_ch": d_ch},
            "batch_size": batch, "iterations": iterations, "loss": loss,
            "optimizer": optimizer, "sr": "none", "seed": 1,
        });
        std::fs::write(run.join("params.json"), params.to_string()).expect("write");
        let eval = dir.path().join("evals").join(name).join("metrics.json");
        std::fs::create_dir_all(eval.parent().expect("parent")).expect("mkdir");
        std::fs::write(&eval, &metrics).expect("write");
        specs.push(serde_json::json!({
            "run": format!("runs/{name}"), "eval": format!("evals/{name}/metrics.json")
        }));
    }
    let p = params(serde_json::json!({"runs": specs, "paper": true, "figures": false}));
    let files = generate(&p, dir.path(), &|_, _, _| {}).expect("the report builds");
    let md = text(&files, "report.md");
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("| Standard CNN / ") || l.contains("| ResNet / "))
        .collect();
    let row = |opt: &str| {
        rows.iter()
            .find(|l| l.contains(opt))
            .unwrap_or_else(|| panic!("no Table 2 row with `{opt}`:\n{}", rows.join("\n")))
            .to_string()
    };
    // Our FID / IS are the fixture's final row (65, 4), beside the paper's cell of the column.
    let a = row("setting A (Adam α 0.0001, β1 0.5, β2 0.9, n_dis 5), 100K G updates");
    assert!(
        a.contains("| Standard CNN / SN-GANs |") && a.ends_with("| 7.42±.08 | 4 | 29.3 | 65 |"),
        "{a}"
    );
    let c = row("setting C (Adam α 0.0002, β1 0.5, β2 0.999, n_dis 1), 100K G updates");
    assert!(c.contains("| Standard CNN / SN-GANs |"), "{c}");
    let b2 = row("setting B (Adam α 0.0001, β1 0.5, β2 0.999, n_dis 1), 200K G updates");
    assert!(
        b2.contains("stl10") && b2.contains("| 8.69±.09 | 4 | 47.5 | 65 |"),
        "{b2}"
    );
    let hinge = rows
        .iter()
        .find(|l| l.contains("SN-GANs, hinge (2x updates)"))
        .expect("the STL-10 hinge 2x run has its row");
    assert!(hinge.contains("| 8.79±.14 | 4 | 43.2 | 65 |"), "{hinge}");
    assert_eq!(
        rows.len(),
        4,
        "the grid's ResNet is no Table 2 run:\n{}",
        rows.join("\n")
    );
}

/// With `pipeline` (`repro dag --json`), a run folder that no stage of the pipeline makes (a
/// pilot's run left in the folder) is named, not counted; without it, every folder counts.
#[test]
fn folders_the_pipeline_does_not_make_are_left_out_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made: Vec<String> = std::fs::read_dir(fixtures().join("runs"))
        .expect("list runs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "ring-sn-2" && name != "grid-sn-1")
        .map(|name| format!("runs/{name}"))
        .collect();
    let pipeline = dir.path().join("pipeline.json");
    let json = serde_json::json!({"stages": [
        {"name": "train", "outs": made},
        {"name": "report", "outs": ["unused"]},
    ]});
    std::fs::write(&pipeline, json.to_string()).expect("write");
    let mut p = full_params();
    p.figures = false;
    let all = report(&p);
    p.pipeline = Some(pipeline.clone());
    let files = report(&p);

    let runs = |files: &Files| {
        let csv = text(files, "runs.csv");
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        runs(&all).iter().any(|r| r == "ring-sn-2"),
        "{:?}",
        runs(&all)
    );
    let kept = runs(&files);
    assert_eq!(kept.len(), runs(&all).len() - 2, "{kept:?}");
    assert!(
        !kept.iter().any(|r| r == "ring-sn-2" || r == "grid-sn-1"),
        "{kept:?}"
    );
    let md = text(&files, "report.md");
    assert!(
        md.contains(
            "Left out, because no stage of this pipeline makes them: 2 run folder(s) \
             (`grid-sn-1`, `ring-sn-2`)."
        ),
        "{}",
        &md[..md.len().min(1500)]
    );
    assert!(!text(&all, "report.md").contains("Left out"));

    // `runs_root` written as `./runs/` names the same folders as the canonical outs.
    p.runs_root = Some("./runs/".into());
    let dotted = report(&p);
    assert_eq!(runs(&dotted), kept);
    p.runs_root = Some("runs".into());

    // A `pipeline` that cannot be read is an error naming it, not a report of every folder.
    p.pipeline = Some(dir.path().join("absent.json"));
    let err = generate(&p, &fixtures(), &|_, _, _| {}).expect_err("unreadable pipeline");
    assert!(err.to_string().contains("absent.json"), "{err}");
    std::fs::write(&pipeline, "{\"nodes\": []}").expect("write");
    p.pipeline = Some(pipeline);
    let err = generate(&p, &fixtures(), &|_, _, _| {}).expect_err("not a dag --json file");
    assert!(err.to_string().contains("repro dag --json"), "{err}");
}
