//! Remotes: a directory remote shared by workspaces, `--pull`, `status --remote`, the errors a
//! wrong URL, missing credentials, an unreachable server or a corrupt object give, and (where
//! `scripts/test.sh` started one) a real S3-compatible server on the loopback interface.

use std::path::Path;

use crate::harness::Project;
use crate::FOUR_STAGES;

fn outs(p: &Project) -> Vec<String> {
    [
        "data/nums.txt",
        "data/scaled.txt",
        "data/shifted.txt",
        "metrics.json",
    ]
    .iter()
    .map(|f| p.read(f))
    .collect()
}

fn with_remote(url: &Path) -> Project {
    let p = Project::new(FOUR_STAGES);
    p.ok(&[
        "remote",
        "add",
        "shared",
        url.to_str().unwrap(),
        "--default",
    ]);
    p
}

#[test]
fn a_directory_remote_serves_a_clone_with_pull_and_a_fresh_workspace_with_all_pull() {
    let shared = tempfile::tempdir().unwrap();
    let a = with_remote(shared.path());
    assert!(a.read("repro.toml").contains("[remote.shared]"));
    a.ok(&["all"]);
    a.ran();
    let pushed = a.ok(&["push"]);
    assert!(pushed.stdout.contains("pushed 4 stage(s)"), "{pushed:?}");
    assert!(
        pushed.stderr.contains("objects"),
        "progress is reported: {pushed:?}"
    );
    let again = a.ok(&["status", "--remote"]);
    assert!(
        again.stdout.contains("4 of 4 recorded stages in sync"),
        "{again:?}"
    );

    // A clone: the lock is committed, the cache is not.
    let b = with_remote(shared.path());
    b.file("repro.lock", &a.read("repro.lock"));
    let st = b.repro(&["status", "--remote"]);
    assert_eq!(st.code, 1, "{st:?}");
    assert!(st.stdout.contains("gen: not pulled"), "{st:?}");
    let pulled = b.ok(&["pull"]);
    assert!(pulled.stdout.contains("restored 4 out(s)"), "{pulled:?}");
    assert_eq!(outs(&b), outs(&a));
    assert!(b.ok(&["status"]).stdout.contains("all 4 stages fresh"));
    assert!(b.ran().is_empty());

    // No lock at all: `all --pull` restores every stage the remote ran, and runs what changed.
    let c = with_remote(shared.path());
    let all = c.ok(&["all", "--pull"]);
    assert!(c.ran().is_empty(), "nothing may run: {all:?}");
    assert!(all.stderr.contains("restored"), "{all:?}");
    assert_eq!(outs(&c), outs(&a));
    c.file(
        "pipeline.yaml",
        &FOUR_STAGES.replace("scale: 2", "scale: 3"),
    );
    c.ok(&["all", "--pull"]);
    assert_eq!(c.ran(), vec!["scale".to_string(), "sum".to_string()]);
    let st = c.repro(&["status", "--remote"]);
    assert!(st.stdout.contains("scale: not pushed"), "{st:?}");
    c.ok(&["push", "scale"]);
    let st = c.repro(&["status", "--remote", "scale"]);
    assert_eq!(st.code, 0, "{st:?}");
}

