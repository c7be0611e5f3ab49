#!/usr/bin/env bash
# Sets up the machine, builds tug in release mode and runs `tug server` (as root: data in /var/lib/tug,
# kubeconfig at /etc/tug/tug.yaml). Extra arguments go to `tug server`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tug-target}"
cargo build --release --locked
exec "$CARGO_TARGET_DIR/release/tug" server "$@"
