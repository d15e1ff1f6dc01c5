//! The newcomer's path (issue 16): `repro init`, the README's first pipeline, `.repro/` kept
//! out of git, "did you mean", and the rough edges a first user meets.

use crate::harness::Project;

const STARTER: &str = include_str!("../../src/cli/starter.yaml");
const README: &str = include_str!("../../README.md");

/// The text between `<!-- NAME:start -->` and `<!-- NAME:end -->` in the README, without the
/// code fence around it.
fn readme_block(name: &str) -> String {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let from = README.find(&start).expect("start marker") + start.len();
    let to = README[from..].find(&end).expect("end marker") + from;
    let block = README[from..to].trim();
    let block = block
        .strip_prefix("```yaml")
        .and_then(|b| b.strip_suffix("```"))
        .expect("a yaml fence");
    block.trim_start_matches('\n').to_string()
}

fn git_available() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn init_writes_the_readme_starter_and_it_runs() {
    let p = Project::new("");
    std::fs::remove_file(p.root().join("pipeline.yaml")).unwrap();
    let out = p.ok(&["init"]);
    assert!(out.stdout.contains("created  "), "{out:?}");
    assert_eq!(p.read("pipeline.yaml"), STARTER);
    assert_eq!(
        readme_block("starter"),
        STARTER,
        "the README's first pipeline is the one `repro init` writes"
    );
    assert!(p.read(".gitignore").lines().any(|l| l == "/.repro/"));
    assert!(p.exists(".repro/.gitignore"));

    let out = p.ok(&["all"]);
    assert!(out.stderr.contains("numbers"), "{out:?}");
    let m = p.ok(&["metrics", "show", "--csv"]);
    assert!(m.stdout.contains("stats.csv,count,10"), "{m:?}");
    assert!(m.stdout.contains("stats.csv,sum,55"), "{m:?}");
    p.ok(&["status"]);
    p.ok(&["all", "--set", "count=20"]);
    let m = p.ok(&["metrics", "show", "--csv"]);
    assert!(m.stdout.contains("stats.csv,sum,210"), "{m:?}");
}

