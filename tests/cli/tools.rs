//! `repro dag`, `repro builtin` and the CLI surface.

use crate::harness::Project;

#[test]
fn dag_mermaid_matches_the_snapshot() {
    let p = Project::new(crate::FOUR_STAGES);
    let out = p.ok(&["dag", "--mermaid"]);
    insta::assert_snapshot!("four_stages_mermaid", out.stdout);
    let ascii = p.ok(&["dag"]);
    assert!(ascii.stdout.contains("sum <- scale, shift"), "{ascii:?}");
    let dot = p.ok(&["dag", "--dot"]);
    assert!(dot.stdout.contains("\"gen\" -> \"scale\";"), "{dot:?}");
}

#[test]
fn unknown_builtin_lists_the_known_ones() {
    let p = Project::new("stages: {}\n");
    let out = p.repro(&["builtin", "no-such-kind"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("unknown builtin `no-such-kind`; known builtins:"),
        "{out:?}"
    );
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "all", "run", "status", "dag", "gc", "fsck", "runs", "verify", "spectrum", "fid",
        "metrics", "builtin",
    ] {
        let out = std::process::Command::new(crate::harness::bin())
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: repro"),
            "{cmd}"
        );
    }
}

#[test]
fn status_output_is_the_contract() {
    let p = Project::new(crate::FOUR_STAGES);
    p.ok(&["all"]);
    let out = p.repro(&["status", "--set", "scale=3"]);
    assert_eq!(out.code, 1);
    insta::assert_snapshot!("status_after_param_change", out.stdout);
    let json = p.repro(&["status", "--set", "scale=3", "--json"]);
    insta::assert_snapshot!("status_after_param_change_json", json.stdout);
}

#[test]
fn runs_lists_the_latest_record_of_each_stage_even_from_inside_a_stage_via_repro_exe() {
    let p = Project::new(&format!(
        "{}  table:\n    cmd: '\"$REPRO_EXE\" -C \"$REPRO_WORKSPACE\" runs --csv > runs.csv'\n    deps: [metrics.json]\n    outs: [runs.csv]\n    always_changed: true\n",
        crate::FOUR_STAGES,
    ));
    p.ok(&["all", "-j", "1"]);
    let runs = p.read("runs.csv");
    assert!(
        runs.starts_with("stage,outcome,wall_s,peak_rss_mib,cache_hit,run\n"),
        "{runs}"
    );
    for s in ["gen", "scale", "shift", "sum"] {
        assert!(runs.contains(&format!("\n{s},succeeded,")), "{runs}");
    }
    let json = p.ok(&["runs", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5);
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["peak_rss_kib"].as_u64().unwrap() > 0));
}

#[test]
fn fid_of_statistics_and_a_clear_error_without_weights() {
    let p = Project::new("stages: {}\n");
    let stats = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("stages/tests/fixtures/inception/stats_a.npz");
    let stats = stats.to_str().unwrap();
    let out = p.ok(&["fid", stats, stats, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v["fid"].as_f64().unwrap().abs() < 1e-6, "{out:?}");

    std::fs::create_dir_all(p.root().join("imgs")).unwrap();
    let out = p.repro(&["fid", "imgs", stats]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("no FID Inception weights at `data/fid/inception.safetensors`"),
        "{out:?}"
    );
}

/// The papers' pipeline is valid under both profiles on a machine with no GPU and no data.
#[test]
fn the_papers_pipeline_plans_under_both_profiles() {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml")).unwrap();
    let p = Project::new(&yaml);
    let quick = p.ok(&["dag"]);
    assert!(
        quick
            .stdout
            .contains("toy-eval@ring-32-32-none-1 <- toy@ring-32-32-none-1"),
        "{quick:?}"
    );
    assert!(
        !quick.stdout.contains("sr-grid"),
        "paper-only stages stay out of quick"
    );
    let paper = p.ok(&["dag", "--profile", "paper", "--mermaid"]);
    assert!(
        paper.stdout.contains("sr-grid@D512-256-static"),
        "{paper:?}"
    );
    assert!(
        paper.stdout.contains("sr-grid-eval@C8-32-none") && !paper.stdout.contains("stacked-eval"),
        "the paper profile evaluates its CIFAR-10 runs and has no Stacked MNIST grid"
    );
    let dry = p.ok(&["all", "--profile", "paper", "--dry-run"]);
    assert!(
        dry.stderr.contains("would run sr-grid@B256-64-static"),
        "{dry:?}"
    );
    p.ok(&["all", "--dry-run"]);
    assert!(
        !p.exists("repro.lock") && !p.exists("data"),
        "a dry run writes nothing"
    );
}
