#!/usr/bin/env bash
# Installs what picoformer needs on a fresh Debian machine with rustup: the Cortex-M targets and
# qemu-system-arm. Idempotent: does nothing that is already done.
set -euo pipefail

targets=(thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf)
installed=$(rustup target list --installed)
missing=()
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || missing+=("$t")
done
if ((${#missing[@]})); then
  echo "setup: adding Rust targets ${missing[*]}" >&2
  rustup target add "${missing[@]}" >&2
fi
if ! rustup component list --installed | grep -q '^llvm-tools'; then
  echo "setup: adding the llvm-tools component (llvm-size for flash/RAM reports)" >&2
  rustup component add llvm-tools >&2
fi

if ! command -v qemu-system-arm >/dev/null 2>&1; then
  echo "setup: installing qemu-system-arm with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-system-arm >&2
fi
