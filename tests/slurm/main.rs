//! The SLURM executor against a real one-node cluster (slurmctld + slurmd + munged, two fake
//! GPUs), started by `scripts/slurm/up.sh`; `scripts/test.sh` starts it and exports
//! `SLURM_CONF`. Without a cluster every test prints `skipped: <why>` and passes, except in CI
//! (`CI=true`), where a missing cluster fails them.
//!
//! The tests share one small cluster whose timing they observe, so they take turns ([`SERIAL`]).
//! Stages record `date +%s%N` at their start and end: what ran at the same time is read from
//! those spans, never from how long `repro` took.

#[path = "../common/mod.rs"]
mod harness;

use std::io::Write;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use harness::Project;

static SERIAL: Mutex<()> = Mutex::new(());

/// The cluster, if it is up; `None` (after saying why) when the test must be skipped.
fn cluster(test: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(why) = cluster_problem() else {
        return Some(guard);
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: the slurm cluster is not up in CI: {why}");
    }
    // Straight to the stderr handle: libtest captures `eprintln!`, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
    None
}

fn cluster_problem() -> Option<String> {
    // A node finishing the previous test's job is `completing` for a moment (longer on a busy
    // machine): a passing state, so wait for it (30 s at most) before judging the cluster.
    let start = Instant::now();
    loop {
        match node_problem() {
            Some(why)
                if why.contains("completing") && start.elapsed() < Duration::from_secs(30) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            problem => return problem,
        }
    }
}

fn node_problem() -> Option<String> {
    if std::env::var_os("SLURM_CONF").is_none() {
        return Some(
            "`SLURM_CONF` is not set; start a cluster with `scripts/slurm/up.sh` and export the `SLURM_CONF` it prints (scripts/test.sh does both)".into(),
        );
    }
    match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Err(e) => Some(format!("cannot run `sinfo`: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "`sinfo` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(o) => {
            let states = String::from_utf8_lossy(&o.stdout).to_string();
            let usable = states
                .lines()
                .any(|s| s.starts_with("idle") || s.starts_with("mixed") || s.starts_with("alloc"));
            (!usable).then(|| format!("no usable node (`sinfo` says `{}`)", states.trim()))
        }
    }
}

/// Job names of ours (`repro:<stage>`) that SLURM still lists.
fn queued(stages: &[&str]) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%j %i %T"])
        .output()
        .expect("squeue");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            stages
                .iter()
                .any(|s| l.split_whitespace().next() == Some(&format!("repro:{s}")))
        })
        .map(str::to_string)
        .collect()
}

/// A stage that writes `<name>.txt`: its job id, its GPUs, its start; then sleeps; then its end.
fn timed_stage(name: &str, sleep: u32, resources: &str) -> String {
    format!(
        "  {name}:\n    cmd: echo {name} >> \"$RUNLOG\"; echo \"$${{SLURM_JOB_ID:-none}} $${{CUDA_VISIBLE_DEVICES:-none}} $(date +%s%N)\" > {name}.txt; sleep {sleep}; date +%s%N >> {name}.txt\n    outs: [{name}.txt]\n    resources: {resources}\n"
    )
}

/// (job id, CUDA_VISIBLE_DEVICES, start ns, end ns) of a [`timed_stage`].
fn span(p: &Project, name: &str) -> (String, String, u128, u128) {
    let text = p.read(&format!("{name}.txt"));
    let mut lines = text.lines();
    let first: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let end = lines.next().unwrap_or_default().trim().parse().unwrap();
    (
        first[0].to_string(),
        first[1].to_string(),
        first[2].parse().unwrap(),
        end,
    )
}

fn slurm<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--executor", "slurm"]);
    v
}

