//! Fault injection: `kill -9` of `repro` at random moments, Ctrl-C twice, stages that leave
//! processes behind, and what a killed restore leaves on disk. After each fault the workspace,
//! the cache and the lock must agree with a run that never saw one, and no process of a stage
//! may be left running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::Project;

/// Stage commands record the pid of every process they start in `$PIDS/<stage>` (the shell
/// itself, a background child, a `setsid` daemon), so a test can check that none survives.
const DAG: &str = r#"
params:
  v: 1
stages:
  big:
    cmd:
      - echo $$ >> "$PIDS/big"; echo started > started.txt
      - mkdir -p data; head -c 3000000 /dev/zero | tr '\0' '${v}' > data/big.bin
      - sleep 0.${v}
    params: [v]
    outs: [data/big.bin]
  tree:
    cmd: |
      echo $$ >> "$PIDS/tree"
      mkdir -p data/tree/a data/tree/b
      for i in 1 2 3 4 5 6 7 8; do echo "${v} $i" > data/tree/a/$i.txt; echo $i > data/tree/b/$i.txt; done
      sleep 0.2
    params: [v]
    outs: [data/tree]
  down:
    cmd: echo $$ >> "$PIDS/down"; (cd data && find . -type f | sort && cat tree/a/1.txt) > listing.txt
    deps: [data]
    outs: [listing.txt]
  sum:
    cmd: |
      echo $$ >> "$PIDS/sum"
      sleep 300 & echo $! >> "$PIDS/sum"
      setsid sleep 300 & echo $! >> "$PIDS/sum"
      sh -c 'echo $$ >> "$PIDS/sum"; exec sleep 0.3'
      wc -c < data/big.bin > sum.txt; cat listing.txt >> sum.txt
    deps: [data/big.bin, listing.txt]
    outs: [sum.txt]
"#;

/// A project for [`DAG`] with its pid directory.
fn dag_project() -> (Project, PathBuf) {
    let p = Project::new(DAG);
    let pids = p.root().with_extension("pids");
    std::fs::create_dir_all(&pids).unwrap();
    (p, pids)
}

