//! Failed, killed and interrupted stages leave the workspace and the cache consistent.

use std::time::{Duration, Instant};

use crate::harness::Project;

const FLAKY: &str = r#"
params:
  fail: 0
stages:
  make:
    cmd: echo make >> "$RUNLOG"; echo "v${fail}" > partial.txt; test ${fail} = 0 && echo good > out.txt
    outs: [out.txt]
    params: [fail]
  after:
    cmd: echo after >> "$RUNLOG"; cat out.txt > after.txt
    deps: [out.txt]
    outs: [after.txt]
  other:
    cmd: echo other >> "$RUNLOG"; echo other > other.txt
    outs: [other.txt]
"#;

#[test]
fn a_failing_stage_keeps_the_previous_outputs_and_lock_entry() {
    let p = Project::new(FLAKY);
    p.ok(&["all", "-j", "1"]);
    let lock_before = p.read("repro.lock");
    p.ran();

    let out = p.repro(&["all", "--set", "fail=1", "-j", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("failed   make: exit code 1"), "{out:?}");
    assert!(out.stderr.contains("log: .repro/runs/"), "{out:?}");
    assert_eq!(p.read("out.txt"), "good\n", "the last good output survives");
    assert!(
        !p.exists("partial.txt"),
        "undeclared files of a failed stage never reach the workspace"
    );
    assert_eq!(
        p.read("repro.lock"),
        lock_before,
        "the lock entry is untouched"
    );
    // The failure is recorded, with its log.
    let runs = std::fs::read_dir(p.root().join(".repro/runs"))
        .unwrap()
        .count();
    assert!(runs >= 2);
    // Still stale, for the right reason; the next good run fixes it.
    let status = p.repro(&["status", "--set", "fail=1"]);
    assert!(
        status
            .stdout
            .contains("make: last run failed (log: .repro/runs/"),
        "{status:?}"
    );
    assert!(
        status.stdout.contains(", cmd changed, params.fail: 0 -> 1"),
        "{status:?}"
    );
}

#[test]
fn keep_going_runs_what_does_not_depend_on_the_failure() {
    let p = Project::new(FLAKY);
    let out = p.repro(&["all", "--set", "fail=1", "--keep-going", "-j", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("skipped  after (upstream make failed)"),
        "{out:?}"
    );
    assert!(p.exists("other.txt"));
    let ran = p.ran();
    assert!(
        ran.contains(&"other".to_string()) && !ran.contains(&"after".to_string()),
        "{ran:?}"
    );
}

const SLOW: &str = r#"
params:
  v: 1
stages:
  slow:
    cmd: echo ${v} > started.txt; sleep 30; echo ${v} > out.txt
    outs: [out.txt, started.txt]
    params: [v]
  quick:
    cmd: echo quick > quick.txt
    outs: [quick.txt]
"#;

#[test]
fn kill_9_mid_stage_leaves_a_workspace_the_next_run_completes() {
    let p = Project::new(SLOW);
    // Only v=2 sleeps, so the first and the last run are quick.
    p.file(
        "pipeline.yaml",
        &SLOW.replace("sleep 30", "if [ ${v} = 2 ]; then sleep 30; fi"),
    );
    p.ok(&["all", "-j", "1"]);
    let lock_before = p.read("repro.lock");

    let mut child = p
        .command(&["all", "--set", "v=2", "-j", "1"])
        .spawn()
        .unwrap();
    // Wait until the slow stage is inside its sleep (it wrote started.txt into its staging dir).
    p.wait_until_staged("started.txt", "2");
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();

    assert_eq!(
        p.read("out.txt"),
        "1\n",
        "the published out is the previous good one"
    );
    assert_eq!(p.read("repro.lock"), lock_before);
    // The next run is not blocked by a stale lock and finishes the job.
    let out = p.ok(&["all", "--set", "v=3", "--no-wait", "-j", "1"]);
    assert!(
        out.stderr.contains("done     slow") || out.stderr.contains("running  slow"),
        "{out:?}"
    );
    assert_eq!(p.read("out.txt"), "3\n");
    assert_eq!(p.repro(&["status", "--set", "v=3"]).code, 0);
    // Nothing of the killed run is left in staging.
    assert_eq!(p.staging_entries(), 0);
}

#[test]
fn ctrl_c_interrupts_the_stages_records_them_and_releases_the_lock() {
    let p = Project::new(SLOW);
    let child = p
        .command(&["all", "-j", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    p.wait_until_staged("started.txt", "1");
    let t = Instant::now();
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    // Well under the stage's 30 s sleep, so the interrupt stopped it; not tighter, since a busy
    // machine (a CI box running other jobs) can delay the reaction by seconds.
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the interrupt must stop the 30 s stage promptly (took {:?})",
        t.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped  slow (interrupted)"), "{stderr}");
    assert!(!p.exists("out.txt"));
    // The run record says so, and the lock is free.
    let records: Vec<String> = walk_json(&p.root().join(".repro/runs"));
    assert!(
        records.iter().any(|r| r.contains("\"interrupted\"")),
        "{records:?}"
    );
    let status = p.repro(&["status"]);
    assert!(
        status.stdout.contains("slow: last run interrupted"),
        "{status:?}"
    );
    let again = p.repro(&["run", "quick", "--no-wait"]);
    assert_eq!(again.code, 0, "{again:?}");
}

fn walk_json(dir: &std::path::Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                v.extend(walk_json(&e.path()));
            } else if e.path().extension().is_some_and(|x| x == "json") {
                v.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    v
}

#[test]
fn a_stage_that_does_not_create_its_out_fails_clearly() {
    let p = Project::new(
        r#"
stages:
  lazy:
    cmd: "true"
    outs: [never.txt]
"#,
    );
    let out = p.repro(&["all"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("did not create its out `never.txt`"),
        "{out:?}"
    );
    assert!(!p.exists("repro.lock") || !p.read("repro.lock").contains("lazy"));
}
