#!/usr/bin/env bash
# Stops the one-node cluster that scripts/slurm/up.sh started under $REPRO_SLURM_DIR (default
# /var/tmp/repro-slurm), by the PIDs in its pid files and nothing else. Idempotent.
set -uo pipefail
R="${REPRO_SLURM_DIR:-/var/tmp/repro-slurm}"
stopped=()
for pidfile in "$R/run/slurmd.pid" "$R/run/slurmctld.pid" "$R/munge/munged.pid"; do
  [[ -s "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null && stopped+=("$(basename "$pidfile" .pid):$pid")
    # Wait briefly so a following up.sh can bind the same ports. In some sandboxes killed
    # daemons stay as zombies (nobody reaps them), so only wait while it is still running.
    for _ in $(seq 1 50); do
      state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo X)"
      [[ "$state" == X || "$state" == Z ]] && break
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
done
echo "slurm-down: stopped ${stopped[*]:-nothing} under $R" >&2
