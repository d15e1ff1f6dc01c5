//! Every class of pipeline error has its own message, a `file:line:col`, and exit code 2.

use std::time::{Duration, Instant};

use crate::harness::hostile::laughs;
use crate::harness::{Output, Project};

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

// ---- hostile and broken pipeline files (issue 19) ----

/// Runs `repro args` in `p` and measures it: the output, the wall time and, where GNU time is
/// installed (`/usr/bin/time`), repro's own peak resident memory in MiB. The peak cannot be
/// read from `wait4` here: a child forked from this (large) test process inherits its
/// high-water mark, so GNU time, small itself, forks repro and reports it. A run over 60 s is
/// killed and fails the test instead of hanging it.
fn measured(p: &Project, args: &[&str]) -> (Output, Duration, Option<u64>) {
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path, rss_path) = (
        logs.path().join("out"),
        logs.path().join("err"),
        logs.path().join("rss"),
    );
    let gnu_time = std::path::Path::new("/usr/bin/time");
    let mut cmd = if gnu_time.exists() {
        let mut c = std::process::Command::new(gnu_time);
        c.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_path)
            .arg(crate::harness::bin());
        c.args(args)
            .current_dir(p.root())
            .stdin(std::process::Stdio::null());
        c
    } else {
        p.command(args)
    };
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("run repro");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("repro {args:?} ran for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let out = Output {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
    };
    // GNU time writes "Command exited with non-zero status 2" before the number.
    let mib = std::fs::read_to_string(rss_path).ok().and_then(|t| {
        t.lines()
            .last()
            .and_then(|l| l.trim().parse::<u64>().ok())
            .map(|kib| kib / 1024)
    });
    (out, elapsed, mib)
}

