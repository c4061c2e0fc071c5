#!/usr/bin/env bash
# The project's test command (README "Run the tests"): formatting, lints, then every test of
# the workspace. Tests that need redis-server, nftables or namespaces fail loudly when they
# are missing; set RAFTBUS_ALLOW_SKIP=1 on a dev machine to turn those into printed skips.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
