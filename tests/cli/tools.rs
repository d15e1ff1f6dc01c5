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
fn dag_json_lists_each_stage_with_its_deps_outs_and_upstream() {
    let p = Project::new(crate::FOUR_STAGES);
    let out = p.ok(&["dag", "--json"]);
    insta::assert_snapshot!("four_stages_json", out.stdout);
}

/// A stage that calls `repro` sees the pipeline of the run that started it: the profile and
/// `--set` reach it (REPRO_PROFILE, REPRO_SET), and, named in its `env:`, enter its fingerprint,
/// so other overrides rerun it.
#[test]
fn a_stage_calling_repro_sees_the_runs_profile_and_overrides() {
    let p = Project::new(
        r#"
params:
  seeds: [1]
profiles:
  wide: {seeds: [1, 2, 3]}
stages:
  train:
    matrix: {seed: "${seeds}"}
    cmd: echo ${item.seed} > out-${item.seed}.txt
    outs: ["out-${item.seed}.txt"]
  graph:
    cmd: '"$REPRO_EXE" -C "$REPRO_WORKSPACE" dag > graph.txt'
    env: [REPRO_PROFILE, REPRO_SET]
    outs: [graph.txt]
"#,
    );
    p.ok(&["run", "graph", "--profile", "wide"]);
    assert!(
        p.read("graph.txt").contains("train@3"),
        "{}",
        p.read("graph.txt")
    );
    let fresh = p.ok(&["status", "graph", "--profile", "wide"]);
    assert!(fresh.stdout.contains("fresh"), "{fresh:?}");

    let set = ["--profile", "wide", "--set", "seeds=[1, 2]"];
    let stale = p.repro(&[&["status", "graph"][..], &set].concat());
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(
        stale.stdout.contains("graph: env REPRO_SET changed"),
        "{stale:?}"
    );
    p.ok(&[&["run", "graph"][..], &set].concat());
    let graph = p.read("graph.txt");
    assert!(
        graph.contains("train@2") && !graph.contains("train@3"),
        "{graph}"
    );

    // Without a profile or overrides the stage sees the plain pipeline, and reruns again.
    p.ok(&["run", "graph"]);
    let graph = p.read("graph.txt");
    assert!(
        graph.contains("train@1") && !graph.contains("train@2"),
        "{graph}"
    );
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
        "metrics", "builtin", "exp", "params",
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
            .contains("toy-eval@32-dynamic-1 <- toy@32-dynamic-1"),
        "{quick:?}"
    );
    for paper_only in [
        "sr-grid",
        "sn-table2",
        "stl10",
        "stl-ref",
        "image@",
        "classifier",
        "mnist",
    ] {
        assert!(
            !quick.stdout.contains(paper_only),
            "paper-only stage `{paper_only}` stays out of quick"
        );
    }
    let paper = p.ok(&["dag", "--profile", "paper", "--mermaid"]);
    assert!(
        paper.stdout.contains("sr-grid@D512-256-static"),
        "{paper:?}"
    );
    assert!(
        paper.stdout.contains("sr-grid-eval@C8-32-none")
            && paper.stdout.contains("stacked-eval@32-64-static"),
        "the paper profile evaluates its CIFAR-10 runs and its Stacked MNIST grid"
    );
    // Group E on STL-10 at 48x48, its data and reference, and the SN paper's Table 2 runs: each
    // stage with the upstream stages it must wait for.
    let plain = p.ok(&["dag", "--profile", "paper"]);
    for (stage, upstream) in [
        ("sr-grid@E256-32-static", &["stl10"][..]),
        ("stl-ref", &["stl10", "fid-inception"][..]),
        (
            "sr-grid-eval@E256-32-static",
            &["sr-grid@E256-32-static", "stl-ref"][..],
        ),
        ("sn-table2@cnn-stl10-hinge-B-2x", &["stl10"][..]),
        ("sn-table2@resnet-cifar10-hinge-s3", &["cifar10"][..]),
        ("sn-table2@resnet-stl10-hinge-s2", &["stl10"][..]),
        (
            "sn-table2-eval@cnn-cifar10-D",
            &["sn-table2@cnn-cifar10-D", "cifar-ref"][..],
        ),
        ("sr-grid-spectral@C8-32-none", &["sr-grid@C8-32-none"][..]),
    ] {
        let line = plain
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{stage} <- ")))
            .unwrap_or_else(|| panic!("no `{stage}` with upstream stages: {plain:?}"));
        let deps: Vec<&str> = line
            .split(" <- ")
            .nth(1)
            .unwrap_or("")
            .split(", ")
            .collect();
        for u in upstream {
            assert!(deps.contains(u), "`{stage}` must wait for `{u}`: {line}");
        }
    }
    let dry = p.ok(&["all", "--profile", "paper", "--dry-run"]);
    for stage in [
        "sr-grid@B256-64-static",
        "stl10",
        "stl-ref",
        "sr-grid@E16-128-none",
        "sn-table2@cnn-cifar10-A",
        "sn-table2-eval@cnn-stl10-B-2x",
    ] {
        assert!(
            dry.stderr.contains(&format!("would run {stage} (")),
            "`{stage}` not planned: {dry:?}"
        );
    }
    p.ok(&["all", "--dry-run"]);
    assert!(
        !p.exists("repro.lock") && !p.exists("data"),
        "a dry run writes nothing"
    );
}
