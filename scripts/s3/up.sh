#!/usr/bin/env bash
# Starts an S3-compatible server for the remote tests: moto's standalone server (from the Python
# package index, into .venv-moto/) on the loopback interface only, with the bucket `repro-test`.
# Prints, as its last line, `REPRO_TEST_S3_ENDPOINT=http://127.0.0.1:PORT` for the tests. The
# server's pid is in $REPRO_S3_DIR/moto.pid (default /var/tmp/repro-s3); scripts/s3/down.sh stops
# it. Idempotent: a server that is still up is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
R="${REPRO_S3_DIR:-/var/tmp/repro-s3}"
mkdir -p "$R"
venv=.venv-moto
if [[ ! -x "$venv/bin/moto_server" ]]; then
  echo "s3-up: installing moto's server into $venv (once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "moto[server]>=5,<6"
fi
if [[ -s "$R/moto.pid" && -s "$R/endpoint" ]] && kill -0 "$(cat "$R/moto.pid")" 2>/dev/null; then
  echo "REPRO_TEST_S3_ENDPOINT=$(cat "$R/endpoint")"
  exit 0
fi
# A free port, chosen by the kernel.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
endpoint="http://127.0.0.1:$port"
nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$R/moto.log" 2>&1 &
echo $! >"$R/moto.pid"
for _ in $(seq 1 100); do
  if AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "$venv/bin/python" - "$endpoint" <<'PY' 2>/dev/null
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.create_bucket(Bucket="repro-test")
PY
  then
    echo "$endpoint" >"$R/endpoint"
    echo "s3-up: moto on $endpoint (bucket repro-test), log $R/moto.log" >&2
    echo "REPRO_TEST_S3_ENDPOINT=$endpoint"
    exit 0
  fi
  sleep 0.2
done
echo "s3-up: the server did not come up; its log:" >&2
tail -n 20 "$R/moto.log" >&2 || true
exit 1
