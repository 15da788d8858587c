#!/usr/bin/env bash
# Clippy (warnings are errors) and a release build for every board, and the protocol's host tests.
# The end-to-end tests (host-tools/tests/e2e_qemu.rs) then run these very builds under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
for board in boards/*/; do
  board=${board%/}
  echo "-- ${board#boards/}"
  (cd "$board" && cargo clippy --release --locked -q -- -D warnings && cargo build --release --locked -q)
done
cargo test -q --locked -p picoformer-fw --target x86_64-unknown-linux-gnu
