#!/usr/bin/env bash
# Engine benchmark on ../shared/bench/gen_pipeline_bench.py's workload: N independent stages,
# each reading FILES input files of SIZE bytes (`cat ... | wc -c > out/IIII.txt`), in repro's
# and Snakemake's formats.
#
# For repro, and for Snakemake in the same run (when N <= PEER_MAX): the first run from an empty
# cache, the no-op run (median of 5; 3 above 20,000 stages), and the run after one input changed,
# each with wall time, CPU time, peak RSS and the load the rest of the machine put on it. "Own
# CPU" is the tool's main process alone, without the processes it starts (the stages, and for
# repro its per-stage `repro __supervise`, for Snakemake its job shells). Every
# sample waits for a quiet machine first and is timed without interpreter start-up
# (scripts/bench/quiet.py); a sample disturbed by another process is marked `DISTURBED` and the
# ratios say so. Snakemake is installed into a venv (.bench/venv-snakemake) on first use.
#
# Usage: [REPRO_BIN=path] scripts/bench/pipeline.sh [--groups N] [--files-per-group F]
#          [--file-size BYTES] [--no-peer] [--peer-max N] [--noop-rounds N]
#          [--peer-limit SECONDS]
# --peer-limit stops the peer's first run after SECONDS (its process group gets SIGTERM) and
# reports how many of the N stages it finished by then, a lower bound on its time; its no-op and
# one-change rounds are then skipped, since they would first have to finish the run.
# Defaults: --groups 1000 --files-per-group 10 --file-size 100000 (the reference workload of
# ../shared/reference/pipelines.md §6); for the scaling runs of issue 21 use
# --files-per-group 2 --file-size 1000 with --groups 1000, 10000 and 100000.
set -euo pipefail
cd "$(dirname "$0")/../.."
groups=1000 files=10 size=100000 peer=1 peer_max=10000 noop_rounds= peer_limit=
while (($#)); do
  case "$1" in
    --groups) groups=$2; shift 2 ;;
    --files-per-group) files=$2; shift 2 ;;
    --file-size) size=$2; shift 2 ;;
    --no-peer) peer=0; shift ;;
    --peer-max) peer_max=$2; shift 2 ;;
    --noop-rounds) noop_rounds=$2; shift 2 ;;
    --peer-limit) peer_limit=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
gen=$(cd .. && pwd)/shared/bench/gen_pipeline_bench.py
[ -f "$gen" ] || { echo "missing $gen" >&2; exit 2; }
quiet=$PWD/scripts/bench/quiet.py
work=${BENCH_DIR:-$PWD/.bench}
mkdir -p "$work"
# REPRO_BIN: time an existing binary instead of building one.
if [ -n "${REPRO_BIN:-}" ]; then
  repro=$(realpath "$REPRO_BIN")
else
  cargo build --release --locked -q
  repro=${CARGO_TARGET_DIR:-$PWD/target}/release/repro
fi
# Above 10,000 stages a pipeline needs its size bounds raised explicitly (docs/pipeline-yaml.md#limits).
export REPRO_SPEC_SCALE=$(( groups > 10000 ? (groups + 9999) / 10000 : 1 ))
results=$(mktemp)
trap 'rm -f "$results"' EXIT
if [ -z "$noop_rounds" ]; then
  noop_rounds=5
  ((groups > 20000)) && noop_rounds=3
fi

# sample TOOL WHAT CMD...: one timed sample, appended to $results (LIMIT=S: stop it after S s).
sample() {
  local tool=$1 what=$2; shift 2
  python3 "$quiet" run --label "$tool $what" ${LIMIT:+--limit "$LIMIT"} -- "$@" | tee -a "$results"
}

measure() { # measure TOOL FORMAT CMD...: first run, no-ops, one change, in a fresh workspace
  local tool=$1 format=$2 limit=${MEASURE_LIMIT:-}; shift 2
  local dir=$work/$tool-$groups
  rm -rf "$dir"
  python3 "$gen" create "$dir" --format "$format" --groups "$groups" \
    --files-per-group "$files" --file-size "$size" >/dev/null
  (
    cd "$dir"
    LIMIT=$limit sample "$tool" first "$@"
    if tail -n 1 "$results" | grep -q '"timed_out": true'; then
      # Outputs finished by the limit (out/ holds one file per stage of this workload).
      echo "{\"label\": \"$tool unfinished\", \"done\": $(find out -type f | wc -l)}" | tee -a "$results"
      exit 0
    fi
    for _ in $(seq "$noop_rounds"); do sample "$tool" no-op "$@"; done
    python3 "$gen" modify . --group $((groups / 2)) --file $((files / 2)) --round 1 >/dev/null
    sample "$tool" changed "$@"
  )
  rm -rf "$dir"
}

