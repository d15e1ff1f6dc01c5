#!/usr/bin/env bash
# Benchmark one D step and one G step of the SN paper's standard CNN (batch 64, 32x32x3) in
# `repro` (candle, CPU, --release) against PyTorch in the same run, and the cost of one SR pass
# (static, dynamic, graph) relative to one of our D steps. Prints the raw medians and ratios.
# Every process waits for a quiet machine (scripts/bench/quiet.py) and is watched while it runs;
# the load each saw is printed, and a disturbed round is marked: do not quote it.
#
# Usage: scripts/bench/train_step.sh [ROUNDS]   (default 10; median of ROUNDS after 3 warm-ups)
# Sizes: G_CH, D_CH (default 64 each) and BATCH (default 64), for both sides; the extended
# profile's small DCGAN is `G_CH=16 D_CH=4` and `G_CH=16 D_CH=16`.
# Each implementation runs PAIRS times (default 2), interleaved; the medians printed pool all
# runs. On a shared VM one binary's timings drift by about 10% from run to run: use PAIRS=6 or
# more before reading a ratio near a target.
# Threads: THREADS (default 2) for both sides; the pipeline's training stages run one thread
# each (two at once on 2 cores), so THREADS=1 is the rate that sets their wall time.
# Env: BASELINE=path/to/an/older/train_step binary, also run in each round (reported as `before`);
#      STEPS_ONLY=1 to time the D and G steps only (no SR passes; an old BASELINE still runs them);
#      CANDLE_POOL=1 to also run ours with candle's own elementwise pool, THREADS threads
#      (`ours-cpool`); like `repro builtin`, the example otherwise sets CANDLE_NUM_THREADS=1
#      (kernels::threads: that pool's spinning took cores from the kernels' rayon threads).
# Where our time goes, per conv pass and per piece of one (im2col, GEMM, col2im, transposes):
#   cargo run --release -p stages --no-default-features --features kernel-timers \
#     --example train_step -- 10 steps
# Uses /work/venv-torch if present, else makes .venv-bench with torch from the package index.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-10}"
steps_only=()
if [ -n "${STEPS_ONLY:-}" ]; then steps_only=(steps); fi
py=/work/venv-torch/bin/python
if [ ! -x "$py" ]; then
  if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install --quiet torch numpy
  fi
  py=.venv-bench/bin/python
fi
# No `report` feature: the example does not need the report, so a cold build skips plotters.
cargo build --release -q -p stages --no-default-features --example train_step
export THREADS=${THREADS:-2} RAYON_NUM_THREADS=${THREADS:-2}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Interleave: ours, torch, ours, torch, so a neighbour's load hits both alike.
# Each process waits for a quiet machine first and is watched while it runs (quiet.py run): its
# JSON line (label, other_load, disturbed) goes into $out beside the timings.
quiet() { local label=$1; shift; python3 scripts/bench/quiet.py run --show --label "$label" -- "$@"; }
for _ in $(seq "${PAIRS:-2}"); do
  if [ -n "${BASELINE:-}" ]; then
    quiet before "$BASELINE" "$rounds" "${steps_only[@]}" | sed 's/"impl":"ours"/"impl":"before"/' >>"$out"
  fi
  quiet ours "${CARGO_TARGET_DIR:-target}/release/examples/train_step" "$rounds" "${steps_only[@]}" >>"$out"
  if [ -n "${CANDLE_POOL:-}" ]; then
    CANDLE_NUM_THREADS=$THREADS quiet ours-cpool "${CARGO_TARGET_DIR:-target}/release/examples/train_step" \
      "$rounds" "${steps_only[@]}" | sed 's/"impl":"ours"/"impl":"ours-cpool"/' >>"$out"
  fi
  quiet torch "$py" scripts/bench/train_step.py "$rounds" >>"$out"
done
"$py" - "$out" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
watch = [r for r in lines if "label" in r]
rows = [r for r in lines if "impl" in r]
for r in watch:
    print(f"watch {r['label']:7s} load before {r['load_before']:.2f}, others during {r['other_load']:.2f}"
          + (" DISTURBED" if r["disturbed"] else ""))
if any(r["disturbed"] for r in watch):
    print("a round was DISTURBED (another process used the machine): do not quote these figures")
med = {}
for r in rows:
    med.setdefault((r["impl"], r["what"]), []).append(r["seconds"])
m = {k: statistics.median(v) for k, v in med.items()}
for (impl, what), s in sorted(m.items()):
    print(f"{impl:7s} {what:18s} {s * 1000:9.1f} ms  (runs: {', '.join(f'{x*1000:.1f}' for x in med[(impl, what)])})")
for step in ("d_step", "g_step"):
    print(f"ratio ours/torch {step}: {m[('ours', step)] / m[('torch', step)]:.2f}")
    for other in ("before", "ours-cpool"):
        if (other, step) in m:
            print(f"ratio {other}/torch {step}: {m[(other, step)] / m[('torch', step)]:.2f}")
if ("torch", "g_step_d_grads") in m:
    print("ratio ours/torch g_step, torch also computing D's gradients (the common idiom): "
          f"{m[('ours', 'g_step')] / m[('torch', 'g_step_d_grads')]:.2f}")
d = m[("ours", "d_step")]
for sr in ("sr_static_pass", "sr_dynamic_pass", "sr_graph_pass"):
    if ("ours", sr) in m:
        print(f"{sr} / our d_step: {m[('ours', sr)] / d:.2f}")
if ("ours", "d_step_graph_sr") in m:
    print(f"d_step with graph SR / plain d_step: {m[('ours', 'd_step_graph_sr')] / d:.2f}")

# Achieved FLOP/s (2 x multiply-adds of the convs and dense layers; backward = 2 x forward). No
# "% of peak": the clock /proc/cpuinfo reports is nominal, not what the cores ran at.
import os
B = int(os.environ.get("BATCH", 64))
gch, dch = int(os.environ.get("G_CH", 64)), int(os.environ.get("D_CH", 64))
def conv(c_in, c_out, k, out_hw):
    return 2 * c_in * c_out * k * k * out_hw * out_hw
def convt(c_in, c_out, k, in_hw):
    return 2 * c_in * c_out * k * k * in_hw * in_hw
ch = gch
g_fwd = (2 * 128 * 4 * 4 * 8 * ch + convt(8 * ch, 4 * ch, 4, 4) + convt(4 * ch, 2 * ch, 4, 8)
         + convt(2 * ch, ch, 4, 16) + conv(ch, 3, 3, 32))
ch = dch
d_fwd = (conv(3, ch, 3, 32) + conv(ch, ch, 4, 16) + conv(ch, 2 * ch, 3, 16)
         + conv(2 * ch, 2 * ch, 4, 8) + conv(2 * ch, 4 * ch, 3, 8) + conv(4 * ch, 4 * ch, 4, 4)
         + conv(4 * ch, 8 * ch, 3, 4) + 2 * 4 * 4 * 8 * ch)
flops = {"d_step": B * g_fwd + 3 * 2 * B * d_fwd,  # G forward, D forward+backward on real and fake
         "g_step": 3 * B * g_fwd + 2 * B * d_fwd}  # D forward and its data gradient only
for step in ("d_step", "g_step"):
    for impl in ("before", "ours", "ours-cpool", "torch"):
        if (impl, step) not in m:
            continue
        rate = flops[step] / m[(impl, step)]
        print(f"{impl:7s} {step}: {flops[step] / 1e9:.1f} GFLOP, {rate / 1e9:.1f} GFLOP/s")
PY
