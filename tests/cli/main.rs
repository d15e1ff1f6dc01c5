//! Integration tests: the real `repro` binary on small shell pipelines in temp dirs.

#[path = "../common/mod.rs"]
mod harness;

mod caching;
mod experiments;
mod failures;
mod faults;
mod newcomer;
mod remote;
mod resume;
mod scheduling;
mod spec_errors;
mod spectrum;
mod tools;

/// Four stages: `gen` feeds `scale` and `shift`, which feed `sum` (a metrics file).
pub const FOUR_STAGES: &str = r#"
params:
  scale: 2
  offset: 1
stages:
  gen:
    cmd: echo gen >> "$RUNLOG"; seq 1 5 > data/nums.txt
    outs: [data/nums.txt]
  scale:
    cmd: echo scale >> "$RUNLOG"; awk '{print $1 * ${scale}}' data/nums.txt > data/scaled.txt
    deps: [data/nums.txt]
    params: [scale]
    outs: [data/scaled.txt]
  shift:
    cmd: echo shift >> "$RUNLOG"; awk '{print $1 + ${offset}}' data/nums.txt > data/shifted.txt
    deps: [data/nums.txt]
    params: [offset]
    outs: [data/shifted.txt]
  sum:
    cmd: |
      echo sum >> "$RUNLOG"; paste data/scaled.txt data/shifted.txt | awk '{s += $1 + $2} END {print "{\"total\": " s "}"}' > metrics.json
    deps: [data/scaled.txt, data/shifted.txt]
    metrics: [metrics.json]
"#;
