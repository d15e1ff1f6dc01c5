//! Parallelism, resources, GPU ids and the project lock.

use std::time::{Duration, Instant};

use crate::harness::Project;

#[test]
fn two_independent_stages_run_in_parallel() {
    let p = Project::new(
        r#"
stages:
  a:
    cmd: sleep 2; echo a > a.txt
    outs: [a.txt]
  b:
    cmd: sleep 2; echo b > b.txt
    outs: [b.txt]
"#,
    );
    let t = Instant::now();
    p.ok(&["all", "-j", "2"]);
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "two 2 s stages took {took:?} with -j 2"
    );
    assert!(p.exists("a.txt") && p.exists("b.txt"));
}

#[test]
fn gpu_ids_are_handed_out_and_a_third_gpu_stage_waits() {
    let mut yaml = String::from("stages:\n");
    for s in ["g1", "g2", "g3"] {
        yaml.push_str(&format!(
            "  {s}:\n    cmd: echo \"$CUDA_VISIBLE_DEVICES $(date +%s%N)\" > {s}.txt; sleep 1; date +%s%N >> {s}.txt\n    outs: [{s}.txt]\n    resources: {{gpus: 1}}\n"
        ));
    }
    let p = Project::new(&yaml);
    p.ok(&["all", "-j", "3", "--gpus", "0,1"]);
    let mut ids = Vec::new();
    let mut spans = Vec::new();
    for s in ["g1", "g2", "g3"] {
        let text = p.read(&format!("{s}.txt"));
        let mut lines = text.lines();
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        ids.push(first[0].to_string());
        let start: u128 = first[1].parse().unwrap();
        let end: u128 = lines.next().unwrap().trim().parse().unwrap();
        spans.push((start, end));
    }
    assert!(ids.iter().all(|i| i == "0" || i == "1"), "{ids:?}");
    assert_ne!(
        ids[0], ids[1],
        "the first two stages get different GPUs: {ids:?}"
    );
    // No moment when three stages held a GPU: g3 started after g1 or g2 ended.
    assert!(spans[2].0 >= spans[0].1.min(spans[1].1), "{spans:?}");

    let too_many = Project::new(
        "stages:\n  big:\n    cmd: echo x > x.txt\n    outs: [x.txt]\n    resources: {gpus: 2}\n",
    );
    let out = too_many.repro(&["all"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("needs 2 GPU(s) but the pool has 0"),
        "{out:?}"
    );
    // A dry run still works on a machine without GPUs.
    assert_eq!(too_many.repro(&["all", "--dry-run"]).code, 0);
}

#[test]
fn a_stage_wanting_every_cpu_is_not_overtaken_by_later_stages() {
    // `whole` is ready with the others but finds a cpu taken by `first`; the stages after it
    // in pipeline order must leave the cpus it waits for, or on a machine of two or more cpus
    // they take each one as it comes free and `whole` starts only when they have all started.
    let mut yaml = String::from(
        "stages:\n  first:\n    cmd: sleep 1; echo done > first.txt\n    outs: [first.txt]\n  \
         whole:\n    cmd: date +%s%N > whole.txt\n    outs: [whole.txt]\n    \
         resources: {cpus: 1024}\n",
    );
    for s in ["later1", "later2", "later3"] {
        yaml.push_str(&format!(
            "  {s}:\n    cmd: date +%s%N > {s}.txt; sleep 1\n    outs: [{s}.txt]\n"
        ));
    }
    let p = Project::new(&yaml);
    p.ok(&["all", "-j", "8"]);
    let start = |s: &str| -> u128 { p.read(&format!("{s}.txt")).trim().parse().unwrap() };
    let whole = start("whole");
    for s in ["later1", "later2", "later3"] {
        assert!(whole < start(s), "`{s}` started before `whole`");
    }
}

#[test]
fn concurrent_runs_wait_for_each_other_and_corrupt_nothing() {
    let p = Project::new(
        r#"
stages:
  a:
    cmd: sleep 1; seq 1 1000 > a.txt
    outs: [a.txt]
  b:
    cmd: sort -rn a.txt > b.txt
    deps: [a.txt]
    outs: [b.txt]
"#,
    );
    let first = p
        .command(&["all"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = p.repro(&["all"]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second
            .stderr
            .contains("waiting  for the project lock, held by pid"),
        "{second:?}"
    );
    assert!(
        second.stderr.contains("2 fresh"),
        "the second run found everything done: {second:?}"
    );
    let lock: serde_json::Value = serde_json::from_str(&p.read("repro.lock")).unwrap();
    assert_eq!(lock["stages"].as_object().unwrap().len(), 2);
    assert_eq!(p.repro(&["status"]).code, 0);
}

#[test]
fn no_wait_fails_with_its_own_exit_code() {
    let p = Project::new("stages:\n  a:\n    cmd: sleep 2; echo a > a.txt\n    outs: [a.txt]\n");
    let mut first = p
        .command(&["all"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let out = p.repro(&["all", "--no-wait"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("the project is locked by pid"),
        "{out:?}"
    );
    first.wait().unwrap();
}

#[test]
fn stages_report_progress_through_fd_3() {
    let p = Project::new(
        r#"
stages:
  counter:
    cmd: |
      for i in 1 2 3; do echo "{\"step\": $i, \"total\": 3, \"message\": \"tick $i\"}" >&3; done; echo ok > ok.txt
    outs: [ok.txt]
"#,
    );
    let out = p.ok(&["all", "--json"]);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let progress: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "progress").collect();
    assert_eq!(progress.len(), 3, "{out:?}");
    assert_eq!(progress[2]["message"], "tick 3");
    assert!(events
        .iter()
        .any(|e| e["event"] == "finished" && e["stage"] == "counter"));
}

#[test]
fn run_targets_select_upstream_single_and_downstream() {
    let p = Project::new(crate::FOUR_STAGES);
    p.ok(&["run", "scale"]);
    assert_eq!(p.ran(), vec!["gen".to_string(), "scale".to_string()]);
    p.ok(&["run", "--single", "shift"]);
    assert_eq!(p.ran(), vec!["shift".to_string()]);
    p.ok(&["run", "--downstream", "gen", "--force"]);
    assert_eq!(p.ran().len(), 4);
    let out = p.repro(&["run", "nope"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("unknown target `nope`"), "{out:?}");
}

#[test]
fn dry_run_says_what_would_run_and_runs_nothing() {
    let p = Project::new(crate::FOUR_STAGES);
    let out = p.ok(&["all", "--dry-run"]);
    assert!(p.ran().is_empty());
    assert!(out.stderr.contains("would run gen (never run)"), "{out:?}");
    assert!(out.stderr.contains("would run sum"), "{out:?}");
    assert!(!p.exists("repro.lock"));
}
