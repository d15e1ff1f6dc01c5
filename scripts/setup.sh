#!/usr/bin/env bash
# Installs what repro needs on a fresh Debian machine with a Rust toolchain: idempotent and
# quiet when everything is already there. Installing a missing tool needs apt-get and root;
# without them it names what is missing and stops, so you can install those yourself.
set -euo pipefail
need=()
for tool in python3 sha256sum awk paste seq; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if ! python3 -m pip --version >/dev/null 2>&1; then need+=(python3-pip); fi
# scripts/s3/up.sh makes a venv for the S3 test server (Debian ships venv's ensurepip apart).
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then need+=(python3-venv); fi
if ((${#need[@]})); then
  pkgs=()
  for t in "${need[@]}"; do
    case "$t" in
      sha256sum|paste|seq) pkgs+=(coreutils) ;;
      awk) pkgs+=(gawk) ;;
      *) pkgs+=("$t") ;;
    esac
  done
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need[*]}; installing them needs apt-get and root (this is $(id -un)$(command -v apt-get >/dev/null 2>&1 || echo ', without apt-get'))." >&2
    echo "setup: install them yourself (Debian: sudo apt-get install ${pkgs[*]}), then rerun." >&2
    exit 1
  fi
  echo "setup: installing ${pkgs[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
# Chromium, for the tests only: headless, it checks the report's HTML page in a real browser
# (scripts/html_check.sh). Optional: without it (no root or apt-get to install it) the browser
# test says "skipped: chromium not found" and passes, except in CI (CI=true), where it fails.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing chromium (headless, for the HTML report's browser test)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: no chromium; installing it needs apt-get and root, so the HTML report's browser test will be skipped (Debian: sudo apt-get install chromium)." >&2
  fi
fi
for comp in rustfmt clippy; do
  if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$comp"
  fi
done
