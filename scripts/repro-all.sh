#!/usr/bin/env bash
# The main job: sets up a fresh machine, builds repro, and runs `repro all` on the default
# profile, which regenerates reports/; then refreshes the README's headline table from it.
# Extra arguments go to `repro all` (then the README is left alone: it shows the quick profile).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
target/release/repro all "$@"
if [ $# -eq 0 ]; then
  python3 scripts/readme-headline.py
fi
