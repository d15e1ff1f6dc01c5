#!/usr/bin/env bash
# Stops the server that scripts/s3/up.sh started, by the pid in its pid file and nothing else.
set -uo pipefail
R="${REPRO_S3_DIR:-/var/tmp/repro-s3}"
if [[ -s "$R/moto.pid" ]] && kill "$(cat "$R/moto.pid")" 2>/dev/null; then
  echo "s3-down: stopped moto ($(cat "$R/moto.pid"))" >&2
fi
rm -f "$R/moto.pid" "$R/endpoint"
