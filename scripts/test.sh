#!/usr/bin/env bash
# Sets up the machine and runs every test: formatting, lints, unit tests and the integration tests that
# drive the real kubectl and kube-rs against a real `tug server`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tug-target}"
export CARGO_TERM_COLOR=never

cargo fmt --all -- --check
shellcheck install.sh scripts/*.sh tests/fixtures/chroot.sh packaging/images/build.sh
cargo clippy --all-targets --locked -- -D warnings
# Benchmarks are not tests: they run with `cargo bench` (see docs/benchmarks.md).
cargo test --lib --bins --tests --locked
# What this host offers tug, shown for the record; not a gate (tests/operate.rs asserts the checks).
"${CARGO_TARGET_DIR}/debug/tug" check-config || true
