//! Every class of pipeline error has its own message, a `file:line:col`, and exit code 2.

use crate::harness::Project;

fn fails_with(yaml: &str, expected: &[&str]) {
    let p = Project::new(yaml);
    let out = p.repro(&["all"]);
    assert_eq!(out.code, 2, "{out:?}");
    for e in expected {
        assert!(out.stderr.contains(e), "expected `{e}` in:\n{out:?}");
    }
    assert!(!p.exists("repro.lock"), "a spec error runs nothing");
}

#[test]
fn unknown_key() {
    fails_with(
        "stages:\n  a:\n    cmd: echo\n    outz: [x]\n",
        &["pipeline.yaml:4:5", "outz"],
    );
}

#[test]
fn unknown_param_reference() {
    fails_with(
        "params:\n  lr: 1\nstages:\n  a:\n    cmd: echo ${lrr} > x\n    outs: [x]\n",
        &["pipeline.yaml:5:", "lrr"],
    );
    fails_with(
        "params:\n  lr: 1\nstages:\n  a:\n    cmd: echo > x\n    params: [lr, momentum]\n    outs: [x]\n",
        &["pipeline.yaml:6:", "momentum"],
    );
}

#[test]
fn two_stages_claim_one_out() {
    fails_with(
        "stages:\n  a:\n    cmd: echo a > x\n    outs: [x]\n  b:\n    cmd: echo b > x\n    outs: [x]\n",
        &["pipeline.yaml:7:", "out `x` of stage `b` is already an out of stage `a`"],
    );
}

#[test]
fn out_outside_the_workspace() {
    fails_with(
        "stages:\n  a:\n    cmd: echo > ../x\n    outs: [../x]\n",
        &["pipeline.yaml:4:", "outside"],
    );
    fails_with(
        "stages:\n  a:\n    cmd: echo > /tmp/x\n    outs: [/tmp/x]\n",
        &["pipeline.yaml:4:", "outside"],
    );
}

#[test]
fn cycle_is_printed() {
    fails_with(
        "stages:\n  a:\n    cmd: cp y x\n    deps: [y]\n    outs: [x]\n  b:\n    cmd: cp x y\n    deps: [x]\n    outs: [y]\n",
        &["cycle", "a -> b -> a"],
    );
}

#[test]
fn missing_dep() {
    fails_with(
        "stages:\n  a:\n    cmd: cp nothing.txt x\n    deps: [nothing.txt]\n    outs: [x]\n",
        &[
            "pipeline.yaml:4:",
            "dep `nothing.txt` of stage `a` does not exist and no stage makes it",
        ],
    );
}

#[test]
fn unknown_stage_kind_and_profile() {
    fails_with(
        "stages:\n  a:\n    builtin: no-such-kind\n    outs: [x]\n",
        &["pipeline.yaml:3:", "no-such-kind"],
    );
    let p = Project::new("params:\n  a: 1\nprofiles:\n  fast: {a: 2}\nstages:\n  s:\n    cmd: echo ${a} > x\n    outs: [x]\n");
    let out = p.repro(&["all", "--profile", "slow"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("slow") && out.stderr.contains("fast"),
        "{out:?}"
    );
}

#[test]
fn no_pipeline_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .arg("all")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `pipeline.yaml`"));
}

/// Every fixture in `tests/fixtures/spec/` through the real binary: its documented message on
/// stderr (first line `# error: ...` or `# error-prefix: ...`) and exit code 2, or success for
/// `# ok:` fixtures (checked with `repro dag`, which runs nothing).
#[test]
fn every_spec_fixture_gives_its_message_and_exit_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines = text.lines();
        let expect = lines.next().unwrap_or_default().to_string();
        let mut args = vec!["dag"];
        let extra: Vec<String> = lines
            .next()
            .and_then(|l| l.strip_prefix("# args: "))
            .map(|a| a.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        args.extend(extra.iter().map(String::as_str));
        let p = Project::new(&text);
        // Valid fixtures name scripts as deps; they must exist for the graph to be valid.
        for word in text.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == ',') {
            if word.ends_with(".py") {
                p.file(word, "");
            }
        }
        let out = p.repro(&args);
        let ok = if expect.starts_with("# ok:") {
            out.code == 0
        } else {
            let (prefix, exact) = match expect.strip_prefix("# error-prefix: ") {
                Some(m) => (m.to_string(), false),
                None => (expect.trim_start_matches("# error: ").to_string(), true),
            };
            let line = out
                .stderr
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            out.code == 2
                && if exact {
                    line == prefix
                } else {
                    line.starts_with(&prefix)
                }
        };
        if !ok {
            failures.push(format!("{}: expected {expect}\n{out:?}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
