//! The optional top-level `executor:` block: where stages run by default.
//!
//! `executor: slurm` or `executor: {kind: slurm, partition: gpu, account: lab, time: "2:00:00",
//! extra_args: [--qos=high]}`; `kind` is `local` (the default) or `slurm`. The command line's
//! `--executor` and `--slurm-*` flags override it key by key. Where a stage runs never enters
//! its fingerprint: moving a pipeline from a laptop to a cluster reruns nothing. Values are
//! passed to sbatch as written (SLURM validates them at submission); here only their shape is
//! checked, each mistake at its node.

use super::error::{SpecError, SpecErrorKind};
use super::model::{Executor, ExecutorKind};
use super::node::{Node, Val};

const EXECUTOR_KEYS: &[&str] = &["kind", "partition", "account", "time", "extra_args"];
const CONTEXT: &str = "in `executor`";

/// Reads the `executor:` node.
pub(crate) fn parse(n: &Node) -> Result<Executor, SpecError> {
    if let Some(kind) = n.as_str() {
        return Ok(Executor {
            kind: kind_of(kind, n)?,
            partition: None,
            account: None,
            time: None,
            extra_args: Vec::new(),
            location: n.loc,
        });
    }
    let Some(entries) = n.as_map() else {
        return Err(SpecError::at(
            n.loc,
            SpecErrorKind::WrongType {
                what: "executor".into(),
                context: "at the top level".into(),
                expected: "`local`, `slurm`, or a map like `{kind: slurm, partition: gpu}`",
                found: n.type_name(),
            },
        ));
    };
    let mut ex = Executor {
        kind: ExecutorKind::Local,
        partition: None,
        account: None,
        time: None,
        extra_args: Vec::new(),
        location: n.loc,
    };
    let mut has_kind = false;
    for e in entries {
        match e.key.as_str() {
            "kind" => {
                let s = e
                    .node
                    .as_str()
                    .ok_or_else(|| wrong("kind", &e.node, "`local` or `slurm`"))?;
                ex.kind = kind_of(s, &e.node)?;
                has_kind = true;
            }
            "partition" | "account" | "time" => {
                let v = scalar(&e.node).ok_or_else(|| wrong(&e.key, &e.node, "a string"))?;
                match e.key.as_str() {
                    "partition" => ex.partition = Some(v),
                    "account" => ex.account = Some(v),
                    _ => ex.time = Some(v),
                }
            }
            "extra_args" => {
                let expected = "a list of sbatch arguments like `[--qos=high]`";
                let Val::Seq(items) = &e.node.val else {
                    return Err(wrong("extra_args", &e.node, expected));
                };
                for item in items {
                    ex.extra_args
                        .push(scalar(item).ok_or_else(|| wrong("extra_args", item, expected))?);
                }
            }
            _ => {
                return Err(SpecError::at(
                    e.key_loc,
                    SpecErrorKind::UnknownKey {
                        key: e.key.clone(),
                        context: CONTEXT.into(),
                        expected: EXECUTOR_KEYS.to_vec(),
                    },
                ))
            }
        }
    }
    if !has_kind {
        return Err(SpecError::at(n.loc, SpecErrorKind::ExecutorWithoutKind));
    }
    Ok(ex)
}

/// A string, or a number written bare (`time: 30` is 30 minutes to sbatch).
fn scalar(n: &Node) -> Option<String> {
    match &n.val {
        Val::Str(s) => Some(s.clone()),
        Val::Num(x) => Some(x.to_string()),
        _ => None,
    }
}

fn kind_of(s: &str, n: &Node) -> Result<ExecutorKind, SpecError> {
    match s {
        "local" => Ok(ExecutorKind::Local),
        "slurm" => Ok(ExecutorKind::Slurm),
        other => Err(SpecError::at(
            n.loc,
            SpecErrorKind::UnknownExecutor {
                kind: other.to_owned(),
            },
        )),
    }
}

fn wrong(what: &str, n: &Node, expected: &'static str) -> SpecError {
    SpecError::at(
        n.loc,
        SpecErrorKind::WrongType {
            what: what.into(),
            context: CONTEXT.into(),
            expected,
            found: n.type_name(),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::spec::{parse, Executor, ExecutorKind, LoadOptions, SpecError};

    const STAGES: &str = "stages:\n  a:\n    cmd: echo a\n";

    fn load(executor: &str) -> Result<Option<Executor>, SpecError> {
        let text = format!("{executor}\n{STAGES}");
        parse(&text, Path::new("pipeline.yaml"), &LoadOptions::default()).map(|p| p.executor)
    }

    #[test]
    fn the_block_and_the_shorthand_are_read() {
        assert_eq!(load("").unwrap(), None);
        let short = load("executor: slurm").unwrap().unwrap();
        assert_eq!(short.kind, ExecutorKind::Slurm);
        assert_eq!(short.partition, None);
        let full = load(
            "executor:\n  kind: slurm\n  partition: gpu\n  account: lab\n  time: 90\n  extra_args: [--qos=high, \"--constraint=a100\"]",
        )
        .unwrap()
        .unwrap();
        assert_eq!(full.kind, ExecutorKind::Slurm);
        assert_eq!(full.partition.as_deref(), Some("gpu"));
        assert_eq!(full.account.as_deref(), Some("lab"));
        assert_eq!(full.time.as_deref(), Some("90"));
        assert_eq!(full.extra_args, ["--qos=high", "--constraint=a100"]);
        assert_eq!((full.location.line, full.location.col), (2, 3));
        assert_eq!(
            load("executor: {kind: local}").unwrap().unwrap().kind,
            ExecutorKind::Local
        );
    }

    #[test]
    fn mistakes_point_at_their_node() {
        let cases = [
            (
                "executor: pbs",
                "pipeline.yaml:1:11: unknown executor `pbs`; use `local` or `slurm`",
            ),
            (
                "executor:\n  kind: slurm\n  partiton: gpu",
                "pipeline.yaml:3:3: unknown key `partiton` in `executor`; did you mean `partition`? (expected one of: kind, partition, account, time, extra_args)",
            ),
            (
                "executor: {kind: slurm, extra_args: --qos=high}",
                "pipeline.yaml:1:37: `extra_args` in `executor` must be a list of sbatch arguments like `[--qos=high]`, found a string",
            ),
            (
                "executor: {partition: gpu}",
                "pipeline.yaml:1:11: `executor` has no `kind`; add `kind: slurm` (or `kind: local`)",
            ),
            (
                "executor: [slurm]",
                "pipeline.yaml:1:11: `executor` at the top level must be `local`, `slurm`, or a map like `{kind: slurm, partition: gpu}`, found a list",
            ),
        ];
        for (yaml, want) in cases {
            let e = load(yaml).unwrap_err();
            assert_eq!(e.to_string(), want, "{yaml}");
        }
    }
}
