#!/usr/bin/env bash
# The project's test command (README "Run the tests"): formatting, lints, then every test of
# the workspace. Tests that need redis-server, nftables or namespaces fail loudly when they
# are missing; set RAFTBUS_ALLOW_SKIP=1 on a dev machine to turn those into printed skips.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The node's failpoint build (node/src/failpoint.rs), in its own target dir so it never
# replaces the default binary the harness tests run: lints, and its failpoint tests. The
# binary it leaves in target/failpoints/debug/ is what the harness's selftest test plants
# bugs in.
cargo clippy -p raftbus-node --all-targets --features failpoints --locked \
  --target-dir target/failpoints -- -D warnings
cargo test -p raftbus-node --features failpoints --locked --target-dir target/failpoints \
  --lib --test main -- failpoint
cargo test --workspace --locked
