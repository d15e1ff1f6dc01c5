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
        "all", "run", "status", "dag", "gc", "fsck", "verify", "metrics", "builtin",
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
