#!/usr/bin/env bash
# The demo (the README's first command): a shipped, pretrained model answering on an emulated
# Cortex-M4 (QEMU's mps2-an386), with its flash, RAM and instructions per answer.
# Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "building the picoformer CLI and the Cortex-M4 firmware (the first time takes a few minutes)..." >&2
cargo build --release --locked --quiet -p picoformer-host-tools
picoformer=target/release/picoformer

# English words, words the dictionary lacks, and invented names: letters to phonemes (ARPAbet).
"$picoformer" qemu --board mps2-an386 --model models/g2p-en.pfb \
  hello microcontroller transformer picoformer quibbleton zorblat mcflurry
