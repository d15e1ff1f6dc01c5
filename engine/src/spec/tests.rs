//! Whole-file tests of `spec`: every error class with its `line:col`, fan-out naming,
//! interpolation through stages, profiles and `--set`, paths.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::builtin::{Builtin, Context, Kind, Registry, StageError};

/// The params of the stand-in `evaluate`: a struct, so its keys are checked when read.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct EvaluateParams {
    lr: Value,
    name: Value,
    list: Value,
}

fn never<P>(_: &Context, _: P) -> Result<(), StageError> {
    unreachable!("spec never runs a builtin")
}

/// A stand-in registry, so builtin stages are tested without any domain crate: `train-gan`
/// takes any map (its keys are not checked), `evaluate` a struct.
static TRAIN: Kind<serde_json::Map<String, Value>> = Kind {
    kind: "train-gan",
    version: 7,
    summary: "",
    run: never,
};
static EVALUATE: Kind<EvaluateParams> = Kind {
    kind: "evaluate",
    version: 1,
    summary: "",
    run: never,
};
static FAKE: [&dyn Builtin; 2] = [&TRAIN, &EVALUATE];

fn opts(profile: Option<&str>, sets: &[&str]) -> LoadOptions {
    LoadOptions {
        profile: profile.map(str::to_owned),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        builtins: Registry::new(&FAKE),
    }
}

fn parse_with(text: &str, path: &Path, o: &LoadOptions) -> Result<Pipeline, SpecError> {
    let o = LoadOptions {
        builtins: Registry::new(&FAKE),
        ..o.clone()
    };
    parse(text, path, &o)
}

fn ok_with(text: &str, o: &LoadOptions) -> Pipeline {
    match parse_with(text, Path::new("pipeline.yaml"), o) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn ok(text: &str) -> Pipeline {
    ok_with(text, &LoadOptions::default())
}

fn err_with(text: &str, o: &LoadOptions) -> SpecError {
    match parse_with(text, Path::new("pipeline.yaml"), o) {
        Ok(p) => panic!("expected an error, got {} stages", p.stages.len()),
        Err(e) => e,
    }
}

fn err(text: &str) -> SpecError {
    err_with(text, &LoadOptions::default())
}

fn at(e: &SpecError) -> (usize, usize) {
    let l = e.location.unwrap_or_else(|| panic!("no location in `{e}`"));
    (l.line, l.col)
}

fn stage<'p>(p: &'p Pipeline, name: &str) -> &'p Stage {
    p.stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage `{name}`"))
}

fn names(p: &Pipeline) -> Vec<&str> {
    p.stages.iter().map(|s| s.name.as_str()).collect()
}

const FULL: &str = r#"vars:
  data: data/mnist
params:
  lr: 0.0002
  train: {batch: 64, steps: 10}
  seeds: [1, 2]
default_profile: quick
profiles:
  quick: {train: {steps: 5}}
  paper: {lr: 0.0001, train: {batch: 128}, seeds: [1, 2, 3]}
stages:
  prepare:
    cmd: python prep.py ${data}
    deps: [data/raw, ./prep.py]
    outs: ["${data}/", {path: runs/x, cache: false, persist: true}]
    metrics: [metrics.json]
    params: [lr, train]
    resources: {cpus: 2, gpus: 1, mem: 8G}
    env: [SEED, CUDA_VISIBLE_DEVICES]
  train:
    builtin: train-gan
    with:
      lr: ${lr}
      batch: ${train.batch}
      seed: ${item.seed}
      method: ${item.method}
    matrix:
      seed: ${seeds}
      method: [sn, sr]
    deps: ["${data}"]
    outs: ["runs/${item.method}-${item.seed}"]
    deterministic: false
  eval:
    foreach: [a, b]
    do:
      cmd: echo ${item}
      outs: ["out/${item}.txt"]
"#;

#[test]
fn full_example_expands_interpolates_and_normalizes() {
    let p = ok(FULL);
    assert_eq!(p.profile.as_deref(), Some("quick"));
    assert_eq!(
        p.params,
        json!({"lr": 0.0002, "train": {"batch": 64, "steps": 5}, "seeds": [1, 2]})
    );
    assert_eq!(
        names(&p),
        [
            "prepare",
            "train@1-sn",
            "train@1-sr",
            "train@2-sn",
            "train@2-sr",
            "eval@a",
            "eval@b"
        ]
    );
    assert_eq!(
        p.groups["train"],
        ["train@1-sn", "train@1-sr", "train@2-sn", "train@2-sr"]
    );
    assert_eq!(p.groups["eval"], ["eval@a", "eval@b"]);

    let prep = stage(&p, "prepare");
    assert_eq!(prep.location, Location { line: 12, col: 3 });
    assert_eq!(
        prep.action,
        Action::Cmd(vec!["python prep.py data/mnist".into()])
    );
    assert_eq!(
        prep.deps
            .iter()
            .map(|d| d.path.as_str())
            .collect::<Vec<_>>(),
        ["data/raw", "prep.py"]
    );
    assert_eq!(prep.deps[1].location, Location { line: 14, col: 22 });
    assert_eq!(prep.outs.len(), 3);
    assert_eq!(prep.outs[0].path, "data/mnist");
    assert_eq!(
        prep.outs[1],
        Out {
            path: "runs/x".into(),
            cache: false,
            persist: true,
            metric: false,
            location: Location { line: 15, col: 24 }
        }
    );
    assert!(prep.outs[2].metric && prep.outs[2].cache && prep.outs[2].path == "metrics.json");
    assert_eq!(prep.params["lr"], json!(0.0002));
    assert_eq!(prep.params["train"], json!({"batch": 64, "steps": 5}));
    assert_eq!(
        prep.resources,
        Resources {
            cpus: 2,
            gpus: 1,
            mem: 8 << 30
        }
    );
    assert_eq!(prep.env, ["SEED", "CUDA_VISIBLE_DEVICES"]);
    assert!(prep.deterministic && !prep.frozen && !prep.always_changed);
    assert_eq!(prep.group, None);

    let t = stage(&p, "train@2-sr");
    assert_eq!(t.group.as_deref(), Some("train"));
    assert_eq!(t.location, Location { line: 20, col: 3 });
    let Action::Builtin { kind, with, .. } = &t.action else {
        panic!("not a builtin")
    };
    assert_eq!(kind, "train-gan");
    assert_eq!(
        serde_json::Value::Object(with.clone()),
        json!({"lr": 0.0002, "batch": 64, "seed": 2, "method": "sr"})
    );
    assert_eq!(t.outs[0].path, "runs/sr-2");
    assert_eq!(t.outs[0].location, Location { line: 31, col: 12 });
    assert!(!t.deterministic);
    assert_eq!(t.resources, Resources::default());

    let e = stage(&p, "eval@b");
    assert_eq!(e.action, Action::Cmd(vec!["echo b".into()]));
    assert_eq!(e.outs[0].path, "out/b.txt");
}