fn command(p: &Project, pids: &Path, args: &[&str]) -> std::process::Command {
    let mut c = p.command(args);
    c.env("PIDS", pids)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// Every pid any stage ever recorded.
fn recorded_pids(pids: &Path) -> Vec<i32> {
    std::fs::read_dir(pids)
        .map(|d| {
            d.flatten()
                .flat_map(|f| {
                    std::fs::read_to_string(f.path())
                        .unwrap_or_default()
                        .lines()
                        .filter_map(|l| l.trim().parse().ok())
                        .collect::<Vec<i32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .next();
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Waits (5 s at most) until none of the recorded processes is alive; panics naming survivors.
fn assert_no_survivor(pids: &Path, when: &str) {
    let start = Instant::now();
    loop {
        let survivors: Vec<i32> = recorded_pids(pids)
            .into_iter()
            .filter(|&p| alive(p))
            .collect();
        if survivors.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(5) {
            for p in &survivors {
                // Do not leave them running after the test fails.
                // SAFETY: plain kill.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            panic!("{when}: stage processes survived: {survivors:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files below `dir` (relative paths, sorted), skipping `.repro`.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".repro" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// A tiny deterministic generator, so every CI run tries the same schedule of kills.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_kills_leave_a_workspace_identical_to_a_clean_run() {
    let (p, pids) = dag_project();
    let mut rng = Lcg(20261205);
    // 20 in CI; `REPRO_FAULT_ROUNDS=50` for the issue's full count.
    let rounds: u32 = std::env::var("REPRO_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    for round in 0..rounds {
        let v = 1 + rng.next(3);
        let set = format!("v={v}");
        let mut child = command(&p, &pids, &["all", "--set", &set, "-j", "2"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.next(900)));
        // SAFETY: plain kill of our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        assert_no_survivor(&pids, &format!("round {round} (v={v})"));
    }

    // Recovery: one normal run brings everything up to date, and then all checks agree.
    let out = command(&p, &pids, &["all", "--set", "v=1"])
        .status()
        .unwrap();
    assert!(out.success(), "the run after the kills failed");
    assert_no_survivor(&pids, "after the recovery run");
    let status = p.repro(&["status", "--set", "v=1"]);
    assert_eq!(status.code, 0, "{status:?}");
    let fsck = p.repro(&["fsck"]);
    assert_eq!(fsck.code, 0, "{fsck:?}");

    let (clean, clean_pids) = dag_project();
    let out = command(&clean, &clean_pids, &["all", "--set", "v=1"])
        .status()
        .unwrap();
    assert!(out.success());
    assert_no_survivor(&clean_pids, "after the clean run");

    // No stray file anywhere: the same files, byte for byte.
    let (got, want) = (files(p.root()), files(clean.root()));
    assert_eq!(got, want, "files after the kills differ from a clean run");
    for rel in &want {
        assert!(
            std::fs::read(p.root().join(rel)).unwrap()
                == std::fs::read(clean.root().join(rel)).unwrap(),
            "`{rel}` differs from a clean run"
        );
    }
    assert_eq!(p.staging_entries(), 0, "staging directories left behind");
}

#[test]
fn no_stage_process_outlives_a_kill_9_of_repro() {
    let p = Project::new(
        r#"
stages:
  slow:
    cmd: |
      sleep 300 & echo $! >> "$PIDS/slow"
      setsid sleep 300 & echo $! >> "$PIDS/slow"
      echo started > started.txt
      sh -c 'echo $$ >> "$PIDS/slow"; exec sleep 300'
    outs: [out.txt]
"#,
    );
    let pids = p.root().with_extension("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let mut child = command(&p, &pids, &["all"]).spawn().unwrap();
    p.wait_until_staged("started.txt", "started");
    // Let the last command start too.
    let start = Instant::now();
    while recorded_pids(&pids).len() < 3 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(recorded_pids(&pids).len(), 3);
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert_no_survivor(&pids, "after kill -9 of repro");
}

#[test]
fn processes_a_stage_leaves_behind_are_killed_when_it_ends() {
    let p = Project::new(
        r#"
stages:
  leaky:
    cmd: |
      (sleep 300; echo late > "$PIDS/late") & echo $! >> "$PIDS/leaky"
      setsid sleep 300 & echo $! >> "$PIDS/leaky"
      echo done > out.txt
    outs: [out.txt]
"#,
    );
    let pids = p.root().with_extension("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let out = command(&p, &pids, &["all"]).status().unwrap();
    assert!(out.success());
    assert_no_survivor(&pids, "after the stage ended");
    assert_eq!(p.read("out.txt"), "done\n");
    let runs = p.ok(&["runs", "--json"]);
    let log_path = runs
        .stdout
        .split('"')
        .find(|s| s.ends_with("leaky.log"))
        .unwrap_or_else(|| panic!("no log in {runs:?}"))
        .to_string();
    let log = p.read(&log_path);
    // The subshell, its sleep and the setsid'ed sleep (the subshell may not have started its
    // sleep yet when the command ends).
    assert!(
        log.contains("left 3 process(es) running") || log.contains("left 2 process(es) running"),
        "{log}"
    );
}

#[test]
fn a_second_ctrl_c_kills_a_stage_that_ignores_the_first_and_records_it() {
    let p = Project::new(
        r#"
stages:
  stubborn:
    cmd: |
      trap '' INT
      echo $$ >> "$PIDS/stubborn"
      sleep 300 & echo $! >> "$PIDS/stubborn"
      echo started > started.txt
      wait
    outs: [out.txt]
"#,
    );
    let pids = p.root().with_extension("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let child = p
        .command(&["all"])
        .env("PIDS", &pids)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    p.wait_until_staged("started.txt", "started");
    let t = Instant::now();
    // SAFETY: plain kills of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the second Ctrl-C must not wait for the grace period: {stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped  stubborn (interrupted)"),
        "{stderr}"
    );
    assert_no_survivor(&pids, "after two Ctrl-C");
    let runs = p.ok(&["runs", "--json"]);
    assert!(runs.stdout.contains("\"interrupted\""), "{runs:?}");
    assert_eq!(
        p.staging_entries(),
        0,
        "the stage's staging folder is left behind"
    );
}

#[test]
fn what_a_killed_restore_leaves_is_never_read_and_is_swept() {
    let (p, pids) = dag_project();
    assert!(command(&p, &pids, &["all"]).status().unwrap().success());
    let listing = p.read("listing.txt");
    // What a kill -9 in the middle of restoring `data/big.bin` and `data/tree` leaves behind.
    p.file("data/.big.bin.4242-0.repro-tmp", "half a file");
    p.file("data/.tree.4242-1.repro-tmp/a/1.txt", "half a tree");
    p.file(".repro.lock.4242-2.repro-tmp", "half a lock");
    // Nothing sees them: the stage that lists `data` is still fresh.
    let status = p.repro(&["status"]);
    assert_eq!(status.code, 0, "{status:?}");
    // The next run removes them, says so, and leaves everything else alone.
    let out = p.ok(&["all"]);
    assert!(
        out.stderr
            .contains("removed `data/.big.bin.4242-0.repro-tmp`, left half-written"),
        "{out:?}"
    );
    for rel in [
        "data/.big.bin.4242-0.repro-tmp",
        "data/.tree.4242-1.repro-tmp",
        ".repro.lock.4242-2.repro-tmp",
    ] {
        assert!(!p.exists(rel), "`{rel}` is still there");
    }
    // A rerun of the listing stage does not see them either.
    p.file("data/.big.bin.4243-0.repro-tmp", "half a file");
    let _ = command(&p, &pids, &["run", "--force", "-s", "down"])
        .status()
        .unwrap();
    assert_eq!(p.read("listing.txt"), listing);
}

#[test]
fn a_stage_writing_its_out_through_an_absolute_path_is_told_so() {
    let p = Project::new(
        r#"
stages:
  escape:
    cmd: echo escaped > "$REPRO_WORKSPACE/out.txt"
    outs: [out.txt]
"#,
    );
    let out = p.repro(&["all"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("wrote its out `out.txt` into the workspace"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("instead of its staging directory"),
        "{out:?}"
    );
}

#[test]
fn a_run_that_never_starts_prints_no_summary() {
    let p = Project::new(
        r#"
stages:
  a:
    cmd: echo a > a.txt
    outs: [a.txt]
"#,
    );
    p.file("repro.lock", "{ not json");
    let out = p.repro(&["all"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(!out.stderr.contains("nothing to do"), "{out:?}");
}
