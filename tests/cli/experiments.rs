//! `repro exp show` and `repro params diff` on a small grid of shell stages.

use crate::harness::{Output, Project};

/// A 2 x 2 grid whose metrics depend on its coordinates (loss = 1 / (lr * width)), three
/// tracked params that are the same for every member, and one stage without metrics.
const GRID: &str = r#"
params:
  epochs: 3
  optim: {name: adam, beta: 0.9}
stages:
  train:
    matrix:
      lr: [0.1, 0.01]
      width: [16, 64]
    params: [epochs, optim]
    cmd: |
      echo train >> "$RUNLOG"
      mkdir -p out
      awk 'BEGIN { printf "{\"loss\": %g, \"eval\": {\"acc\": %g}}\n", 1 / (${item.lr} * ${item.width}), ${item.width} / 100 }' > out/m-${item.lr}-${item.width}.json
    metrics: ["out/m-${item.lr}-${item.width}.json"]
  report:
    params: [epochs]
    cmd: echo report >> "$RUNLOG"; echo done > report.txt
    outs: [report.txt]
"#;

fn grid() -> Project {
    let p = Project::new(GRID);
    p.ok(&["all"]);
    p
}

/// The stage column of a terminal table, top to bottom.
fn stages(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.contains("not shown"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_table_shows_the_params_that_vary_and_the_metrics() {
    let p = grid();
    let out = p.ok(&["exp", "show"]);
    insta::assert_snapshot!("exp_show_grid", out.stdout);
    // The constant params are left out, and the footer says how many.
    let header = out.stdout.lines().next().unwrap();
    assert!(!header.contains("params.epochs"), "{out:?}");
    assert!(
        out.stdout
            .contains("3 params equal in every row, not shown (--all to show them)"),
        "{out:?}"
    );
    let all = p.ok(&["exp", "show", "--all"]);
    let header = all.stdout.lines().next().unwrap();
    for column in ["params.epochs", "params.optim.beta", "params.optim.name"] {
        assert!(header.contains(column), "{all:?}");
    }
    assert!(!all.stdout.contains("not shown"), "{all:?}");
    assert!(
        !all.stdout.contains("last ran with other params"),
        "{all:?}"
    );
    // `--set` shows the params a run would use, and says the metrics are not theirs.
    let set = p.ok(&["exp", "show", "--all", "--set", "optim.beta=0.5"]);
    assert!(set.stdout.contains("0.5"), "{set:?}");
    assert!(
        set.stdout
            .contains("4 rows last ran with other params than shown"),
        "{set:?}"
    );
}

#[test]
fn markdown_csv_and_json() {
    let p = grid();
    let md = p.ok(&["exp", "show", "--md"]);
    insta::assert_snapshot!("exp_show_grid_md", md.stdout);

    let csv = p.ok(&["exp", "show", "--csv"]);
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        lines[0], "stage,item.lr,item.width,eval.acc,loss",
        "{csv:?}"
    );
    assert_eq!(lines[1], "train@0.1-16,0.1,16,0.16,0.625", "{csv:?}");
    assert_eq!(lines[5], "report,,,,", "{csv:?}");
    assert_eq!(lines.len(), 6, "{csv:?}");

    let json = p.ok(&["exp", "show", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[2]["stage"], "train@0.01-16");
    assert_eq!(rows[2]["item.lr"], 0.01);
    assert_eq!(rows[2]["item.width"], 16);
    assert_eq!(rows[2]["loss"], 6.25);
    assert_eq!(rows[2]["eval.acc"], 0.16);
    assert!(rows[4]["loss"].is_null(), "{json:?}");
    assert!(rows[4].get("params.epochs").is_none(), "{json:?}");
}

#[test]
fn sorting_is_numeric_with_missing_values_last_either_way() {
    let p = grid();
    let asc = p.ok(&["exp", "show", "--sort-by", "loss"]);
    assert_eq!(
        stages(&asc),
        [
            "train@0.1-64",
            "train@0.1-16",
            "train@0.01-64",
            "train@0.01-16",
            "report"
        ],
        "{asc:?}"
    );
    let desc = p.ok(&["exp", "show", "--sort-by", "-loss"]);
    assert_eq!(
        stages(&desc),
        [
            "train@0.01-16",
            "train@0.01-64",
            "train@0.1-16",
            "train@0.1-64",
            "report"
        ],
        "{desc:?}"
    );
    let flag = p.ok(&["exp", "show", "--sort-by", "loss", "--desc"]);
    assert_eq!(stages(&flag), stages(&desc));
    // The README's example is this very output.
    let readme = p.ok(&["exp", "show", "train", "--sort-by", "loss"]);
    assert!(
        include_str!("../../README.md").contains(&format!(
            "$ repro exp show train --sort-by loss\n{}",
            readme.stdout
        )),
        "{readme:?}"
    );
    // A unique last part names the column; 0.01 sorts below 0.1 as a number.
    let by_lr = p.ok(&["exp", "show", "--sort-by", "lr", "train"]);
    assert_eq!(
        stages(&by_lr),
        [
            "train@0.01-16",
            "train@0.01-64",
            "train@0.1-16",
            "train@0.1-64"
        ],
        "{by_lr:?}"
    );
}

#[test]
fn targets_filter_the_rows_and_only_what_varies_among_them_is_shown() {
    let p = grid();
    let out = p.ok(&["exp", "show", "train@0.1-16", "train@0.01-16"]);
    assert_eq!(stages(&out), ["train@0.1-16", "train@0.01-16"], "{out:?}");
    let header = out.stdout.lines().next().unwrap();
    assert!(header.contains("item.lr"), "{out:?}");
    // Both rows have width 16: constant among the rows shown.
    assert!(!header.contains("item.width"), "{out:?}");
    // So is a metric both rows share.
    assert!(
        out.stdout
            .contains("4 params and 1 metric equal in every row"),
        "{out:?}"
    );
    let group = p.ok(&["exp", "show", "train"]);
    assert_eq!(stages(&group).len(), 4, "{group:?}");
}

#[test]
fn a_narrow_terminal_cuts_the_widest_cells() {
    let p = grid();
    let out = p
        .command(&["exp", "show"])
        .env("COLUMNS", "40")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in text.lines().filter(|l| !l.contains("not shown")) {
        assert!(line.chars().count() <= 40, "{line:?} in\n{text}");
    }
    assert!(text.contains('…'), "{text}");
    // Without a width (not a terminal, no COLUMNS) nothing is cut.
    assert!(!p.ok(&["exp", "show"]).stdout.contains('…'));
}

#[test]
fn unknown_targets_and_columns_are_usage_errors_that_name_them() {
    let p = grid();
    let out = p.repro(&["exp", "show", "trian"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("unknown target `trian`"), "{out:?}");
    let out = p.repro(&["exp", "show", "--sort-by", "los"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("unknown column `los` to sort by; did you mean `loss`? (the columns are"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("the columns are `stage`, `item.lr`, `item.width`, `eval.acc`, `loss`"),
        "{out:?}"
    );
}

fn git(p: &Project, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(p.root())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn params_diff_lists_what_changed_since_a_revision() {
    let p = grid();
    git(&p, &["init", "-q"]);
    git(&p, &["add", "pipeline.yaml", "repro.lock"]);
    git(&p, &["commit", "-q", "-m", "grid"]);
    let same = p.ok(&["params", "diff"]);
    assert_eq!(
        same.stdout, "no changes: the params match those recorded at `HEAD`\n",
        "{same:?}"
    );

    p.file(
        "pipeline.yaml",
        &GRID
            .replace("epochs: 3", "epochs: 5")
            .replace("beta: 0.9", "beta: 0.95"),
    );
    let out = p.ok(&["params", "diff"]);
    insta::assert_snapshot!("params_diff", out.stdout);
    let md = p.ok(&["params", "diff", "HEAD", "--md"]);
    assert!(
        md.stdout.contains("| report | params.epochs | 3 | 5 |"),
        "{md:?}"
    );
    let json = p.ok(&["params", "diff", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    // epochs in 5 stages, optim.beta in the 4 members.
    assert_eq!(rows.len(), 9, "{json:?}");
    assert_eq!(
        rows[0],
        serde_json::json!({"stage": "report", "param": "params.epochs", "old": 3, "new": 5})
    );

    let bad = p.repro(&["params", "diff", "no-such-rev"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains("git revision `no-such-rev` not found"),
        "{bad:?}"
    );
}
