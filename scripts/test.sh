#!/usr/bin/env bash
# The project's test command (README "Run the tests"): formatting, lints, then every test of
# the workspace. Tests that need redis-server, nftables or namespaces fail loudly when they
# are missing; set RAFTBUS_ALLOW_SKIP=1 on a dev machine to turn those into printed skips.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The node's failpoint build (node/src/failpoint.rs): lints and its failpoint tests. It shares
# the dependencies already built; the binary it links is kept as
# target/failpoints/debug/raftbus-node (the harness's selftest test plants bugs in it) before
# the workspace tests link the default binary back in place.
cargo clippy -p raftbus-node --all-targets --features failpoints --locked -- -D warnings
cargo test -p raftbus-node --features failpoints --locked --lib --test main -- failpoint
mkdir -p target/failpoints/debug
cp target/debug/raftbus-node target/failpoints/debug/raftbus-node
cargo test --workspace --locked
