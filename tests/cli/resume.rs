//! A stage that did not finish keeps its `persist: true` outs for the next run with the same
//! inputs (`exec::resume`): after a failure, after `kill -9` of `repro`, never across inputs.

use crate::harness::Project;

/// `train` adds one step (the value of `tag`) per run to its persist out and succeeds once it
/// holds `need` of them: a training stage that needs several attempts to get through.
const STEPS: &str = r#"
params:
  need: 3
  tag: a
stages:
  train:
    cmd: mkdir -p ck && echo ${tag} >> ck/steps && test $(wc -l < ck/steps) -ge ${need}
    outs: [{path: ck, persist: true}]
    params: [need, tag]
"#;

#[test]
fn a_failed_stage_continues_from_its_persist_outs_and_only_under_the_same_inputs() {
    let p = Project::new(STEPS);
    let first = p.repro(&["all"]);
    assert_eq!(first.code, 1, "{first:?}");
    assert!(
        first
            .stderr
            .contains("its persist outs are kept in `.repro/resume/"),
        "{first:?}"
    );
    assert!(!p.exists("ck"), "a failed run publishes nothing");

    // Other inputs never see that state: `tag=b` starts from nothing, and fails with one step.
    let other = p.repro(&["all", "--set", "tag=b"]);
    assert_eq!(other.code, 1, "{other:?}");
    assert!(!other.stderr.contains("resuming"), "{other:?}");

    // `repro status` says what the next run will do.
    let status = p.repro(&["status"]);
    assert!(
        status
            .stdout
            .contains("continues from the unfinished run kept in .repro/resume/"),
        "{status:?}"
    );

    // Back to `tag=a`: the second attempt continues from the first one's state, the third
    // gets through, and the published out holds the three steps of `a` and nothing of `b`.
    let second = p.repro(&["all"]);
    assert_eq!(second.code, 1, "{second:?}");
    assert!(second.stderr.contains("resuming from"), "{second:?}");
    p.ok(&["all"]);
    assert_eq!(p.read("ck/steps"), "a\na\na\n");
    assert_eq!(p.repro(&["status"]).code, 0);
    // The state of `a` was used up; that of `b` waits for its inputs to come back.
    let kept: Vec<_> = std::fs::read_dir(p.root().join(".repro/resume"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // `gc` names it and leaves it.
    let gc = p.ok(&["gc"]);
    assert!(
        gc.stdout
            .contains("kept 1 unfinished run(s) (2 B) for the next run with the same inputs"),
        "{gc:?}"
    );
    assert_eq!(
        std::fs::read_dir(p.root().join(".repro/resume"))
            .unwrap()
            .count(),
        1
    );
    let rest = p.repro(&["all", "--set", "tag=b", "--set", "need=2"]);
    // need=2 is another fingerprint again: it starts from the workspace's copy (3 steps of a).
    assert_eq!(rest.code, 0, "{rest:?}");
    assert_eq!(p.read("ck/steps"), "a\na\na\nb\n");
}

#[test]
fn kill_9_of_repro_leaves_the_stage_its_state_for_the_next_run() {
    let p = Project::new(
        r#"
stages:
  train:
    cmd: |
      mkdir -p ck && echo step >> ck/steps && echo started > started.txt
      if [ $(wc -l < ck/steps) -lt 2 ]; then sleep 30; fi
    outs: [{path: ck, persist: true}]
"#,
    );
    let mut child = p.command(&["all"]).spawn().unwrap();
    p.wait_until_staged("started.txt", "started");
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();

    // `repro status` sees the dead run's state waiting in its view.
    let status = p.repro(&["status"]);
    assert!(
        status
            .stdout
            .contains("continues from the unfinished run kept in .repro/tmp/"),
        "{status:?}"
    );

    // The next run salvages the dead run's view and continues: two steps, no 30 s sleep.
    let out = p.ok(&["all", "--no-wait"]);
    assert!(out.stderr.contains("resuming from"), "{out:?}");
    assert_eq!(p.read("ck/steps"), "step\nstep\n");
    assert_eq!(
        p.staging_entries(),
        0,
        "nothing of either run is left in staging"
    );
}
