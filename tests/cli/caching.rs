//! Freshness, the run cache and restores.

use crate::harness::Project;
use crate::FOUR_STAGES;

fn stages(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn second_run_does_nothing() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["all"]);
    assert_eq!(p.ran(), stages(&["gen", "scale", "shift", "sum"]));
    // (1..5)*2 + (1..5)+1 = 30 + 20
    assert_eq!(p.read("metrics.json").trim(), r#"{"total": 50}"#);
    let out = p.ok(&["all"]);
    assert!(p.ran().is_empty(), "nothing may run: {out:?}");
    assert!(out.stderr.contains("4 fresh"), "{out:?}");
    let status = p.repro(&["status"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("all 4 stages fresh"), "{status:?}");
}

#[test]
fn a_param_change_reruns_that_stage_and_its_downstream_and_reverting_restores() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["all"]);
    p.ran();

    let status = p.repro(&["status", "--set", "scale=3"]);
    assert_eq!(status.code, 1, "{status:?}");
    assert!(
        status
            .stdout
            .contains("scale: cmd changed, params.scale: 2 -> 3"),
        "{status:?}"
    );
    assert!(
        status.stdout.contains("sum: upstream scale stale"),
        "{status:?}"
    );

    p.ok(&["all", "--set", "scale=3"]);
    assert_eq!(p.ran(), stages(&["scale", "sum"]));
    assert_eq!(p.read("metrics.json").trim(), r#"{"total": 65}"#);

    // Back to scale=2: both stages come back from the run cache, nothing runs.
    let out = p.ok(&["all"]);
    assert!(p.ran().is_empty(), "{out:?}");
    assert!(out.stderr.contains("restored scale"), "{out:?}");
    assert!(out.stderr.contains("restored sum"), "{out:?}");
    assert_eq!(p.read("metrics.json").trim(), r#"{"total": 50}"#);
    assert_eq!(p.repro(&["status"]).code, 0);
}

#[test]
fn editing_a_dep_reruns_and_same_bytes_stop_the_cascade() {
    let p = Project::new(
        r#"
stages:
  upper:
    cmd: echo upper >> "$RUNLOG"; tr a-z A-Z < input.txt > upper.txt
    deps: [input.txt]
    outs: [upper.txt]
  count:
    cmd: echo count >> "$RUNLOG"; wc -c < upper.txt > count.txt
    deps: [upper.txt]
    outs: [count.txt]
"#,
    );
    p.file("input.txt", "hello\n");
    p.ok(&["all"]);
    assert_eq!(p.ran(), stages(&["count", "upper"]));

    p.file("input.txt", "world\n");
    let status = p.repro(&["status"]);
    assert!(
        status.stdout.contains("upper: dep input.txt modified"),
        "{status:?}"
    );
    p.ok(&["all"]);
    // upper.txt changed content but not length: count reruns (its dep changed) ...
    assert_eq!(p.ran(), stages(&["count", "upper"]));
    assert_eq!(p.read("upper.txt"), "WORLD\n");

    // ... while an edit that upper maps to the same bytes stops after upper.
    p.file("input.txt", "WORLD\n");
    p.ok(&["all"]);
    assert_eq!(p.ran(), stages(&["upper"]));
}

#[test]
fn deleting_or_editing_an_out_restores_it_from_the_cache() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["all"]);
    p.ran();
    std::fs::remove_file(p.root().join("data/scaled.txt")).unwrap();
    p.file("data/shifted.txt", "tampered\n");
    let status = p.repro(&["status"]);
    assert!(
        status.stdout.contains("out data/scaled.txt missing"),
        "{status:?}"
    );
    assert!(
        status.stdout.contains("out data/shifted.txt modified"),
        "{status:?}"
    );
    let out = p.ok(&["all"]);
    assert!(
        p.ran().is_empty(),
        "restoring must not run anything: {out:?}"
    );
    assert_eq!(p.read("data/scaled.txt"), "2\n4\n6\n8\n10\n");
    assert_eq!(p.read("data/shifted.txt"), "2\n3\n4\n5\n6\n");
    // The restored copy is not a link into the cache: editing it must not corrupt the cache.
    let meta = std::fs::symlink_metadata(p.root().join("data/scaled.txt")).unwrap();
    assert!(meta.file_type().is_file());
    assert!(!meta.permissions().readonly());
    p.file("data/scaled.txt", "edited\n");
    std::fs::remove_file(p.root().join("data/scaled.txt")).unwrap();
    p.ok(&["all"]);
    assert_eq!(p.read("data/scaled.txt"), "2\n4\n6\n8\n10\n");
}

