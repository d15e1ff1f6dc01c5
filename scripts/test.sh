#!/usr/bin/env bash
# The test command: sets up what the tests need on a fresh machine, then runs every test
# (--no-fail-fast: a failing test binary does not keep the others from running and reporting).
# A one-node SLURM cluster (scripts/slurm/up.sh) serves the SLURM executor's tests and is stopped
# again on the way out, also when a test fails. Where it cannot start (no root, no apt), those
# tests say "skipped: <why>" and pass, except in CI (CI=true), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

started_slurm=0
started_s3=0
stop_services() {
  if ((started_slurm)); then scripts/slurm/down.sh || true; fi
  if ((started_s3)); then scripts/s3/down.sh || true; fi
}
trap stop_services EXIT
if [[ -n "${SLURM_CONF:-}" ]] && SLURM_CONF="$SLURM_CONF" sinfo -h >/dev/null 2>&1; then
  echo "test: using the running SLURM cluster at SLURM_CONF=$SLURM_CONF" >&2
elif conf_line="$(scripts/slurm/up.sh | tail -n 1)"; then
  started_slurm=1
  export "${conf_line?}"
  echo "test: started a one-node SLURM cluster, $conf_line" >&2
else
  echo "test: no SLURM cluster (scripts/slurm/up.sh failed); the SLURM tests will say why" >&2
  [[ "${CI:-}" == true ]] && echo "test: CI=true, so they will fail" >&2
fi

# An S3-compatible server on the loopback interface for the remote tests (scripts/s3/up.sh).
if [[ -n "${REPRO_TEST_S3_ENDPOINT:-}" ]]; then
  echo "test: using the S3 server at REPRO_TEST_S3_ENDPOINT=$REPRO_TEST_S3_ENDPOINT" >&2
elif s3_line="$(scripts/s3/up.sh | tail -n 1)"; then
  started_s3=1
  export "${s3_line?}"
  echo "test: started an S3 server, $s3_line" >&2
else
  echo "test: no S3 server (scripts/s3/up.sh failed); the S3 remote test will say why" >&2
fi

cargo test --workspace --locked --no-fail-fast "$@"
