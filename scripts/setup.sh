#!/usr/bin/env bash
# Installs what repro needs on a fresh Debian machine with a Rust toolchain: idempotent and
# quiet when everything is already there.
set -euo pipefail
need=()
for tool in python3 sha256sum awk paste seq; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if ! python3 -m pip --version >/dev/null 2>&1; then need+=(python3-pip); fi
if ((${#need[@]})); then
  pkgs=()
  for t in "${need[@]}"; do
    case "$t" in
      sha256sum|paste|seq) pkgs+=(coreutils) ;;
      awk) pkgs+=(gawk) ;;
      *) pkgs+=("$t") ;;
    esac
  done
  echo "setup: installing ${pkgs[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
for comp in rustfmt clippy; do
  if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$comp"
  fi
done