#[test]
fn independent_stages_run_as_parallel_jobs_and_a_rerun_submits_nothing() {
    let Some(_cluster) = cluster("parallel") else {
        return;
    };
    let mut yaml = String::from("stages:\n");
    yaml.push_str(&timed_stage("par_a", 2, "{cpus: 1}"));
    yaml.push_str(&timed_stage("par_b", 2, "{cpus: 2}"));
    yaml.push_str(
        "  par_c:\n    cmd: echo par_c >> \"$RUNLOG\"; cat par_a.txt par_b.txt > c.txt; echo \"$REPRO_CPUS\" >> c.txt\n    deps: [par_a.txt, par_b.txt]\n    outs: [c.txt]\n",
    );
    let p = Project::new(&yaml);
    let out = p.ok(&slurm(&["all"]));
    assert!(out.stderr.contains("slurm job"), "{out:?}");
    let (a, b) = (span(&p, "par_a"), span(&p, "par_b"));
    assert!(a.0 != "none" && b.0 != "none" && a.0 != b.0, "{a:?} {b:?}");
    assert!(
        a.2 < b.3 && b.2 < a.3,
        "the two 2 s jobs overlap in time: {a:?} {b:?}"
    );
    let c = p.read("c.txt");
    assert_eq!(
        c.lines().last(),
        Some("1"),
        "REPRO_CPUS is SLURM's grant: {c}"
    );
    assert_eq!(p.ran(), ["par_a", "par_b", "par_c"]);
    // The staging views are gone, and the lock holds every stage.
    let lock = p.read("repro.lock");
    assert!(["par_a", "par_b", "par_c"].iter().all(|s| lock.contains(s)));
    assert_eq!(
        p.staging_entries(),
        0,
        "staging views are removed after success"
    );

    // The run record is filled from the files the wrapper wrote: exit code, and peak RSS where
    // the node has GNU time.
    let record = run_record(&p, "par_a");
    assert_eq!(record["outcome"], "succeeded", "{record}");
    assert_eq!(record["exit_code"], 0, "{record}");
    if std::path::Path::new("/usr/bin/time").exists() {
        assert!(record["peak_rss_kib"].as_u64() > Some(0), "{record}");
    }

    let again = p.ok(&slurm(&["all"]));
    assert!(again.stderr.contains("3 fresh"), "{again:?}");
    assert!(p.ran().is_empty(), "a fresh pipeline submits no job");
}

#[test]
fn gpu_ids_come_from_slurm_and_a_third_gpu_job_waits() {
    let Some(_cluster) = cluster("gpus") else {
        return;
    };
    let mut yaml = String::from("stages:\n");
    for s in ["gpu_1", "gpu_2", "gpu_3"] {
        yaml.push_str(&timed_stage(s, 2, "{gpus: 1}"));
    }
    let p = Project::new(&yaml);
    // No `--gpus`: on a cluster the GPUs are SLURM's to hand out, not this machine's.
    let out = p.ok(&slurm(&["all", "--json"]));
    // SLURM names why the third job waits: `Resources` once the scheduler has looked at it, or
    // `Priority` while an earlier job in the queue is still ahead of it. Either is a reason
    // reaching the reporter; which one depends on the scheduler's timing.
    assert!(
        ["pending (Resources)", "pending (Priority)"]
            .iter()
            .any(|r| out.stdout.contains(r)),
        "the waiting job's reason reaches the reporter: {out:?}"
    );
    let spans: Vec<_> = ["gpu_1", "gpu_2", "gpu_3"]
        .iter()
        .map(|s| span(&p, s))
        .collect();
    assert!(
        spans.iter().all(|s| s.1 == "0" || s.1 == "1"),
        "each job sees one of the two GPUs: {spans:?}"
    );
    let mut most = 0;
    for s in &spans {
        let at_start: Vec<&(String, String, u128, u128)> =
            spans.iter().filter(|o| o.2 <= s.2 && s.2 < o.3).collect();
        most = most.max(at_start.len());
        for o in &at_start {
            if o.0 != s.0 {
                assert_ne!(o.1, s.1, "jobs running together share no GPU: {spans:?}");
            }
        }
    }
    assert_eq!(
        most, 2,
        "two GPU jobs run together and the third waits for a GPU: {spans:?}"
    );
}