#[test]
fn profile_flag_overrides_default_profile_and_changes_the_grid() {
    let p = ok_with(FULL, &opts(Some("paper"), &[]));
    assert_eq!(p.profile.as_deref(), Some("paper"));
    assert_eq!(p.params["train"], json!({"batch": 128, "steps": 10}));
    assert_eq!(p.groups["train"].len(), 6);
    assert!(p.groups["train"].contains(&"train@3-sr".to_owned()));
}

#[test]
fn set_applies_after_the_profile() {
    let p = ok_with(FULL, &opts(Some("paper"), &["lr=0.5", "train.batch=7"]));
    assert_eq!(p.params["lr"], json!(0.5));
    let Action::Builtin { with, .. } = &stage(&p, "train@1-sn").action else {
        panic!()
    };
    assert_eq!(with["batch"], json!(7));
    assert_eq!(with["lr"], json!(0.5));
}

// ---- fan-out naming ----

#[test]
fn foreach_over_a_map_names_by_key_and_sees_key_and_item() {
    let p = ok(r#"
stages:
  fetch:
    foreach:
      mnist: {url: a}
      cifar: {url: b}
    do:
      cmd: get ${item.url} ${key}
      outs: ["data/${key}"]
"#);
    assert_eq!(names(&p), ["fetch@mnist", "fetch@cifar"]);
    assert_eq!(
        stage(&p, "fetch@cifar").action,
        Action::Cmd(vec!["get b cifar".into()])
    );
    assert_eq!(stage(&p, "fetch@cifar").outs[0].path, "data/cifar");
}

#[test]
fn foreach_over_non_scalars_names_by_index() {
    let p = ok(r#"
stages:
  run:
    foreach: [{n: 1}, {n: 2}]
    do: {cmd: "echo ${item.n}"}
"#);
    assert_eq!(names(&p), ["run@0", "run@1"]);
    assert_eq!(
        stage(&p, "run@1").action,
        Action::Cmd(vec!["echo 2".into()])
    );
}

#[test]
fn matrix_names_lists_and_maps_by_key_and_index_and_numbers_like_yaml() {
    let p = ok(r#"
stages:
  t:
    cmd: "run ${item.lr} ${item.flag}"
    matrix:
      lr: [0.0002, 1.5]
      cfg: [[1, 2], {a: 1}]
      flag: [true]
"#);
    assert_eq!(
        names(&p),
        [
            "t@0.0002-cfg0-true",
            "t@0.0002-cfg1-true",
            "t@1.5-cfg0-true",
            "t@1.5-cfg1-true"
        ]
    );
    assert_eq!(
        stage(&p, "t@1.5-cfg1-true").action,
        Action::Cmd(vec!["run 1.5 true".into()])
    );
}

#[test]
fn a_matrix_axis_may_be_a_map_named_by_its_keys() {
    let p = ok(r#"
stages:
  t:
    cmd: "run ${key.sr} ${item.sr.mode} ${item.seed}"
    matrix:
      sr: {sn: {mode: none}, warm: {mode: dynamic, start: 10}}
      seed: [1, 2]
"#);
    assert_eq!(names(&p), ["t@sn-1", "t@sn-2", "t@warm-1", "t@warm-2"]);
    assert_eq!(
        stage(&p, "t@warm-2").action,
        Action::Cmd(vec!["run warm dynamic 2".into()])
    );
    // A list axis has no key: `${key.seed}` is an unknown reference.
    let e = err("stages:\n  t:\n    cmd: \"${key.seed}\"\n    matrix: {sr: {a: 1}, seed: [1]}\n")
        .to_string();
    assert!(e.contains("unknown reference `${key.seed}`"), "{e}");
}

#[test]
fn matrix_and_foreach_may_come_from_a_reference() {
    let p = ok(r#"
vars:
  grid: {seed: [7, 8]}
  sets: [a, b, c]
stages:
  m:
    cmd: "echo ${item.seed}"
    matrix: ${grid}
  f:
    foreach: ${sets}
    do: {cmd: "echo ${item}"}
"#);
    assert_eq!(names(&p), ["m@7", "m@8", "f@a", "f@b", "f@c"]);
}

#[test]
fn fanout_members_keep_the_template_locations() {
    let p = ok("stages:\n  e:\n    foreach: [x, y]\n    do:\n      cmd: echo\n      deps:\n        - in/${item}\n");
    for s in &p.stages {
        assert_eq!(s.location, Location { line: 2, col: 3 });
        assert_eq!(s.deps[0].location, Location { line: 7, col: 11 });
    }
    assert_eq!(stage(&p, "e@y").deps[0].path, "in/y");
}

// ---- stages: actions, paths, wdir, defaults ----

#[test]
fn cmd_lists_wdir_joining_and_flags() {
    let p = ok(r#"
stages:
  s:
    cmd:
      - mkdir -p out
      - echo hi > out/x
    wdir: ./sub/dir/
    deps: [../shared/in.txt, ./local]
    outs: [out]
    metrics: [{path: m.json, cache: false}]
    frozen: true
    always_changed: true
"#);
    let s = stage(&p, "s");
    assert_eq!(
        s.action,
        Action::Cmd(vec!["mkdir -p out".into(), "echo hi > out/x".into()])
    );
    assert_eq!(s.wdir, "sub/dir");
    assert_eq!(
        s.deps.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        ["sub/shared/in.txt", "sub/dir/local"]
    );
    assert_eq!(s.outs[0].path, "sub/dir/out");
    assert_eq!(s.outs[1].path, "sub/dir/m.json");
    assert!(s.outs[1].metric && !s.outs[1].cache);
    assert!(s.frozen && s.always_changed);
}

#[test]
fn empty_file_and_empty_stages_are_an_empty_pipeline() {
    assert!(ok("").stages.is_empty());
    assert!(ok("stages:\n").stages.is_empty());
}

#[test]
fn merge_keys_share_stage_defaults() {
    let p = ok(r#"
stages:
  a: &base
    cmd: echo a
    resources: {cpus: 2}
  b:
    <<: *base
    cmd: echo b
"#);
    assert_eq!(stage(&p, "b").action, Action::Cmd(vec!["echo b".into()]));
    assert_eq!(stage(&p, "b").resources.cpus, 2);
}

#[test]
fn a_thousand_stages_parse() {
    let mut text = String::from("params:\n  lr: 0.1\nstages:\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "  s{i}:\n    cmd: python train.py --lr ${{lr}} --i {i}\n    deps: [data/in{i}, train.py]\n    outs: [out/s{i}]\n    params: [lr]\n"
        ));
    }
    let p = ok(&text);
    assert_eq!(p.stages.len(), 1000);
    assert_eq!(stage(&p, "s999").outs[0].path, "out/s999");
    assert_eq!(stage(&p, "s999").location.line, 3 + 999 * 5 + 1);
}

// ---- every error class, with its location ----

#[test]
fn error_yaml_syntax() {
    let e = err("stages:\n  a:\n    cmd: [echo\n");
    assert!(matches!(e.kind, SpecErrorKind::Syntax { .. }), "{e}");
    assert_eq!(e.location.map(|l| l.line), Some(4));
}

#[test]
fn error_duplicate_key() {
    let e = err("stages:\n  a:\n    cmd: echo\n    cmd: echo 2\n");
    assert!(matches!(e.kind, SpecErrorKind::DuplicateKey { .. }), "{e}");
    assert_eq!(at(&e), (4, 5));
}

#[test]
fn error_unknown_key_in_stage() {
    let e = err("stages:\n  train:\n    cmdd: python x\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownKey { .. }));
    assert_eq!(at(&e), (3, 5));
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:3:5: unknown key `cmdd` in stage `train`; did you mean `cmd`? (expected one of: cmd, builtin, with, deps, outs, metrics, params, frozen, always_changed, deterministic, resources, wdir, env, matrix, foreach, profiles)"
    );
}

#[test]
fn error_unknown_key_elsewhere() {
    let e = err("stage:\n  a: {cmd: x}\n");
    assert_eq!(at(&e), (1, 1));
    assert!(
        e.to_string()
            .contains("unknown key `stage` at the top level"),
        "{e}"
    );
    let e = err("stages:\n  a:\n    cmd: x\n    outs:\n      - {path: o, cach: false}\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownKey { .. }));
    assert_eq!(at(&e), (5, 19));
    let e = err("stages:\n  a:\n    cmd: x\n    resources: {cpu: 1}\n");
    assert_eq!(at(&e), (4, 17));
    let e = err("stages:\n  a:\n    foreach: [1]\n    cmd: x\n    do: {cmd: y}\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownKey { .. }), "{e}");
    assert_eq!(at(&e), (4, 5));
    let e = err("stages:\n  a:\n    foreach: [1]\n    do:\n      cmd: y\n      matrix: {}\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownKey { .. }), "{e}");
    assert_eq!(at(&e), (6, 7));
}

#[test]
fn error_wrong_type() {
    let e = err("stages:\n  a:\n    cmd: x\n    deps: {x: 1}\n");
    assert!(matches!(e.kind, SpecErrorKind::WrongType { .. }));
    assert_eq!(at(&e), (4, 11));
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:4:11: `deps` in stage `a` must be a list of paths, found a map"
    );
    let e = err("stages:\n  a:\n    cmd: x\n    frozen: yes\n");
    assert!(matches!(e.kind, SpecErrorKind::WrongType { .. }), "{e}");
    assert_eq!(at(&e), (4, 13));
    let e = err("stages: [a, b]\n");
    assert_eq!(at(&e), (1, 9));
    let e = err("stages:\n  a: echo hi\n");
    assert!(matches!(e.kind, SpecErrorKind::WrongType { .. }));
    assert_eq!(at(&e), (2, 6));
}

#[test]
fn error_neither_or_both_actions() {
    let e = err("stages:\n  a:\n    deps: [x]\n");
    assert!(matches!(e.kind, SpecErrorKind::MissingAction { .. }));
    assert_eq!(at(&e), (2, 3));
    let e = err("stages:\n  a:\n    cmd: x\n    builtin: evaluate\n");
    assert!(matches!(e.kind, SpecErrorKind::BothActions { .. }));
    assert_eq!(at(&e), (3, 5));
}

#[test]
fn error_with_without_builtin() {
    let e = err("stages:\n  a:\n    cmd: x\n    with: {lr: 1}\n");
    assert!(matches!(e.kind, SpecErrorKind::WithWithoutBuiltin { .. }));
    assert_eq!(at(&e), (4, 5));
}

#[test]
fn error_unknown_builtin() {
    let e = err("stages:\n  a:\n    builtin: train-gna\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownBuiltin { .. }));
    assert_eq!(at(&e), (3, 14));
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:3:14: unknown builtin kind `train-gna` in stage `a` (known kinds: train-gan, evaluate)"
    );
}

#[test]
fn without_a_registry_no_builtin_is_known() {
    let e = parse(
        "stages:\n  a:\n    builtin: train-gan\n",
        Path::new("p.yaml"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e.kind, SpecErrorKind::UnknownBuiltin { .. }));
    assert!(
        e.to_string().contains("no builtin kinds are registered"),
        "{e}"
    );
}

#[test]
fn a_builtin_stage_carries_its_kinds_version() {
    let p = ok("stages:\n  a:\n    builtin: train-gan\n    with: {anything: 1}\n");
    let Action::Builtin { version, .. } = &p.stages[0].action else {
        panic!("a builtin stage")
    };
    assert_eq!(*version, 7);
}

#[test]
fn error_unknown_with_key_names_the_key_and_the_close_one() {
    let e = err("stages:\n  a:\n    builtin: evaluate\n    with: {lr: 1, nmae: x, list: []}\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownKey { ref key, .. } if key == "nmae"));
    assert_eq!(at(&e), (4, 19));
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:4:19: unknown key `nmae` in `with:` of stage `a` (builtin `evaluate`); did you mean `name`? (expected one of: lr, name, list)"
    );
}

#[test]
fn error_unknown_reference() {
    let e = err("params: {lr: 1}\nstages:\n  a:\n    cmd: python t.py --lr ${lrr}\n");
    assert!(
        matches!(e.kind, SpecErrorKind::UnknownReference { ref reference, .. } if reference == "lrr")
    );
    assert_eq!(at(&e), (4, 10));
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:4:10: unknown reference `${lrr}` in stage `a`; did you mean `${lr}`? (or write `$${lrr}` for a literal `${`)"
    );
    let e = err("params: {lr: 1}\nstages:\n  a:\n    cmd: echo ${HOME}\n");
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:4:10: unknown reference `${HOME}` in stage `a`; define `HOME` under `vars:` or `params:`, or write `$${HOME}` for a literal `${`"
    );
    let e = err("stages:\n  a:\n    cmd: echo ${item}\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownReference { .. }));
    let e = err("stages:\n  a:\n    foreach: [1]\n    do:\n      cmd: echo\n      outs: [\"o/${item.x}\"]\n");
    assert!(
        matches!(
            e.kind,
            SpecErrorKind::UnknownReference {
                in_fanout: true,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(at(&e), (6, 14));
    assert!(e.to_string().contains("in stage `a@1`"), "{e}");
}

#[test]
fn error_bad_interpolation() {
    let e = err("params: {t: {a: 1}}\nstages:\n  a:\n    cmd: echo ${t}\n");
    assert!(
        matches!(e.kind, SpecErrorKind::BadInterpolation { .. }),
        "{e}"
    );
    assert_eq!(at(&e), (4, 10));
    let e = err("stages:\n  a:\n    cmd: echo ${oops\n");
    assert!(
        matches!(e.kind, SpecErrorKind::BadInterpolation { .. }),
        "{e}"
    );
}

#[test]
fn error_name_in_vars_and_params() {
    let e = err("vars:\n  x: 1\n  lr: 2\nparams:\n  lr: 3\nstages: {}\n");
    assert!(matches!(e.kind, SpecErrorKind::AmbiguousName { ref name } if name == "lr"));
    assert_eq!(at(&e), (3, 3));
}

#[test]
fn error_unknown_profile() {
    let text = "params: {lr: 1}\nprofiles:\n  quick: {lr: 2}\n  paper: {lr: 3}\nstages: {}\n";
    let e = err_with(text, &opts(Some("papr"), &[]));
    assert!(matches!(e.kind, SpecErrorKind::UnknownProfile { .. }));
    assert_eq!(e.location, None);
    assert_eq!(
        e.to_string(),
        "pipeline.yaml: unknown profile `papr` (defined: quick, paper)"
    );
    let e = err("default_profile: fast\nstages: {}\n");
    assert_eq!(at(&e), (1, 18));
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:1:18: unknown profile `fast` (the pipeline defines no `profiles:`)"
    );
}

#[test]
fn error_unknown_param() {
    let text = "params:\n  lr: 1\n  train: {batch: 2}\nstages:\n  a:\n    cmd: x\n    params: [lr, train.bach]\n";
    let e = err(text);
    assert!(matches!(e.kind, SpecErrorKind::UnknownParam { ref key, .. } if key == "train.bach"));
    assert_eq!(at(&e), (7, 18));
    assert!(
        e.to_string().ends_with("did you mean `train.batch`?"),
        "{e}"
    );
    let e = err_with("params: {lr: 1}\nstages: {}\n", &opts(None, &["rl=2"]));
    assert!(matches!(e.kind, SpecErrorKind::UnknownParam { .. }));
    assert_eq!(e.location, None);
    let e = err("params: {lr: 1}\ndefault_profile: p\nprofiles:\n  p: {lrr: 2}\n");
    assert!(matches!(e.kind, SpecErrorKind::UnknownParam { .. }));
    assert_eq!(at(&e), (4, 7));
}

#[test]
fn error_bad_set() {
    let e = err_with("params: {lr: 1}\n", &opts(None, &["lr"]));
    assert!(matches!(e.kind, SpecErrorKind::BadSet { .. }));
    assert_eq!(
        e.to_string(),
        "pipeline.yaml: bad `--set lr`: expected `key.path=value`, like `--set train.batch=128`"
    );
}

#[test]
fn error_path_outside_workspace() {
    for (text, loc) in [
        (
            "stages:\n  a:\n    cmd: x\n    deps: [/etc/passwd]\n",
            (4, 12),
        ),
        ("stages:\n  a:\n    cmd: x\n    outs: [../x]\n", (4, 12)),
        (
            "stages:\n  a:\n    cmd: x\n    metrics: [a/../../m.json]\n",
            (4, 15),
        ),
        ("stages:\n  a:\n    cmd: x\n    wdir: ../up\n", (4, 11)),
        (
            "stages:\n  a:\n    cmd: x\n    wdir: sub\n    outs: [../../o]\n",
            (5, 12),
        ),
    ] {
        let e = err(text);
        assert!(
            matches!(e.kind, SpecErrorKind::OutsideWorkspace { .. }),
            "{e}"
        );
        assert_eq!(at(&e), loc, "{text}");
    }
    let e = err("stages:\n  a:\n    cmd: x\n    deps: [/etc/passwd]\n");
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:4:12: dep `/etc/passwd` in stage `a` is outside the workspace; use a path relative to the pipeline's directory that stays inside it"
    );
}

#[test]
fn error_empty_path() {
    let e = err("stages:\n  a:\n    cmd: x\n    outs: [\"./\"]\n");
    assert!(matches!(e.kind, SpecErrorKind::EmptyPath { .. }), "{e}");
    assert_eq!(at(&e), (4, 12));
}

#[test]
fn error_duplicate_stage_after_expansion() {
    let e = err("stages:\n  a:\n    foreach: [x, y, x]\n    do: {cmd: echo}\n");
    assert!(
        matches!(e.kind, SpecErrorKind::DuplicateStage { ref name, .. } if name == "a@x"),
        "{e}"
    );
    assert_eq!(at(&e), (2, 3));
}

#[test]
fn error_reserved_stage_name() {
    for (text, loc) in [
        ("stages:\n  a@b: {cmd: x}\n", (2, 3)),
        ("stages:\n  a/b: {cmd: x}\n", (2, 3)),
        ("stages:\n  \"a b\": {cmd: x}\n", (2, 3)),
        (
            "stages:\n  a:\n    foreach: [x/y]\n    do: {cmd: echo}\n",
            (3, 14),
        ),
        (
            "stages:\n  a:\n    matrix: {p: [\"x y\"]}\n    cmd: echo\n",
            (3, 13),
        ),
    ] {
        let e = err(text);
        assert!(
            matches!(e.kind, SpecErrorKind::ReservedStageName { .. }),
            "{e}"
        );
        assert_eq!(at(&e), loc, "{text}");
    }
}

#[test]
fn error_empty_cmd() {
    for (text, loc) in [
        ("stages:\n  a:\n    cmd: \"\"\n", (3, 10)),
        ("stages:\n  a:\n    cmd: []\n", (3, 10)),
        ("stages:\n  a:\n    cmd:\n", (3, 9)),
        ("stages:\n  a:\n    cmd: [echo, \" \"]\n", (3, 17)),
    ] {
        let e = err(text);
        assert!(matches!(e.kind, SpecErrorKind::EmptyCmd { .. }), "{e}");
        assert_eq!(at(&e), loc, "{text}");
    }
}

#[test]
fn error_bad_resources() {
    for (text, field) in [
        (
            "stages:\n  a:\n    cmd: x\n    resources: {cpus: 0}\n",
            "cpus",
        ),
        (
            "stages:\n  a:\n    cmd: x\n    resources: {cpus: 1.5}\n",
            "cpus",
        ),
        (
            "stages:\n  a:\n    cmd: x\n    resources: {gpus: -1}\n",
            "gpus",
        ),
        (
            "stages:\n  a:\n    cmd: x\n    resources: {mem: 8X}\n",
            "mem",
        ),
        (
            "stages:\n  a:\n    cmd: x\n    resources: {mem: [1]}\n",
            "mem",
        ),
    ] {
        let e = err(text);
        assert!(
            matches!(e.kind, SpecErrorKind::BadResource { field: f, .. } if f == field),
            "{e}"
        );
        assert_eq!(e.location.map(|l| l.line), Some(4));
    }
    let e = err("stages:\n  a:\n    cmd: x\n    resources: {mem: 8X}\n");
    assert_eq!(at(&e), (4, 22));
}

#[test]
fn error_bad_env_name() {
    let e = err("stages:\n  a:\n    cmd: x\n    env: [SEED, 1BAD]\n");
    assert!(matches!(e.kind, SpecErrorKind::BadEnvName { ref name, .. } if name == "1BAD"));
    assert_eq!(at(&e), (4, 17));
}

#[test]
fn error_bad_fanout() {
    let e = err("stages:\n  a:\n    cmd: x\n    foreach: [1]\n    matrix: {a: [1]}\n");
    assert!(matches!(e.kind, SpecErrorKind::BadFanOut { .. }), "{e}");
    let e = err("stages:\n  a:\n    do: {cmd: x}\n");
    assert!(matches!(e.kind, SpecErrorKind::BadFanOut { .. }), "{e}");
    assert_eq!(at(&e), (3, 5));
    let e = err("stages:\n  a:\n    foreach: []\n    do: {cmd: x}\n");
    assert!(matches!(e.kind, SpecErrorKind::BadFanOut { .. }), "{e}");
    assert_eq!(at(&e), (3, 14));
    let e = err("stages:\n  a:\n    cmd: x\n    matrix: {s: []}\n");
    assert!(matches!(e.kind, SpecErrorKind::BadFanOut { .. }), "{e}");
    let e = err("stages:\n  a:\n    foreach: [1]\n");
    assert!(matches!(e.kind, SpecErrorKind::BadFanOut { .. }), "{e}");
}

#[test]
fn error_read_names_the_file_as_given() {
    let e = load(Path::new("no/such/pipeline.yaml"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(e.kind, SpecErrorKind::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("no/such/pipeline.yaml: cannot read the pipeline file ("),
        "{e}"
    );
}

#[test]
fn unquoted_reference_in_a_flow_list_gets_a_hint() {
    let e = err("stages:\n  a:\n    cmd: x\n    outs: [data/${x}]\n");
    assert!(matches!(e.kind, SpecErrorKind::Syntax { .. }));
    assert_eq!(e.location.map(|l| l.line), Some(4));
    assert!(
        e.to_string().contains("quote values that contain `${...}`"),
        "{e}"
    );
}

// ---- tests/fixtures/spec: one file per error class, for the CLI integration tests too ----

/// Each fixture's first line is `# error: MESSAGE` (the exact Display, as if the file were
/// `pipeline.yaml`), `# error-prefix: MESSAGE` (when the tail depends on the builtin
/// registry) or `# ok: N stages`; an optional second line `# args: --profile P` /
/// `# args: --set K=V` gives the command-line options.
#[test]
fn fixtures_produce_their_documented_results() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/spec");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures missing in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines = text.lines();
        let expect = lines.next().unwrap_or_default();
        let mut o = LoadOptions::default();
        if let Some(args) = lines.next().and_then(|l| l.strip_prefix("# args: ")) {
            let mut words = args.split_whitespace();
            while let (Some(flag), Some(value)) = (words.next(), words.next()) {
                match flag {
                    "--profile" => o.profile = Some(value.to_owned()),
                    "--set" => o.sets.push(value.to_owned()),
                    other => panic!("unknown flag `{other}` in {}", file.display()),
                }
            }
        }
        let got = match parse(&text, Path::new("pipeline.yaml"), &o) {
            Ok(p) => format!("# ok: {} stages", p.stages.len()),
            Err(e) => format!("# error: {e}"),
        };
        let matches = match expect.strip_prefix("# error-prefix: ") {
            Some(prefix) => got.starts_with(&format!("# error: {prefix}")),
            None => got == expect,
        };
        if !matches {
            failures.push(format!(
                "{}:\n  expected {expect}\n  got      {got}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn render_shows_the_line_and_a_caret() {
    let text = "stages:\n  train:\n    cmdd: python x\n";
    let e = err(text);
    assert_eq!(
        e.render(text),
        "error: unknown key `cmdd` in stage `train`; did you mean `cmd`? (expected one of: cmd, builtin, with, deps, outs, metrics, params, frozen, always_changed, deterministic, resources, wdir, env, matrix, foreach, profiles)\n --> pipeline.yaml:3:5\n  |\n3 |     cmdd: python x\n  |     ^"
    );
    let e = err_with("params: {lr: 1}\n", &opts(Some("x"), &[]));
    assert_eq!(e.render("params: {lr: 1}\n"), format!("error: {e}"));
}

#[test]
fn errors_can_travel_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<SpecError>();
}

#[test]
fn reserved_member_names_explain_where_the_part_comes_from() {
    let e = err("stages:\n  a:\n    foreach: [x/y]\n    do: {cmd: echo}\n");
    assert_eq!(
        e.to_string(),
        "pipeline.yaml:3:14: stage name `a@x/y` has a member part that contains `/`; `@` separates a fan-out group from its member, `/` is for paths, and whitespace breaks targets on the command line (use a `foreach:` map to choose member names)"
    );
}

#[test]
fn interpolation_reaches_every_stage_field() {
    let p = ok(r#"
vars:
  dir: work
  var: SEED
  tracked: lr
  files: [a.txt, b.txt]
params:
  lr: 0.5
  gpus: 2
  frozen: true
stages:
  s:
    builtin: evaluate
    with: {lr: "${lr}", name: "run-${lr}", list: "${files}"}
    wdir: ${dir}
    deps: ${files}
    outs: ["out-${lr}"]
    metrics: ["m-${var}.json"]
    params: ["${tracked}"]
    env: ["${var}"]
    resources: {gpus: "${gpus}"}
    frozen: ${frozen}
"#);
    let s = stage(&p, "s");
    let Action::Builtin { with, .. } = &s.action else {
        panic!()
    };
    assert_eq!(
        serde_json::Value::Object(with.clone()),
        json!({"lr": 0.5, "name": "run-0.5", "list": ["a.txt", "b.txt"]})
    );
    assert_eq!(s.wdir, "work");
    assert_eq!(
        s.deps.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        ["work/a.txt", "work/b.txt"]
    );
    assert_eq!(s.outs[0].path, "work/out-0.5");
    assert_eq!(s.outs[1].path, "work/m-SEED.json");
    assert_eq!(s.params.keys().collect::<Vec<_>>(), ["lr"]);
    assert_eq!(s.env, ["SEED"]);
    assert_eq!(s.resources.gpus, 2);
    assert!(s.frozen);
}

/// The examples in docs/pipeline-yaml.md that are whole files must stay valid.
#[test]
fn whole_file_examples_in_the_reference_parse() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pipeline-yaml.md"),
    )
    .unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with("vars:") || b.starts_with("stages:"))
        .collect();
    assert!(
        blocks.len() >= 2,
        "whole-file examples missing from the reference"
    );
    for b in blocks {
        let p = ok(b);
        assert!(!p.stages.is_empty());
    }
    let p = ok(doc
        .split("```yaml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap());
    assert_eq!(p.profile.as_deref(), Some("quick"));
    assert_eq!(
        names(&p),
        [
            "prepare",
            "train@1-sn",
            "train@1-sr",
            "train@2-sn",
            "train@2-sr",
            "eval@sn",
            "eval@sr"
        ]
    );
}

/// Odd inputs end in `Ok` or a located error, never a panic.
#[test]
fn odd_inputs_never_panic() {
    let long_line = format!("stages:\n  a:\n    cmd: {}\n", "x".repeat(100_000));
    let deep = format!("params:\n  a: {}1{}\n", "[".repeat(200), "]".repeat(200));
    let inputs = [
        "\t",
        "stages:\n\t a: 1\n",
        "*undefined\n",
        "a: *undefined\n",
        "stages: &s\n  a: {cmd: x}\nparams: *s\n",
        "stages:\n  é: {cmd: \"echo ü ${x\"}\n",
        "stages:\n  a: {cmd: x, deps: [\"\u{0}\"]}\n",
        "? [a, b]\n: c\n",
        "stages:\n  ? [a]\n  : {cmd: x}\n",
        "---\n...\n",
        "%YAML 1.2\n---\nstages: {}\n",
        "stages:\n  a:\n    cmd: x\n    outs: [{}]\n",
        "stages:\n  a:\n    foreach: {}\n    do: {cmd: x}\n",
        "stages:\n  a:\n    matrix: ${nothing}\n    cmd: x\n",
        "params: {a: 1}\nprofiles: {p: 3}\ndefault_profile: p\n",
        "params: 3\n",
        "[1, 2]\n",
        "stages:\n  a:\n    cmd: $${${}}\n",
        &long_line,
        &deep,
    ];
    for text in inputs {
        match parse_with(text, Path::new("pipeline.yaml"), &LoadOptions::default()) {
            Ok(_) => {}
            Err(e) => {
                let _ = e.to_string();
                let _ = e.render(text);
            }
        }
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = err("stages:\n  é: x\n");
    assert_eq!(at(&e), (2, 6));
}

#[test]
fn render_from_file_reads_the_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, "stages:\n  a:\n    cmd: \"\"\n").unwrap();
    let e = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        e.render_from_file()
            .ends_with("3 |     cmd: \"\"\n  |          ^"),
        "{}",
        e.render_from_file()
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(e.render_from_file(), format!("error: {e}"));
}

// ---- stage-level `profiles:` ----

#[test]
fn profiles_key_restricts_a_stage_to_those_profiles() {
    let text = "params: {n: 1}\nprofiles: {quick: {n: 2}, paper: {n: 3}}\ndefault_profile: quick\nstages:\n  always:\n    cmd: echo ${n} > a\n    outs: [a]\n  gpu:\n    profiles: [paper]\n    matrix: {s: [1, 2]}\n    cmd: echo ${item.s} > g${item.s}\n    outs: [\"g${item.s}\"]\n";
    let names = |p: &Pipeline| p.stages.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ok(text)), vec!["always"]);
    let paper = ok_with(text, &opts(Some("paper"), &[]));
    assert_eq!(names(&paper), vec!["always", "gpu@1", "gpu@2"]);
    let bad = err(&text.replace("profiles: [paper]", "profiles: [papr]"));
    assert!(
        matches!(bad.kind, SpecErrorKind::UnknownProfile { .. }),
        "{bad}"
    );
    assert_eq!(bad.location.map(|l| (l.line, l.col)), Some((9, 16)));
}

// ---- hostile and broken files: bounded work, positioned errors (issue 19) ----

#[path = "../../../tests/common/hostile.rs"]
mod hostile;
use hostile::laughs;

/// CPU seconds this thread has used: what bounded work is about, whatever the machine's load
/// (wall time would fail the test on a busy machine, not on unbounded work).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Parses `text` and checks that it fails fast with `kind`, returning the error.
fn fails_fast(text: &str, is_kind: fn(&SpecErrorKind) -> bool) -> SpecError {
    let start = thread_cpu_seconds();
    let e = err(text);
    assert!(is_kind(&e.kind), "{e}");
    // Generous: the bound is a fraction of a CPU second even in a debug build.
    let used = thread_cpu_seconds() - start;
    assert!(used < 5.0, "took {used:.2} s of CPU: {e}");
    e
}

#[test]
fn alias_expansion_is_bounded_at_the_alias_that_goes_over() {
    // Level 4 (10^4 scalars) is within every bound and parses. Level 5 is within the node
    // bound but follows more aliases than serde_norway allows (100 per event of the file):
    // that is reported too, at the alias that expands the most.
    ok(&laughs(4));
    let e = fails_fast(&laughs(5), |k| {
        matches!(k, SpecErrorKind::TooManyAliases { ratio: 100 })
    });
    assert_eq!(at(&e), (6, 12));
    for levels in [6, 7, 10, 30] {
        let e = fails_fast(&laughs(levels), |k| {
            matches!(k, SpecErrorKind::TooManyNodes { .. })
        });
        // An alias of level 6 (line 7), the first that would go over the node limit.
        assert_eq!(e.location.map(|l| l.line), Some(7), "{e}");
        assert!(e.to_string().starts_with("pipeline.yaml:7:"), "{e}");
    }
}

#[test]
fn nesting_is_bounded_before_the_parser_goes_quadratic() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = fails_fast(&deep, |k| {
        matches!(k, SpecErrorKind::TooDeep { limit: 128 })
    });
    assert_eq!(at(&e), (1, 129));
    let deep = format!("{}x\n", "- ".repeat(100_000));
    let e = fails_fast(&deep, |k| matches!(k, SpecErrorKind::TooDeep { .. }));
    assert_eq!(at(&e), (1, 257));
    let deep = format!("{}{}", "{a: ".repeat(100_000), "}".repeat(100_000));
    fails_fast(&deep, |k| matches!(k, SpecErrorKind::TooDeep { .. }));
    // 128 levels, the root map included, are allowed.
    let ok_depth = format!(
        "params:\n  p: {}1{}\n",
        "[".repeat(127 - 1),
        "]".repeat(127 - 1)
    );
    ok(&ok_depth);
}

#[test]
fn an_alias_counts_at_the_depth_where_it_is_used() {
    // The anchored value is 100 deep; used 40 levels down it would nest 141 deep.
    let text = format!(
        "vars:\n  deep: &d {}1{}\n  use: {}*d{}\n",
        "[".repeat(100),
        "]".repeat(100),
        "[".repeat(40),
        "]".repeat(40)
    );
    let e = fails_fast(&text, |k| matches!(k, SpecErrorKind::TooDeep { .. }));
    assert_eq!(e.location.map(|l| l.line), Some(3));
}

#[test]
fn node_count_and_expanded_text_are_bounded() {
    // A flat list far over the node limit stops at the limit, not at the end.
    let mut text = String::from("params:\n  l:\n");
    for _ in 0..400_000 {
        text.push_str("  - 1\n");
    }
    let e = fails_fast(&text, |k| matches!(k, SpecErrorKind::TooManyNodes { .. }));
    // The root map, `params`, its map, `l` and the list are 5 values: item 199,996 goes over.
    assert_eq!(e.location.map(|l| l.line), Some(2 + 199_996));
    // A long string repeated through an alias: few nodes, much text.
    let text = format!(
        "vars:\n  s: &s {}\n  l: [{}]\n",
        "x".repeat(1 << 20),
        vec!["*s"; 40].join(", ")
    );
    let e = fails_fast(&text, |k| matches!(k, SpecErrorKind::TooMuchText { .. }));
    assert_eq!(e.location.map(|l| l.line), Some(3));
}

#[test]
fn the_file_size_is_bounded() {
    let text = format!("# {}\nstages: {{}}\n", "x".repeat(MAX_FILE_BYTES));
    let e = fails_fast(&text, |k| matches!(k, SpecErrorKind::FileTooLarge { .. }));
    assert_eq!(e.location, None);
    assert!(e.to_string().contains("8 MiB"), "{e}");
}

#[test]
fn fan_out_and_interpolation_are_bounded() {
    // Ten keys of ten values: 10^10 members, refused before any is built; so are 10,001.
    // (10,000 members of a small body are fine: see `the_stage_count_is_bounded`.)
    let axes: Vec<String> = (0..10)
        .map(|k| format!("      k{k}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"))
        .collect();
    let text = format!(
        "stages:\n  t:\n    cmd: echo\n    matrix:\n{}",
        axes.concat()
    );
    let e = fails_fast(&text, |k| {
        matches!(k, SpecErrorKind::TooManyStages { limit: 10_000 })
    });
    assert_eq!(at(&e), (4, 5));
    let text = format!(
        "vars:\n  a: [{}]\n  b: [1]\nstages:\n  t:\n    cmd: echo\n    matrix:\n      a: ${{a}}\n      b: ${{b}}\n",
        vec!["1"; 10_001].join(", ")
    );
    let e = fails_fast(&text, |k| matches!(k, SpecErrorKind::TooManyStages { .. }));
    assert_eq!(at(&e), (7, 5));
    // A foreach of as many items is refused before its members are built.
    let text = format!(
        "stages:\n  t:\n    foreach: [{}]\n    do: {{cmd: echo}}\n",
        vec!["1"; 10_001].join(", ")
    );
    let e = fails_fast(&text, |k| matches!(k, SpecErrorKind::TooManyStages { .. }));
    assert_eq!(at(&e), (3, 5));
    // 20,000 elements of a param whose value takes the whole budget, copied 2,000 times.
    let text = format!(
        "params:\n  big: [{}]\nstages:\n  t:\n    builtin: train-gan\n    with:\n      l: [{}]\n",
        vec!["1"; 2000].join(", "),
        vec!["\"${big}\""; 2000].join(", ")
    );
    let e = fails_fast(&text, |k| {
        matches!(k, SpecErrorKind::TooMuchExpansion { .. })
    });
    assert_eq!(e.location.map(|l| l.line), Some(7));
    // A long string inserted into a longer one, many times.
    let text = format!(
        "vars:\n  s: {}\nstages:\n  t:\n    cmd: echo {}\n",
        "x".repeat(1 << 20),
        "${s}".repeat(100)
    );
    fails_fast(&text, |k| {
        matches!(k, SpecErrorKind::TooMuchExpansion { .. })
    });
}

#[test]
fn a_byte_order_mark_is_skipped_and_columns_ignore_it() {
    let p = ok("\u{feff}stages:\n  a:\n    cmd: echo\n");
    assert_eq!(p.stages.len(), 1);
    let e = err("\u{feff}stages:\n  a:\n    cmdd: echo\n");
    assert_eq!(at(&e), (3, 5));
    let e = err("\u{feff}stages: {a: {cmdd: echo}}\n");
    assert_eq!(at(&e), (1, 14));
    let text = "\u{feff}stages: {a: {cmdd: echo}}\n";
    assert!(
        err(text).render(text).ends_with("\n  |              ^"),
        "{}",
        err(text).render(text)
    );
}

#[test]
fn a_second_document_is_reported_where_it_starts() {
    let e = err("stages: {}\n---\nstages: {}\n");
    assert!(matches!(e.kind, SpecErrorKind::Syntax { .. }), "{e}");
    assert_eq!(at(&e), (2, 1));
    assert!(e.to_string().contains("second yaml document"), "{e}");
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, b"stages:\n  a:\n    cmd: echo \xc3\xa9\xff\n").unwrap();
    let e = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            e.kind,
            SpecErrorKind::NotUtf8 {
                offset: 29,
                byte: 0xff,
                utf16: false
            }
        ),
        "{e}"
    );
    assert_eq!(at(&e), (3, 16));
    assert!(
        e.to_string().contains("not valid UTF-8 at byte offset 29"),
        "{e}"
    );
    std::fs::write(&path, b"\xff\xfes\x00t\x00").unwrap();
    let e = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(e.kind, SpecErrorKind::NotUtf8 { utf16: true, .. }),
        "{e}"
    );
    assert_eq!(at(&e), (1, 1));
}

#[test]
fn load_reads_no_more_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, vec![b'#'; MAX_FILE_BYTES + 10]).unwrap();
    let e = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e.kind, SpecErrorKind::FileTooLarge { .. }), "{e}");
}