#[test]
fn removing_a_declared_dep_reruns_the_stage() {
    let p = Project::new(
        r#"
stages:
  s:
    cmd: echo s >> "$RUNLOG"; cat a.txt > out.txt
    deps: [a.txt, b.txt]
    outs: [out.txt]
"#,
    );
    p.file("a.txt", "a\n");
    p.file("b.txt", "b\n");
    p.ok(&["all"]);
    p.ran();
    p.file(
        "pipeline.yaml",
        r#"
stages:
  s:
    cmd: echo s >> "$RUNLOG"; cat a.txt > out.txt
    deps: [a.txt]
    outs: [out.txt]
"#,
    );
    let status = p.repro(&["status"]);
    assert!(status.stdout.contains("dep b.txt removed"), "{status:?}");
    p.ok(&["all"]);
    assert_eq!(p.ran(), stages(&["s"]));
}

#[test]
fn always_changed_runs_every_time_and_frozen_never() {
    let p = Project::new(
        r#"
stages:
  clock:
    cmd: echo clock >> "$RUNLOG"; echo tick > tick.txt
    outs: [tick.txt]
    always_changed: true
  ice:
    cmd: echo ice >> "$RUNLOG"; echo cold > ice.txt
    outs: [ice.txt]
    frozen: true
"#,
    );
    p.ok(&["all"]);
    assert_eq!(p.ran(), stages(&["clock"]));
    p.ok(&["all"]);
    assert_eq!(p.ran(), stages(&["clock"]));
    assert!(!p.exists("ice.txt"));
}

#[test]
fn persist_outs_are_seen_by_the_next_run() {
    let p = Project::new(
        r#"
params:
  n: 1
stages:
  grow:
    cmd: mkdir -p run && echo ${n} >> run/history.txt
    outs: [{path: run, persist: true}]
    params: [n]
"#,
    );
    p.ok(&["all"]);
    p.ok(&["all", "--set", "n=2"]);
    assert_eq!(p.read("run/history.txt"), "1\n2\n");
}

#[test]
fn metrics_show_and_diff() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["all"]);
    let show = p.ok(&["metrics", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(v["metrics.json"]["total"], 50);
    p.file("metrics.json", "{\"total\": 47}\n");
    let diff = p.ok(&["metrics", "diff", "--md"]);
    assert!(
        diff.stdout
            .contains("| metrics.json | total | 50 | 47 | -3 |"),
        "{diff:?}"
    );
}

#[test]
fn verify_reruns_and_compares() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["all"]);
    p.ran();
    let out = p.repro(&["verify", "scale"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("identical  data/scaled.txt"), "{out:?}");
    assert_eq!(p.ran(), vec!["scale".to_string()]);
    // verify publishes nothing and leaves the stage fresh.
    assert_eq!(p.repro(&["status"]).code, 0);

    let nondet = Project::new(
        r#"
stages:
  noise:
    cmd: od -An -N8 -tx8 /dev/urandom > noise.txt
    outs: [noise.txt]
    deterministic: false
"#,
    );
    nondet.ok(&["all"]);
    let out = nondet.repro(&["verify", "noise"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("differs    noise.txt"), "{out:?}");
}

#[test]
fn gc_keeps_what_the_lock_needs() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["all", "--set", "scale=3"]);
    p.ok(&["all"]);
    let out = p.ok(&["gc"]);
    assert!(out.stdout.contains("deleted"), "{out:?}");
    // Everything the lock refers to is still restorable.
    std::fs::remove_file(p.root().join("data/scaled.txt")).unwrap();
    p.ran();
    p.ok(&["all"]);
    assert!(p.ran().is_empty());
    assert_eq!(p.read("data/scaled.txt"), "2\n4\n6\n8\n10\n");
}

#[test]
fn fsck_finds_a_corrupt_object_and_the_next_run_recovers() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["all"]);
    assert_eq!(
        p.ok(&["fsck"]).stdout.trim(),
        "every cached object matches its hash"
    );
    // Corrupt the object that holds data/scaled.txt, then lose the workspace copy too.
    let lock: serde_json::Value = serde_json::from_str(&p.read("repro.lock")).unwrap();
    let sha = lock["stages"]["scale"]["outputs"]["data/scaled.txt"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let object = p
        .root()
        .join(".repro/cache/v1/objects")
        .join(&sha[..2])
        .join(&sha[2..]);
    let mut perms = std::fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&object, perms).unwrap();
    std::fs::write(&object, "garbage\n").unwrap();
    let out = p.repro(&["fsck"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stdout.contains(&sha), "{out:?}");
    std::fs::remove_file(p.root().join("data/scaled.txt")).unwrap();
    p.ran();
    p.ok(&["all"]);
    assert_eq!(
        p.ran(),
        stages(&["scale"]),
        "no good copy: the stage reruns"
    );
    assert_eq!(p.read("data/scaled.txt"), "2\n4\n6\n8\n10\n");
}
