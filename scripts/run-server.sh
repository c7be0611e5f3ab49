#!/usr/bin/env bash
# Sets up the machine, builds tug in release mode and the node's local images, and runs `tug server` with
# its own node (as root: data in /var/lib/tug, kubeconfig at /etc/tug/tug.yaml). Extra arguments go to
# `tug server` (a --data-dir among them is not seen here: set TUG_DATA_DIR instead).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tug-target}"
cargo build --release --locked
# The node's images, built from the OS packages (no registry needed), imported by tug at start.
data_dir="${TUG_DATA_DIR:-/var/lib/tug}"
packaging/images/build.sh "$data_dir/agent/images" >/dev/null
exec "$CARGO_TARGET_DIR/release/tug" server "$@"
