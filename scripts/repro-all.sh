#!/usr/bin/env bash
# The main job: sets up a fresh machine, builds repro, and runs `repro all` on the default
# profile, which regenerates reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
exec target/release/repro all "$@"
