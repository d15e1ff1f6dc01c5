#!/usr/bin/env bash
# The toy MLP GAN step of the quick profile, ours (`repro builtin train-gan`, release) against the
# PyTorch twin (scripts/fixtures/toy_gan.py) in the same run, on one thread each (the quick profile
# runs one toy stage per core).
#
# Settings are the quick profile's: ring of 8, G 2x128, D 2x{128, 32}, batch 64, n_dis 2, Adam B,
# under SN and each SR method. Each side times its own training loop only (no start-up, no
# evaluation): ours from log.csv's seconds_per_step, PyTorch from the script's s_per_1k_iter.
# Before every sample the script waits for a quiet machine (scripts/bench/quiet.py wait) and
# records the load it saw; prints one table with ms per G iteration and the ratio ours/PyTorch
# (below 1: we are faster).
#
# Usage: [REPRO_BIN=path] scripts/bench/toy_step.sh [ITERATIONS]   (default 2000)
# Needs python3 with torch and numpy (pip install torch numpy).
set -euo pipefail
cd "$(dirname "$0")/../.."
iterations=${1:-2000}
if [ -n "${REPRO_BIN:-}" ]; then
  repro=$(realpath "$REPRO_BIN")
else
  cargo build --release --locked -q
  repro=${CARGO_TARGET_DIR:-$PWD/target}/release/repro
fi
python3 -c "import torch, numpy" 2>/dev/null || { echo "toy_step: needs python3 with torch and numpy" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
quiet=$PWD/scripts/bench/quiet.py
twin=$PWD/scripts/fixtures/toy_gan.py
"$repro" builtin synthetic --with "{\"set\":\"ring\",\"n\":50000,\"seed\":0,\"out\":\"$work/ring.safetensors\"}" >/dev/null 2>&1

echo "| D | method | ours ms/it | PyTorch ms/it | ours / PyTorch | load before (ours, PyTorch) |"
echo "|---|---|---|---|---|---|"
for d in 128 32; do
  for method in none static dynamic graph; do
    rm -rf "$work/run"
    load_ours=$(python3 "$quiet" wait | python3 -c 'import json,sys; print(json.load(sys.stdin)["load"])')
    RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 "$repro" builtin train-gan --with "{
      \"dataset\": \"$work/ring.safetensors\",
      \"model\": {\"arch\": \"mlp\", \"hidden\": 128, \"d_hidden\": $d, \"layers\": 2},
      \"z_dim\": 2, \"batch_size\": 64, \"iterations\": $iterations, \"loss\": \"standard\",
      \"optimizer\": \"B\", \"n_dis\": 2, \"sr\": \"$method\", \"seed\": 1,
      \"log_every\": 100, \"spectra_every\": 0, \"checkpoint_every\": 0, \"sample_every\": 0,
      \"eval_samples\": 0, \"out\": \"$work/run\"}" >/dev/null 2>&1
    # The mean of seconds_per_step over the log rows (equal intervals), skipping the first row
    # (warm-up: allocations, the first SVDs).
    ours=$(python3 -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))[1:]
print(1000 * sum(float(r["seconds_per_step"]) for r in rows) / len(rows))' "$work/run/log.csv")
    load_torch=$(python3 "$quiet" wait | python3 -c 'import json,sys; print(json.load(sys.stdin)["load"])')
    python3 "$twin" --set ring --g-hidden 128 --d-hidden "$d" --layers 2 --z-dim 2 --batch 64 \
      --lr 0.0001 --beta1 0.5 --beta2 0.999 --n-dis 2 --method "$method" --iterations "$iterations" \
      --seeds 1 --eval-samples 100 --log-every "$iterations" --threads 1 --quiet \
      --json "$work/torch.json" >/dev/null
    torch=$(python3 -c '
import json, sys
print(float(json.load(open(sys.argv[1]))["runs"][0]["s_per_1k_iter"]))' "$work/torch.json")
    python3 -c '
import sys
d, m, ours, torch, lo, lt = sys.argv[1:]
print(f"| {d} | {m} | {float(ours):.2f} | {float(torch):.2f} | {float(ours) / float(torch):.2f} | {lo}, {lt} |")
' "$d" "$method" "$ours" "$torch" "$load_ours" "$load_torch"
  done
done