#[test]
fn hostile_pipeline_files_fail_fast_in_little_memory() {
    let matrix: String = (0..10)
        .map(|k| format!("      k{k}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"))
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "billion laughs, level 6",
            laughs(6).into_bytes(),
            "pipeline.yaml:7:",
        ),
        (
            "billion laughs, level 7",
            laughs(7).into_bytes(),
            "pipeline.yaml:7:",
        ),
        (
            "billion laughs, level 10",
            laughs(10).into_bytes(),
            "pipeline.yaml:7:",
        ),
        (
            "100,000-deep flow nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            "pipeline.yaml:1:129: lists and maps nest more than 128 levels deep",
        ),
        (
            "100,000-deep block nesting",
            format!("{}x\n", "- ".repeat(100_000)).into_bytes(),
            "pipeline.yaml:1:257: lists and maps nest more than 128 levels deep",
        ),
        (
            "a 50 MB list",
            "- x\n".repeat(50 << 18).into_bytes(),
            "pipeline.yaml: the pipeline file is larger than the limit of 8 MiB",
        ),
        (
            "a 7 MB list",
            format!("params:\n  l:\n{}", "  - 1\n".repeat((7 << 20) / 6)).into_bytes(),
            "yaml values once aliases are expanded",
        ),
        (
            "a 10^10-member matrix",
            format!("stages:\n  t:\n    cmd: echo\n    matrix:\n{matrix}").into_bytes(),
            "pipeline.yaml:4:5: the pipeline has more than 10000 stages",
        ),
    ];
    let mut report = Vec::new();
    for (what, bytes, expected) in cases {
        let p = Project::new("");
        std::fs::write(p.root().join("pipeline.yaml"), &bytes).unwrap();
        let (out, elapsed, mib) = measured(&p, &["status"]);
        report.push(format!("{what}: {elapsed:.2?}, peak {mib:?} MiB"));
        assert_eq!(out.code, 2, "{what}: {out:?}");
        assert!(
            out.stderr.contains(expected),
            "{what}: expected `{expected}` in {out:?}"
        );
        // The targets are 1 s and 100 MB; the time bound leaves room for a slow, shared CI
        // machine. Memory is deterministic, so its bound is the target itself.
        assert!(elapsed < Duration::from_secs(5), "{what} took {elapsed:?}");
        if let Some(mib) = mib {
            assert!(mib < 100, "{what} peaked at {mib} MiB");
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let p = Project::new("\u{feff}stages:\n  a:\n    cmd: echo a > x\n    outs: [x]\n");
    let out = p.ok(&["dag"]);
    assert!(out.stdout.contains('a'), "{out:?}");
}

#[test]
fn invalid_utf8_names_its_line_column_and_byte() {
    let p = Project::new("");
    std::fs::write(
        p.root().join("pipeline.yaml"),
        b"stages:\n  a:\n    cmd: echo \xc3\xa9\xff\n",
    )
    .unwrap();
    let out = p.repro(&["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "pipeline.yaml:3:16: not valid UTF-8 at byte offset 29 (byte 0xff); save the file as UTF-8"
        ),
        "{out:?}"
    );
}

#[test]
fn a_cycle_names_where_each_stage_and_dep_is() {
    fails_with(
        "stages:\n  a:\n    cmd: cp y x\n    deps: [y]\n    outs: [x]\n  b:\n    cmd: cp x y\n    deps: [x]\n    outs: [y]\n",
        &["pipeline.yaml:2:3: the stages form a cycle: a -> b -> a; `a` (pipeline.yaml:2:3) makes `x`, read by `b` at pipeline.yaml:8:12; `b` (pipeline.yaml:6:3) makes `y`, read by `a` at pipeline.yaml:4:12; remove one of these deps to break the cycle"],
    );
}

#[test]
fn a_nul_in_a_name_or_path_is_refused_before_anything_runs() {
    fails_with(
        "stages:\n  a:\n    cmd: echo a > x\n    outs: [\"x\\0\"]\n",
        &["pipeline.yaml:4:12: out `x\\0` in stage `a` contains a NUL character"],
    );
    fails_with(
        "stages:\n  \"a\\0\":\n    cmd: echo a > x\n    outs: [x]\n",
        &["pipeline.yaml:2:3: stage name `a\\0` contains a NUL character"],
    );
}

#[test]
fn outs_that_would_destroy_the_project_are_refused_before_anything_runs() {
    for (out, what) in [
        ("pipeline.yaml", "is the pipeline file `pipeline.yaml`"),
        ("repro.lock", "is `repro.lock`"),
        (".repro", "is inside `.repro/`"),
        ("./.repro/lock-journal", "is inside `.repro/`"),
    ] {
        let p = Project::new(&format!(
            "stages:\n  bad:\n    cmd: echo > ran.txt\n    outs: [\"{out}\"]\n"
        ));
        let got = p.repro(&["all"]);
        assert_eq!(got.code, 2, "{out}: {got:?}");
        assert!(got.stderr.contains("pipeline.yaml:4:12:"), "{out}: {got:?}");
        assert!(got.stderr.contains(what), "{out}: {got:?}");
        assert!(!p.exists("ran.txt"), "{out}: the stage ran");
    }
    // With `-f`, the pipeline file's own name is what is reserved.
    let p = Project::new("stages: {}\n");
    p.file(
        "other.yaml",
        "stages:\n  bad:\n    cmd: echo > other.yaml\n    outs: [other.yaml]\n",
    );
    let got = p.repro(&["-f", "other.yaml", "all"]);
    assert_eq!(got.code, 2, "{got:?}");
    assert!(
        got.stderr.contains("the pipeline file `other.yaml`"),
        "{got:?}"
    );
    // A path that only starts like a reserved one is fine.
    let p = Project::new(
        "stages:\n  ok:\n    cmd: echo > repro.lock.txt\n    outs: [repro.lock.txt]\n",
    );
    p.ok(&["all"]);
}

#[test]
fn repro_spec_scale_raises_the_size_bounds_and_is_checked() {
    // 10,001 stages: one over the default bound, accepted with a factor of 2.
    let mut text = String::from("stages:\n");
    for i in 0..10_001 {
        text.push_str(&format!(
            "  s{i}:\n    cmd: echo {i} > o{i}.txt\n    outs: [o{i}.txt]\n"
        ));
    }
    let p = Project::new(&text);
    let over = p.repro(&["status"]);
    assert_eq!(over.code, 2, "{over:?}");
    assert!(over.stderr.contains("more than 10000 stages"), "{over:?}");
    let scaled = p
        .command(&["dag"])
        .env("REPRO_SPEC_SCALE", "2")
        .output()
        .unwrap();
    assert!(scaled.status.success(), "{scaled:?}");
    let bad = p
        .command(&["status"])
        .env("REPRO_SPEC_SCALE", "lots")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("`REPRO_SPEC_SCALE` must be a whole number"),
        "{bad:?}"
    );
}
