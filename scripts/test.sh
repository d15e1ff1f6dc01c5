#!/usr/bin/env bash
# The test command: sets up what the tests need on a fresh machine, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
