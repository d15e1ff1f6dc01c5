#!/usr/bin/env bash
# Hashing benchmark: repro's hasher (engine/examples/hash_bench.rs) against `sha256sum` and
# `openssl sha256` on the same 1 GB workload (10,000 files of 100 KB made by
# shared/bench/gen_pipeline_bench.py), in the same run, printed as ratios.
#
# Usage: scripts/bench/hash.sh            (builds the example with --release)
# Env:   HASH_BENCH_DIR   workspace to (re)use      default: ${TMPDIR:-/tmp}/repro-hash-bench
#        HASH_BENCH_REPS  repetitions, best is kept default: 3
#        HASH_BENCH_STORE=1  also time CAS insert/restore/fsck of the 1 GB (writes 2 GB)
#        HASH_BENCH_PROFILE=dev-opt  reuse the dev build's optimized dependencies and build
#                         only the repro crate at opt-level 3 (no full release build; for
#                         shared machines; numbers match --release within noise)
#        GEN              path of gen_pipeline_bench.py
#
# Everything is read from the page cache (a warm-up pass reads the files first), so this
# measures hashing, not the disk. Both wall time and CPU time (user+sys) are reported: CPU time
# is what to compare on a loaded machine, wall time shows the gain from two threads. Every
# sample first waits for a quiet machine (scripts/bench/quiet.py wait) and the loads are printed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WS=${HASH_BENCH_DIR:-${TMPDIR:-/tmp}/repro-hash-bench}
REPS=${HASH_BENCH_REPS:-3}
PROFILE=${HASH_BENCH_PROFILE:-release}

if [[ -z "${GEN:-}" ]]; then
  for g in "$ROOT/../shared/bench/gen_pipeline_bench.py" "$ROOT/shared/bench/gen_pipeline_bench.py" \
           /work/shared/bench/gen_pipeline_bench.py; do
    [[ -f $g ]] && GEN=$g && break
  done
fi

if [[ ! -f $WS/data/g0999/f09.bin ]]; then
  [[ -n "${GEN:-}" ]] || { echo "gen_pipeline_bench.py not found; set GEN" >&2; exit 2; }
  echo "generating the 1 GB workload in $WS ..." >&2
  rm -rf "$WS"
  python3 "$GEN" create "$WS" --format repro >/dev/null
fi
# Files written in the last 2 s are deliberately not cached (racy-file guard): let them settle.
sleep 3

cd "$ROOT"
case $PROFILE in
  release)
    cargo build --release --quiet -p repro-engine --example hash_bench
    BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/hash_bench ;;
  dev-opt)
    cargo build --quiet -p repro-engine --example hash_bench --config 'profile.dev.package.repro-engine.opt-level=3'
    BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples/hash_bench ;;
  *) echo "unknown HASH_BENCH_PROFILE=$PROFILE" >&2; exit 2 ;;
esac

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cd "$WS"
find data -type f -print0 | sort -z >"$OUT/files"
xargs -0 cat <"$OUT/files" >/dev/null   # warm the page cache

# quiet: wait for a quiet machine (scripts/bench/quiet.py) and keep the load it saw.
quiet() { python3 "$ROOT/scripts/bench/quiet.py" wait >>"$OUT/loads"; }
# timeit NAME CMD...: appends "NAME wall cpu" (cpu = user + sys of the command and children).
timeit() {
  local name=$1; shift
  quiet
  /usr/bin/time -f "%e %U %S" -o "$OUT/t" "$@" >/dev/null
  awk -v n="$name" '{ printf "%s %s %.3f\n", n, $1, $2 + $3 }' "$OUT/t" >>"$OUT/peers"
}

for _ in $(seq "$REPS"); do
  timeit sha256sum_1core xargs -0 -a "$OUT/files" sha256sum
  timeit openssl_1core xargs -0 -a "$OUT/files" openssl sha256
  timeit openssl_2cores xargs -0 -a "$OUT/files" -P 2 -n 5000 openssl sha256
  timeit stat_floor find data -type f -size +0
  if [[ ${HASH_BENCH_STORE:-0} == 1 ]]; then
    rm -rf "$WS/cp-peer"
    timeit cp_r cp -r data "$WS/cp-peer"
    rm -rf "$WS/cp-peer"
  fi
  for t in 1 2; do
    args=(data)
    [[ ${HASH_BENCH_STORE:-0} == 1 ]] && args+=(--store)
    quiet
    RAYON_NUM_THREADS=$t "$BIN" "${args[@]}" | sed "s/^/t$t /" >>"$OUT/ours"
  done