#[test]
fn stages_the_remote_lacks_are_named_and_the_rest_pulled() {
    let shared = tempfile::tempdir().unwrap();
    let a = with_remote(shared.path());
    a.ok(&["all"]);
    let pushed = a.ok(&["push", "gen"]);
    assert!(pushed.stdout.contains("pushed 1 stage(s)"), "{pushed:?}");
    let b = with_remote(shared.path());
    b.file("repro.lock", &a.read("repro.lock"));
    let out = b.repro(&["pull"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("left out 3 stage(s) whose outputs are not on the remote")
            && out.stderr.contains("scale, shift, sum"),
        "{out:?}"
    );
    assert_eq!(b.read("data/nums.txt"), a.read("data/nums.txt"));
    assert!(!b.exists("metrics.json"));
    // And a push of what this cache lacks says so too.
    let out = b.repro(&["push"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not in the local cache"), "{out:?}");
}

#[test]
fn remote_config_commands_and_their_errors() {
    let shared = tempfile::tempdir().unwrap();
    let p = Project::new(FOUR_STAGES);
    let none = p.repro(&["push"]);
    assert_eq!(none.code, 2, "{none:?}");
    assert!(none.stderr.contains("no remote is configured"), "{none:?}");
    let bad = p.repro(&["remote", "add", "g", "gs://bucket/x"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains("remote `g`") && bad.stderr.contains("gs://"),
        "{bad:?}"
    );
    assert!(
        !p.exists("repro.toml"),
        "a refused remote is written nowhere"
    );

    p.ok(&["remote", "add", "one", shared.path().to_str().unwrap()]);
    p.ok(&["remote", "add", "two", "s3://bucket/prefix", "--local"]);
    let list = p.ok(&["remote", "list"]);
    assert!(
        list.stdout.contains("one\t") && list.stdout.contains("[project]"),
        "{list:?}"
    );
    assert!(
        list.stdout.contains("two\ts3://bucket/prefix\t[local]"),
        "{list:?}"
    );
    let ambiguous = p.repro(&["push"]);
    assert_eq!(ambiguous.code, 2, "{ambiguous:?}");
    assert!(ambiguous.stderr.contains("no default"), "{ambiguous:?}");
    let unknown = p.repro(&["push", "--remote", "three"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no remote named `three`"),
        "{unknown:?}"
    );
    p.ok(&["remote", "default", "one"]);
    assert!(p.ok(&["remote", "list"]).stdout.contains("(default)"));
    p.ok(&["remote", "remove", "two", "--local"]);
    let gone = p.repro(&["remote", "remove", "two"]);
    assert_eq!(gone.code, 2, "{gone:?}");

    // A remote directory that is not there: pulling from it is an error naming it, and the
    // workspace is not touched.
    let q = Project::new(FOUR_STAGES);
    q.ok(&["remote", "add", "nowhere", "/nonexistent/repro-remote"]);
    q.ok(&["all"]);
    let lock_before = q.read("repro.lock");
    let out = q.repro(&["pull"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("remote `nowhere`"), "{out:?}");
    assert_eq!(q.read("repro.lock"), lock_before);
}

#[test]
fn a_corrupt_object_on_the_remote_is_refused_and_the_workspace_is_untouched() {
    let shared = tempfile::tempdir().unwrap();
    let a = with_remote(shared.path());
    a.ok(&["all"]);
    a.ok(&["push"]);
    // Tamper with the object of metrics.json on the remote.
    let lock: serde_json::Value = serde_json::from_str(&a.read("repro.lock")).unwrap();
    let sha = lock["stages"]["sum"]["outputs"]["metrics.json"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let obj = shared
        .path()
        .join(format!("v1/objects/{}/{}", &sha[..2], &sha[2..]));
    std::fs::write(&obj, "{\"total\": 666}\n").unwrap();

    let b = with_remote(shared.path());
    b.file("repro.lock", &a.read("repro.lock"));
    let out = b.repro(&["pull"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr.contains("corrupt") && out.stderr.contains(&sha),
        "names the object: {out:?}"
    );
    assert!(
        !b.exists("metrics.json") && !b.exists("data"),
        "nothing published"
    );
    let cached = b.root().join(format!(
        ".repro/cache/v1/objects/{}/{}",
        &sha[..2],
        &sha[2..]
    ));
    assert!(!cached.exists(), "the bad bytes never entered the cache");
    // `--pull` treats it as a failed pull: warns once, and runs the stage here instead.
    let c = with_remote(shared.path());
    let all = c.ok(&["all", "--pull"]);
    assert!(all.stderr.contains("warning: --pull"), "{all:?}");
    assert_eq!(c.read("metrics.json").trim(), r#"{"total": 50}"#);
}

#[test]
fn s3_without_credentials_or_server_is_a_clear_error() {
    let p = Project::new(FOUR_STAGES);
    p.ok(&["remote", "add", "s3", "s3://repro-test/x", "--default"]);
    p.ok(&["all"]);
    let no_keys = p.repro_env(
        &["push"],
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    );
    assert_eq!(no_keys.code, 2, "{no_keys:?}");
    assert!(no_keys.stderr.contains("no credentials"), "{no_keys:?}");
    // Nothing listens on port 9 of the loopback interface.
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ];
    let started = std::time::Instant::now();
    let down = p.repro_env(&["push"], &env);
    assert_eq!(down.code, 5, "{down:?}");
    assert!(down.stderr.contains("remote `s3`"), "{down:?}");
    assert!(started.elapsed().as_secs() < 60, "gives up in seconds");
    let all = p.repro_env(&["all", "--pull", "--force"], &env);
    assert_eq!(all.code, 0, "{all:?}");
}

/// Against the S3-compatible server `scripts/test.sh` starts on the loopback interface
/// (`REPRO_TEST_S3_ENDPOINT`, bucket `repro-test`). Skipped without one, except in CI.
#[test]
fn an_s3_remote_round_trips_through_a_real_server() {
    let Ok(endpoint) = std::env::var("REPRO_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but REPRO_TEST_S3_ENDPOINT is not set: scripts/test.sh starts the S3 server"
        );
        eprintln!("skipped: REPRO_TEST_S3_ENDPOINT is not set (scripts/test.sh starts a server)");
        return;
    };
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let prefix = format!(
        "s3://repro-test/run-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let a = Project::new(FOUR_STAGES);
    a.ok(&["remote", "add", "s3", &prefix, "--default"]);
    a.ok(&["all"]);
    let pushed = a.repro_env(&["push"], &env);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let b = Project::new(FOUR_STAGES);
    b.file("repro.toml", &a.read("repro.toml"));
    let all = b.repro_env(&["all", "--pull"], &env);
    assert_eq!(all.code, 0, "{all:?}");
    assert!(b.ran().is_empty(), "restored, not run: {all:?}");
    assert_eq!(outs(&b), outs(&a));
    let st = b.repro_env(&["status", "--remote"], &env);
    assert_eq!(st.code, 0, "{st:?}");

    let missing = Project::new(FOUR_STAGES);
    missing.ok(&["remote", "add", "s3", "s3://no-such-bucket/x", "--default"]);
    missing.ok(&["all"]);
    let out = missing.repro_env(&["push"], &env);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("remote `s3`"), "{out:?}");
}
