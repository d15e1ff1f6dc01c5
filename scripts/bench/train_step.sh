#!/usr/bin/env bash
# Benchmark one D step and one G step of the SN paper's standard CNN (batch 64, 32x32x3) in
# `repro` (candle, CPU, --release) against PyTorch in the same run, and the cost of one SR pass
# (static, dynamic, graph) relative to one of our D steps. Prints the raw medians and ratios.
#
# Usage: scripts/bench/train_step.sh [ROUNDS]   (default 10; median of ROUNDS after 3 warm-ups)
# Uses /work/venv-torch if present, else makes .venv-bench with torch from the package index.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-10}"
py=/work/venv-torch/bin/python
if [ ! -x "$py" ]; then
  if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install --quiet torch numpy
  fi
  py=.venv-bench/bin/python
fi
cargo build --release -q -p stages --example train_step
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Interleave: ours, torch, ours, torch, so a neighbour's load hits both alike.
for _ in 1 2; do
  ./target/release/examples/train_step "$rounds" >>"$out"
  "$py" scripts/bench/train_step.py "$rounds" >>"$out"
done
"$py" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {}
for r in rows:
    med.setdefault((r["impl"], r["what"]), []).append(r["seconds"])
m = {k: statistics.median(v) for k, v in med.items()}
for (impl, what), s in sorted(m.items()):
    print(f"{impl:6s} {what:18s} {s * 1000:9.1f} ms  (runs: {', '.join(f'{x*1000:.1f}' for x in med[(impl, what)])})")
for step in ("d_step", "g_step"):
    print(f"ratio ours/torch {step}: {m[('ours', step)] / m[('torch', step)]:.2f}")
d = m[("ours", "d_step")]
for sr in ("sr_static_pass", "sr_dynamic_pass", "sr_graph_pass"):
    print(f"{sr} / our d_step: {m[('ours', sr)] / d:.2f}")
print(f"d_step with graph SR / plain d_step: {m[('ours', 'd_step_graph_sr')] / d:.2f}")
PY