done

python3 - "$OUT/peers" "$OUT/ours" "$PROFILE" "$OUT/loads" <<'PY'
import json, sys
loads = [json.loads(l)["load"] for l in open(sys.argv[4]) if l.strip()]
print(f"every sample waited for a quiet machine: other processes used {min(loads):.2f}-{max(loads):.2f} "
      "cores in the 3 s before each")
from collections import defaultdict
peers, ours, profile = sys.argv[1], sys.argv[2], sys.argv[3]
best = defaultdict(lambda: [float("inf"), float("inf")])
for line in open(peers):
    n, wall, cpu = line.split()
    best[n][0] = min(best[n][0], float(wall)); best[n][1] = min(best[n][1], float(cpu))
o = defaultdict(lambda: float("inf")); info = {}
for line in open(ours):
    t, k, v = line.split()
    try:
        o[f"{t}.{k}"] = min(o[f"{t}.{k}"], float(v))
    except ValueError:
        info[f"{t}.{k}"] = v
def row(label, wall, cpu, ref):
    rw, rc = best[ref]
    print(f"| {label:<38} | {wall:8.3f} | {cpu:8.3f} | {wall / rw:6.2f}x | {cpu / rc:6.2f}x |")
print(f"repro hash benchmark ({profile} build), best of runs, 1 GB = 10,000 x 100 KB, page cache warm")
print(f"SHA-NI on this CPU: {info.get('t1.cpu_sha_ni', '?')}; sha2 in memory: "
      f"{o['t1.sha2_mem_MBps_per_cpu_s']:.0f} MB per CPU-second")
print()
print("| what | wall s | cpu s | wall vs sha256sum | cpu vs sha256sum |")
print("|---|---:|---:|---:|---:|")
for n in ["sha256sum_1core", "openssl_1core", "openssl_2cores", "stat_floor"]:
    row(n, *best[n], "sha256sum_1core")
for t in (1, 2):
    row(f"repro first hash, dir, {t} thread(s)", o[f"t{t}.cold_dir_s"], o[f"t{t}.cold_dir_cpu_s"], "sha256sum_1core")
    row(f"repro first hash, per file, {t} thread(s)", o[f"t{t}.cold_files_s"], o[f"t{t}.cold_files_cpu_s"], "sha256sum_1core")
print()
print("| warm (hash cache) | wall s | cpu s | vs stat floor (wall) |")
print("|---|---:|---:|---:|")
fw = best["stat_floor"][0]
for t in (1, 2):
    for k in ("warm_files", "warm_dir"):
        w, c = o[f"t{t}.{k}_s"], o[f"t{t}.{k}_cpu_s"]
        print(f"| repro {k}, {t} thread(s) | {w:.4f} | {c:.4f} | {w / fw:.2f}x |")
for t in (1, 2):
    print(f"| hash cache load, 10,000 entries, t{t} | {o[f't{t}.cache_load_s']:.4f} | {o[f't{t}.cache_load_cpu_s']:.4f} | |")
    print(f"| hash cache save, 10,000 entries, t{t} | {o[f't{t}.cache_save_s']:.4f} | {o[f't{t}.cache_save_cpu_s']:.4f} | |")
print(f"(warm runs re-hashed {o['t1.warm_rehashed']:.0f} files; cache hits {o['t1.warm_hits']:.0f})")
if "t1.store_insert_s" in o:
    print()
    print("| store (writes 1 GB each) | wall s | cpu s |")
    print("|---|---:|---:|")
    print(f"| peer: cp -r of the 1 GB | {best['cp_r'][0]:.3f} | {best['cp_r'][1]:.3f} |")
    for t in (1, 2):
        for k in ("store_insert", "store_restore", "store_fsck"):
            print(f"| {k}, 1 GB, {t} thread(s) | {o[f't{t}.{k}_s']:.3f} | {o[f't{t}.{k}_cpu_s']:.3f} |")
PY