#[test]
fn a_failing_job_stops_its_downstream_and_names_its_job_and_log() {
    let Some(_cluster) = cluster("failure") else {
        return;
    };
    let p = Project::new(
        r#"
stages:
  fail_bad:
    cmd: echo fail_bad >> "$RUNLOG"; echo partial > bad.txt; echo "about to fail" >&2; exit 3
    outs: [bad.txt]
  fail_after:
    cmd: echo fail_after >> "$RUNLOG"; cat bad.txt > after.txt
    deps: [bad.txt]
    outs: [after.txt]
"#,
    );
    let out = p.repro(&slurm(&["all"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("failed   fail_bad: exit code 3"),
        "{out:?}"
    );
    assert!(out.stderr.contains("about to fail"), "{out:?}");
    assert!(
        out.stderr.contains("repro: slurm job ") && out.stderr.contains("ended with exit code 3"),
        "the failure names the slurm job: {out:?}"
    );
    assert!(out.stderr.contains("log: .repro/runs/"), "{out:?}");
    assert_eq!(p.ran(), ["fail_bad"], "the downstream stage never ran");
    assert!(!p.exists("bad.txt") && !p.exists("after.txt"));
    assert!(!p.exists("repro.lock") || !p.read("repro.lock").contains("fail_bad"));
}

#[test]
fn an_interrupt_cancels_running_and_pending_jobs() {
    let Some(_cluster) = cluster("interrupt") else {
        return;
    };
    // Each needs both GPUs: one runs, the other waits in the queue.
    let p = Project::new(
        r#"
stages:
  int_a:
    cmd: echo 1 > started_a.txt; sleep 30; echo done > a.txt
    outs: [a.txt, started_a.txt]
    resources: {gpus: 2}
  int_b:
    cmd: echo 1 > started_b.txt; sleep 30; echo done > b.txt
    outs: [b.txt, started_b.txt]
    resources: {gpus: 2}
"#,
    );
    let child = p
        .command(&slurm(&["all"]))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "one job never started while the other waited",
        Duration::from_secs(20),
        || {
            let q = queued(&["int_a", "int_b"]);
            (p.staged_contains("started_a.txt", "1") || p.staged_contains("started_b.txt", "1"))
                && q.iter().any(|l| l.ends_with("RUNNING"))
                && q.iter().any(|l| l.ends_with("PENDING"))
        },
    );
    let t = Instant::now();
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the interrupt stops the 30 s job promptly: {stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped  int_a (interrupted)")
            && stderr.contains("stopped  int_b (interrupted)"),
        "{stderr}"
    );
    assert!(!p.exists("a.txt") && !p.exists("b.txt"));
    wait_until("our jobs are cancelled", Duration::from_secs(10), || {
        queued(&["int_a", "int_b"])
            .iter()
            .all(|l| !l.ends_with("RUNNING") && !l.ends_with("PENDING"))
    });
    let again = p.repro(&["status"]);
    // Never completed, and `status` says why (issue 16: not "never run").
    assert!(
        again.stdout.contains("int_a: last run interrupted"),
        "{again:?}"
    );
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last `)`.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The run record of `stage` from the only run under `.repro/runs`.
fn run_record(p: &Project, stage: &str) -> serde_json::Value {
    let runs = p.root().join(".repro/runs");
    let run = std::fs::read_dir(&runs)
        .expect("a run directory")
        .flatten()
        .next()
        .expect("one run");
    let text = std::fs::read_to_string(run.path().join(format!("{stage}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Polls `ready` every 50 ms until it holds; fails the test after `limit`, saying `what`.
fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The PIDs whose command line names `needle` (a path unique to one test's job).
fn pids_running(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_job_that_slurm_loses_fails_with_its_id_and_output_path() {
    let Some(_cluster) = cluster("lost") else {
        return;
    };
    let p = Project::new(
        r#"
stages:
  lost_job:
    cmd: echo 1 > started.txt; sleep 30; echo x > out.txt
    outs: [out.txt]
"#,
    );
    let child = p
        .command(&slurm(&["all"]))
        .env("REPRO_SLURM_LOST_GRACE", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = String::new();
    wait_until("the job never started", Duration::from_secs(20), || {
        if p.staged_contains("started.txt", "1") {
            if let Some(line) = queued(&["lost_job"]).first() {
                id = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
            }
        }
        !id.is_empty()
    });
    // SIGKILL to the job's wrapper script: the job ends without writing `exitcode`, as when a
    // node dies under it.
    // SLURM runs a copy of the script from its spool, so find it as the parent of the
    // `time` (or the command) it started in the staging view.
    let staging = p.root().join(".repro/tmp");
    let wrappers: Vec<i32> = pids_running(&staging.display().to_string())
        .into_iter()
        .filter_map(parent_of)
        .filter(|&pp| pids_running("slurm_script").contains(&pp))
        .collect();
    assert!(!wrappers.is_empty(), "the wrapper of job {id} is running");
    for pid in wrappers {
        // SAFETY: plain kill of a process of this test's own job.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "slurm job {id} of stage `lost_job` left the queue"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("without writing its exit code"), "{stderr}");
    assert!(stderr.contains(&format!("slurm-{id}.out")), "{stderr}");
    assert!(stderr.contains("log: .repro/runs/"), "{stderr}");
    assert!(!p.exists("out.txt"));
}

#[test]
fn executor_settings_come_from_pipeline_yaml_and_flags_override_them() {
    let Some(_cluster) = cluster("config") else {
        return;
    };
    let p = Project::new(
        r#"
executor: {kind: slurm, partition: nosuch, time: "5", extra_args: [--comment=repro-test]}
stages:
  cfg_where:
    cmd: echo "$${SLURM_JOB_PARTITION:-local}" > where.txt
    outs: [where.txt]
"#,
    );
    let out = p.repro(&["all"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("cannot start stage `cfg_where`: sbatch refused the job")
            && out.stderr.contains("nosuch"),
        "{out:?}"
    );
    p.ok(&["all", "--slurm-partition", "debug"]);
    assert_eq!(p.read("where.txt"), "debug\n");
    p.ok(&["all", "--executor", "local", "--force"]);
    assert_eq!(p.read("where.txt"), "local\n");
}

/// Needs no cluster: a bad `executor:` stops `repro` before anything is submitted.
#[test]
fn a_bad_executor_block_is_a_usage_error_at_its_line() {
    let p = Project::new("executor:\n  kind: slurm\n  extra_args: --qos=high\nstages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n");
    let out = p.repro(&["all"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pipeline.yaml:3:15")
            && out
                .stderr
                .contains("`extra_args` in `executor` must be a list"),
        "{out:?}"
    );
    assert!(!p.exists("a.txt") && !p.exists("repro.lock"));
}

/// The cluster's shared filesystem as a directory remote: a stage computed by a SLURM job in one
/// workspace is pushed, and another workspace (a colleague's clone, say) gets it with
/// `repro all --pull` without submitting anything.
#[test]
fn a_stage_computed_on_the_cluster_is_pulled_by_another_workspace() {
    let Some(_cluster) = cluster("remote") else {
        return;
    };
    let yaml = "stages:\n  shared_a:\n    cmd: echo shared_a >> \"$RUNLOG\"; hostname > a.txt; echo 42 >> a.txt\n    outs: [a.txt]\n";
    let shared = tempfile::tempdir().unwrap();
    let url = shared.path().to_str().unwrap();
    let a = Project::new(yaml);
    a.ok(&["remote", "add", "cluster", url, "--default"]);
    let out = a.ok(&slurm(&["all"]));
    assert!(out.stderr.contains("slurm job"), "{out:?}");
    assert_eq!(a.ran(), ["shared_a"]);
    a.ok(&["push"]);

    let b = Project::new(yaml);
    b.file("repro.toml", &a.read("repro.toml"));
    let out = b.ok(&slurm(&["all", "--pull"]));
    assert!(
        !out.stderr.contains("slurm job"),
        "nothing submitted: {out:?}"
    );
    assert!(b.ran().is_empty(), "{out:?}");
    assert_eq!(b.read("a.txt"), a.read("a.txt"));
}