#[test]
fn init_never_overwrites_and_names_the_file() {
    let p = Project::new("stages: {}\n");
    p.file(".gitignore", "target\n");
    let out = p.repro(&["init"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pipeline.yaml` already exists"),
        "{out:?}"
    );
    assert_eq!(p.read("pipeline.yaml"), "stages: {}\n");
    assert_eq!(
        p.read(".gitignore"),
        "target\n",
        "nothing written on refusal"
    );

    // A fresh directory with a `.gitignore` of its own: appended to, never rewritten.
    let q = Project::new("");
    std::fs::remove_file(q.root().join("pipeline.yaml")).unwrap();
    q.file(".gitignore", "target");
    q.ok(&["init"]);
    let ignore = q.read(".gitignore");
    assert!(ignore.starts_with("target\n"), "{ignore}");
    assert!(ignore.ends_with("/.repro/\n"), "{ignore}");
    // Already listed: left alone.
    let r = Project::new("");
    std::fs::remove_file(r.root().join("pipeline.yaml")).unwrap();
    r.file(".gitignore", ".repro/\n");
    r.ok(&["init"]);
    assert_eq!(r.read(".gitignore"), ".repro/\n");
}

#[test]
fn the_state_directory_keeps_itself_out_of_git() {
    let p = Project::new(crate::FOUR_STAGES);
    p.repro(&["status", "--json"]);
    assert!(p.exists(".repro/.gitignore"), "status creates it too");
    std::fs::remove_dir_all(p.root().join(".repro")).unwrap();
    p.ok(&["all"]);
    assert_eq!(p.read(".repro/.gitignore").lines().last(), Some("*"));
    if !git_available() {
        return;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(p.root())
            .output()
            .unwrap()
    };
    assert!(git(&["init", "-q"]).status.success());
    let st = git(&["status", "--porcelain", "--untracked-files=all"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(!text.contains(".repro"), "{text}");
    assert!(text.contains("repro.lock"), "{text}");
}

#[test]
fn completions_are_generated_for_the_common_shells() {
    let p = Project::new("stages: {}\n");
    for (shell, needle) in [
        ("bash", "_repro()"),
        ("zsh", "#compdef repro"),
        ("fish", "complete -c repro"),
    ] {
        let out = p.ok(&["completions", shell]);
        assert!(out.stdout.contains(needle), "{shell}: {}", out.stdout);
        assert!(out.stdout.contains("metrics"), "{shell}");
    }
}

const TYPOS: &str = r#"
params:
  scale: 2
stages:
  fit:
    cmd: echo ${scale} > fit.txt
    params: [scale]
    outs: [fit.txt]
"#;

#[test]
fn did_you_mean_counts_a_swap_as_one_edit() {
    let p = Project::new(TYPOS);
    let out = p.repro(&["run", "fitt"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("unknown target `fitt`; did you mean `fit`?"),
        "{out:?}"
    );
    let out = p.repro(&["status", "--set", "scael=3"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("did you mean `scale`?"), "{out:?}");

    let q = Project::new(&TYPOS.replace("params: [scale]", "params: [scael]"));
    let out = q.repro(&["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("unknown param `scael`"), "{out:?}");
    assert!(out.stderr.contains("did you mean `scale`?"), "{out:?}");

    let q = Project::new(&TYPOS.replace("echo ${scale}", "echo ${scael}"));
    let out = q.repro(&["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("did you mean `${scale}`?"), "{out:?}");

    let q = Project::new(&TYPOS.replace("outs: [fit.txt]", "outs: [fit.txt]\n    dep: [x]"));
    let out = q.repro(&["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("unknown key `dep` in stage `fit`; did you mean `deps`?"),
        "{out:?}"
    );
}

#[test]
fn a_long_list_of_targets_is_shortened() {
    let items: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let p = Project::new(&format!(
        "stages:\n  fit:\n    foreach: [{}]\n    do:\n      cmd: echo ${{item}} > out-${{item}}.txt\n      outs: [\"out-${{item}}.txt\"]\n",
        items.join(", ")
    ));
    let out = p.repro(&["run", "nope"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("known stages and groups: `fit`, `fit@0`"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains(" and 189 more (`repro dag` shows every stage)"),
        "{out:?}"
    );
    assert!(out.stderr.len() < 600, "{}", out.stderr.len());
}

#[test]
fn csv_metrics_are_read_by_a_csv_parser() {
    let p = Project::new(
        r#"
stages:
  eval:
    cmd: printf 'name,fid,kid\n"a, b",0.9,0.1\n' > m.csv
    metrics: [m.csv]
"#,
    );
    p.ok(&["all"]);
    let out = p.ok(&["metrics", "show", "--csv"]);
    assert!(out.stdout.contains("m.csv,fid,0.9\n"), "{out:?}");
    assert!(out.stdout.contains("m.csv,kid,0.1\n"), "{out:?}");
    assert!(out.stdout.contains("m.csv,name,\"a, b\"\n"), "{out:?}");
}

#[test]
fn jobs_above_the_cpu_count_are_capped_with_a_warning() {
    let p = Project::new(TYPOS);
    let out = p.ok(&["all", "-j", "100000"]);
    assert!(
        out.stderr.contains("warning: `-j 100000` is above the"),
        "{out:?}"
    );
    let out = p.ok(&["all", "-j", "1"]);
    assert!(!out.stderr.contains("warning"), "{out:?}");
    let help = p.ok(&["all", "--help"]);
    assert!(help.stdout.contains("above the number of"), "{help:?}");
}

#[test]
fn metrics_diff_without_changes_says_so() {
    let p = Project::new(crate::FOUR_STAGES);
    p.ok(&["all"]);
    let out = p.ok(&["metrics", "diff"]);
    assert!(out.stdout.starts_with("no changes"), "{out:?}");
    assert!(out.stdout.contains("`repro metrics diff HEAD`"), "{out:?}");
}

#[test]
fn gc_dry_run_lists_what_gc_deletes_with_the_same_counts() {
    let p = Project::new(crate::FOUR_STAGES);
    p.ok(&["all"]);
    p.ok(&["all", "--set", "scale=3"]);
    let dry = p.ok(&["gc", "--dry-run"]);
    let listed = dry
        .stdout
        .lines()
        .filter(|l| l.starts_with("would delete object "))
        .count();
    assert!(listed > 0, "{dry:?}");
    let summary = dry.stdout.lines().last().unwrap().to_string();
    assert!(summary.starts_with("would delete "), "{dry:?}");
    let real = p.ok(&["gc"]);
    let real_summary = real.stdout.lines().last().unwrap();
    assert_eq!(
        summary
            .replace("would delete", "deleted")
            .replace("would keep", "kept")
            .replace(" (dry run: nothing deleted)", ""),
        real_summary,
        "{dry:?}\n{real:?}"
    );
    assert!(real_summary.starts_with(&format!("deleted {listed} objects")));
}

#[test]
fn verify_accepts_a_group_and_says_what_it_did() {
    let p = Project::new(
        r#"
stages:
  fit:
    foreach: [a, b]
    do:
      cmd: echo ${item} > ${item}.txt
      outs: ["${item}.txt"]
"#,
    );
    p.ok(&["all"]);
    let out = p.ok(&["verify", "fit"]);
    assert!(out.stdout.contains("stage `fit@a` reproduced"), "{out:?}");
    assert!(out.stdout.contains("stage `fit@b` reproduced"), "{out:?}");
    assert!(out.stdout.contains("2 of 2 stages reproduced"), "{out:?}");
    assert!(!out.stderr.contains("nothing to do"), "{out:?}");
    let out = p.repro(&["verify", "fitt"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("did you mean `fit`?"), "{out:?}");
}

const FAILING: &str = r#"
params:
  fail: 1
stages:
  make:
    cmd: echo make >> "$RUNLOG"; echo "last words"; test ${fail} = 0 && echo good > out.txt
    outs: [out.txt]
    params: [fail]
  after:
    cmd: cat out.txt > after.txt
    deps: [out.txt]
    outs: [after.txt]
  other:
    cmd: echo other > other.txt
    outs: [other.txt]
"#;

#[test]
fn a_failure_is_reported_whole() {
    let p = Project::new(FAILING);
    let out = p.repro(&["all", "-j", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    // The stage skipped after the failure is in the summary, and so is the one not started.
    assert!(
        out.stderr.contains("skipped  after (upstream make failed)"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("skipped  other (not started after make failed"),
        "{out:?}"
    );
    assert!(out.stderr.contains("1 failed, 2 skipped in "), "{out:?}");
    // The log's path on its own line.
    assert!(
        out.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("log: .repro/runs/")),
        "{out:?}"
    );
    // `status` knows the last run failed.
    let st = p.repro(&["status"]);
    assert!(
        st.stdout
            .contains("make: last run failed (log: .repro/runs/"),
        "{st:?}"
    );
    assert!(!st.stdout.contains("make: never run"), "{st:?}");
}

#[test]
fn a_dry_run_never_promises_a_restore_that_the_run_would_not_make() {
    let p = Project::new(crate::FOUR_STAGES);
    p.ok(&["all"]);
    p.ran();
    // `gen` changes; its downstream stages are fresh against today's `data/nums.txt`, whose
    // run-cache entries exist, but the real run gives them new inputs and runs them.
    p.file(
        "pipeline.yaml",
        &crate::FOUR_STAGES.replace("seq 1 5", "seq 1 6"),
    );
    let dry = p.ok(&["all", "--dry-run"]);
    assert!(!dry.stderr.contains("restore "), "{dry:?}");
    assert!(dry.stderr.contains("would run scale"), "{dry:?}");
    assert!(dry.stderr.contains("would run sum"), "{dry:?}");
    p.ok(&["all"]);
    assert_eq!(p.ran(), ["gen", "scale", "shift", "sum"]);
}

#[test]
fn a_colon_in_an_unquoted_cmd_gets_a_hint() {
    let p = Project::new("stages:\n  hello:\n    cmd: echo note: hi > a.txt\n    outs: [a.txt]\n");
    let out = p.repro(&["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "the value of `cmd` contains `: `, which starts a map in yaml: quote the whole value"
        ),
        "{out:?}"
    );
}

#[test]
fn an_unknown_key_of_a_metric_reads_as_english() {
    let p = Project::new(
        "stages:\n  m:\n    cmd: echo '{}' > m.json\n    metrics: [{path: m.json, cahce: false}]\n",
    );
    let out = p.repro(&["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("in a metric of stage `m`"), "{out:?}");
    assert!(out.stderr.contains("did you mean `cache`?"), "{out:?}");
}

/// Runs the binary under qemu's user-mode emulation of an older CPU, when qemu is installed.
fn on_cpu(cpu: &str, args: &[&str]) -> Option<std::process::Output> {
    std::process::Command::new("qemu-x86_64")
        .args(["-cpu", cpu, crate::harness::bin()])
        .args(args)
        .output()
        .ok()
}

#[test]
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_feature = "avx2"))]
fn a_cpu_without_the_build_s_features_gets_a_clear_error() {
    // Westmere (2010): SSE4.2 and POPCNT, no AVX.
    let Some(out) = on_cpu("Westmere", &["--version"]) else {
        eprintln!("qemu-x86_64 not installed: skipped");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: this CPU lacks AVX, which this repro binary was built to use"),
        "{stderr}"
    );
    assert!(stderr.contains("target-cpu=native"), "{stderr}");
    assert!(out.stdout.is_empty());
    // Sandy Bridge (2011) has AVX but not FMA (nor AVX2).
    let out = on_cpu("SandyBridge", &["--version"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: this CPU lacks FMA,"), "{stderr}");
    // Haswell (2013) is x86-64-v3: the binary runs.
    let out = on_cpu("Haswell", &["--version"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("repro "));
}
