#!/usr/bin/env bash
# Runs every test of picoformer: formatting, clippy on the host and on every Cortex-M target, the
# engine's and the CLI's tests, the firmware for every board, and the end-to-end runs under QEMU.
# Installs what is missing first (scripts/setup.sh). This is the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n== %s (%d s)\n' "$*" "$((SECONDS - start))"; }

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all -- --check
(cd firmware && cargo fmt --all -- --check)

step "clippy: host"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p picoformer --all-targets --locked --features profile -- -D warnings

step "clippy: the engine on every Cortex-M target"
for target in thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf; do
  cargo clippy -p picoformer --target "$target" --locked --features defmt -- -D warnings
done

step "firmware: clippy and release build for every board"
(cd firmware && scripts/check-all.sh)

step "tests (engine, CLI, end to end under QEMU)"
cargo test --workspace --locked
cargo test -p picoformer --locked --features profile --test profile

step "all tests passed"