#[test]
fn nul_characters_are_refused_where_they_are_written() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        ("stages:\n  \"a\\0b\":\n    cmd: echo\n", (2, 3), "stage name `a\\0b` contains a NUL"),
        (
            "stages:\n  a:\n    cmd: echo\n    deps: [\"x\\0y\"]\n",
            (4, 12),
            "dep `x\\0y` in stage `a` contains a NUL character",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    outs: [{path: \"x\\0\"}]\n",
            (4, 19),
            "out `x\\0` in stage `a`",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    metrics: [\"m\\0.json\"]\n",
            (4, 15),
            "metric `m\\0.json` in stage `a`",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    wdir: \"sub\\0\"\n",
            (4, 11),
            "wdir `sub\\0` in stage `a`",
        ),
        (
            "stages:\n  a:\n    cmd: [echo, \"echo \\0\"]\n",
            (3, 17),
            "cmd `echo \\0` in stage `a` contains a NUL character (`\\0`), which no command can hold",
        ),
        (
            "stages:\n  a:\n    foreach: [\"x\\0\"]\n    do: {cmd: echo}\n",
            (3, 14),
            "has a member part that contains a NUL",
        ),
        (
            "vars:\n  d: \"data\\0\"\nstages:\n  a:\n    cmd: echo\n    deps: [\"${d}\"]\n",
            (6, 12),
            "dep `data\\0`",
        ),
    ];
    for (text, pos, message) in cases {
        let e = err(text);
        assert_eq!(at(&e), *pos, "{e}");
        assert!(
            e.to_string().contains(message),
            "expected `{message}` in {e}"
        );
        assert!(!e.to_string().contains('\0'), "a raw NUL in {e:?}");
    }
}

#[test]
fn the_stage_count_is_bounded_but_ten_thousand_fit() {
    let ok_text = format!(
        "stages:\n  t:\n    cmd: echo ${{item.a}} ${{item.b}}\n    matrix:\n      a: [{}]\n      b: [{}]\n",
        (0..100).map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
        (0..100).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    );
    assert_eq!(ok(&ok_text).stages.len(), 10_000);
    // One plain stage more is one too many.
    let e = err(&format!("{ok_text}  u:\n    cmd: echo\n"));
    assert!(matches!(e.kind, SpecErrorKind::TooManyStages { .. }), "{e}");
    assert_eq!(at(&e), (8, 5));
}

#[test]
fn did_you_mean_stays_cheap_on_long_keys_and_wide_params() {
    // A 1 MiB key above 50,000 children, then a mistyped reference and a mistyped param: the
    // hints must not list 50,000 copies of the long key, nor compare long texts pairwise.
    let long = "k".repeat(1 << 20);
    let children: String = (0..50_000).map(|i| format!("    c{i}: 1\n")).collect();
    // (An explicit `? key` entry: an implicit key may not be longer than 1,024 characters.)
    let base = format!("params:\n  ? {long}\n  :\n{children}  lr: 1\nstages:\n  a:\n");
    let e = fails_fast(&format!("{base}    cmd: echo ${{lrr}}\n"), |k| {
        matches!(k, SpecErrorKind::UnknownReference { .. })
    });
    let message: String = e.to_string().chars().take(300).collect();
    assert!(message.contains("did you mean `${lr}`"), "{message}");
    fails_fast(&format!("{base}    cmd: echo ${{{long}x}}\n"), |k| {
        matches!(k, SpecErrorKind::UnknownReference { .. })
    });
    fails_fast(
        &format!("{base}    cmd: echo\n    params: [{long}.c1x]\n"),
        |k| matches!(k, SpecErrorKind::UnknownParam { .. }),
    );
}
