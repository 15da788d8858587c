#!/bin/sh
# Runs a firmware ELF under QEMU with a model blob placed in flash by QEMU's generic loader.
#   usage: qemu-run.sh BOARD FIRMWARE.elf        (the cargo runner of every board crate)
#   env:   PFB=model.pfb (required), QEMU_TIMEOUT=seconds (default 3600),
#          DEFMT_OUT=file for the defmt log frames, which the firmware writes to semihosting stderr
#          (default: defmt.bin next to the ELF; decode with `defmt-print -e FIRMWARE.elf < file`).
# The serial port is stdin/stdout: type a line, the emulated MCU answers; `!quit` ends the session.
set -eu
board=$1
elf=$2
: "${PFB:?set PFB to a model blob (.pfb), e.g. PFB=../../../models/demo.pfb cargo run --release}"
case "$board" in
  mps2-an385) machine=mps2-an385 cpu=cortex-m3  addr=0x00200000 ;;
  mps2-an386) machine=mps2-an386 cpu=cortex-m4  addr=0x00200000 ;;
  mps2-an500) machine=mps2-an500 cpu=cortex-m7  addr=0x00200000 ;;
  mps2-an505) machine=mps2-an505 cpu=cortex-m33 addr=0x00200000 ;;
  microbit)   machine=microbit   cpu=cortex-m0  addr=0x00020000 ;;
  *) echo "qemu-run.sh: unknown board $board" >&2; exit 2 ;;
esac
log=${DEFMT_OUT:-$(dirname "$elf")/defmt.bin}
exec timeout "${QEMU_TIMEOUT:-3600}" qemu-system-arm \
  -machine "$machine" -cpu "$cpu" -display none -monitor none -serial stdio \
  -icount shift=10,align=off,sleep=off \
  -semihosting-config enable=on,target=native \
  -device loader,file="$PFB",addr="$addr" \
  -kernel "$elf" 2>"$log"