echo "== repro ($repro), $groups stages x $files files x $size B"
measure repro repro "$repro" all -j 2
if ((peer)) && ((groups <= peer_max)); then
  venv=$work/venv-snakemake
  if [ ! -x "$venv/bin/snakemake" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q snakemake
  fi
  echo "== snakemake ($("$venv/bin/snakemake" --version))"
  MEASURE_LIMIT=$peer_limit measure snakemake snakemake "$venv/bin/snakemake" -c2 -q
fi

python3 - "$results" "$groups" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2])
def pick(tool, what):
    rs = [r for r in rows if r["label"] == f"{tool} {what}" and "wall_s" in r]
    if not rs:
        return None
    wall = statistics.median(r["wall_s"] for r in rs)
    cpu = statistics.median(r["user_s"] + r["sys_s"] for r in rs)
    own = statistics.median(r["self_user_s"] + r["self_sys_s"] for r in rs)
    return {"wall": wall, "cpu": cpu, "own": own, "rss": max(r["max_rss_kib"] for r in rs),
            "load": max(r["other_load"] for r in rs), "disturbed": any(r["disturbed"] for r in rs),
            "failed": any(r["exit"] != 0 for r in rs)}
print()
print(f"| {n} stages | first run | per stage | CPU (all) | own CPU per stage | no-op | one change | peak RSS | max other load |")
print("|---|---|---|---|---|---|---|---|---|")
summary = {}
for tool in ("repro", "snakemake"):
    f, o, c = pick(tool, "first"), pick(tool, "no-op"), pick(tool, "changed")
    if not f:
        continue
    stopped = next((r for r in rows if r["label"] == f"{tool} unfinished"), None)
    if stopped:
        summary[tool] = (f, stopped)
        print(f"| {tool}{' DISTURBED' if f['disturbed'] else ''} | stopped unfinished at {f['wall']:.0f} s: "
              f"{stopped['done']} of {n} stages done | | {f['cpu']:.1f} s | | | | {f['rss'] / 1024:.0f} MiB "
              f"| {f['load']:.2f} |")
        continue
    summary[tool] = (f, o, c)
    flag = " DISTURBED" if any(x["disturbed"] for x in (f, o, c)) else ""
    flag += " FAILED" if any(x["failed"] for x in (f, o, c)) else ""
    print(f"| {tool}{flag} | {f['wall']:.2f} s | {1000 * f['wall'] / n:.2f} ms | {f['cpu']:.1f} s "
          f"| {1000 * f['own'] / n:.2f} ms | {o['wall']:.3f} s | {c['wall']:.3f} s | {max(f['rss'], o['rss'], c['rss']) / 1024:.0f} MiB "
          f"| {max(f['load'], o['load'], c['load']):.2f} |")
if "snakemake" in summary and len(summary["snakemake"]) == 2:
    (fs, stopped), fr = summary["snakemake"], summary["repro"][0]
    print(f"\nsnakemake / repro: first run > {fs['wall'] / fr['wall']:.0f}x (snakemake had done "
          f"{stopped['done']} of {n} stages when it was stopped after {fs['wall']:.0f} s; repro did "
          f"all {n} in {fr['wall']:.1f} s)" + (" (a disturbed sample: do not quote)" if fs["disturbed"] or fr["disturbed"] else ""))
elif "snakemake" in summary:
    (fs, os_, cs), (fr, or_, cr) = summary["snakemake"], summary["repro"]
    note = " (a disturbed sample: do not quote)" if any(
        x["disturbed"] for x in (fs, os_, cs, fr, or_, cr)) else ""
    print(f"\nsnakemake / repro: first run {fs['wall'] / fr['wall']:.1f}x, no-op "
          f"{os_['wall'] / or_['wall']:.1f}x, one change {cs['wall'] / cr['wall']:.1f}x{note}")
PY
