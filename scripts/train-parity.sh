#!/usr/bin/env bash
# Same learning, not just same speed: trains the reversal benchmark model with `picoformer train
# --trace` (dropout 0, so the run is a pure function of its starting weights and batches), then
# replays the very same run in PyTorch (scripts/parity/torch_parity.py: torch.nn.Transformer,
# torch.optim.AdamW, clip_grad_norm_, CrossEntropyLoss with label smoothing) from the same starting
# weights on the same batches, and compares the losses step by step and the dev exact match after
# every epoch. Fails if the loss after 200 steps differs by more than the tolerance.
#
#   usage: scripts/train-parity.sh [EPOCHS]        (default 20; needs python3 with torch, safetensors)
#   env:   PARITY_TOLERANCE   largest relative loss difference allowed over 200 steps (default 1e-4)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-20}
tolerance=${PARITY_TOLERANCE:-1e-4}
python3 -c "import torch, safetensors" 2>/dev/null ||
  { echo "train-parity: python3 cannot import torch and safetensors (pip install torch safetensors)" >&2; exit 2; }
cargo build --release --locked --quiet -p picoformer-host-tools
picoformer=$PWD/target/release/picoformer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$picoformer" data synth --task reverse --n 20000 --seed 0 --split --out "$work/data" >/dev/null
echo "== picoformer train (reversal, d_model 64 / 4 / 256 / 2+2, dropout 0, $epochs epochs)" >&2
"$picoformer" train --data "$work/data/train.tsv" --dev "$work/data/dev.tsv" --out "$work/ck" \
  --d-model 64 --heads 4 --d-ff 256 --encoder-layers 2 --decoder-layers 2 --output-tokens chars --norm pre \
  --batch-size 256 --lr 1e-3 --warmup 1000 --label-smoothing 0.1 --dropout 0 --clip 1.0 --weight-decay 0.01 \
  --epochs "$epochs" --patience 1000 --seed 0 --trace "$work/trace.jsonl" --json >"$work/pf.json" 2>/dev/null
echo "== PyTorch replay of the same run" >&2
python3 -W ignore scripts/parity/torch_parity.py --run "$work/ck" --trace "$work/trace.jsonl" \
  --dev "$work/data/dev.tsv" --loss-steps 200 | tee "$work/parity.out"
python3 - "$work/parity.out" "$tolerance" <<'PY'
import json, sys
res = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
tol = float(sys.argv[2])
diff = res["max_relative_loss_difference"]
last = res["epochs"][-1] if res["epochs"] else None
if last:
    print(f"after {last['epoch']} epochs: dev exact match picoformer {100 * last['picoformer_dev_exact_match']:.2f}%, "
          f"PyTorch {100 * last['pytorch_dev_exact_match']:.2f}%")
ok = diff <= tol
print(f"loss over the first {res['steps_compared']} steps: largest relative difference {diff:.2e} "
      f"({'within' if ok else 'OVER'} the tolerance {tol:g})")
sys.exit(0 if ok else 1)
PY
