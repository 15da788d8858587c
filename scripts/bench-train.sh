#!/usr/bin/env bash
# Training speed side by side: `picoformer train` and the PyTorch reference
# (../shared/reference/torch_seq2seq.py) on the same data, model, batch size, optimizer and
# schedule, one after the other for the same wall-clock budget, on all cores.
#
#   usage: scripts/bench-train.sh reverse|g2p [MINUTES]      (needs python3 with torch)
#
# reverse: d_model 64 / 4 heads / d_ff 256 / 2+2 layers on 20,000 lines of `picoformer data synth`
# g2p:     d_model 96 / 4 heads / d_ff 224 / 3+2 layers on the CMUdict training split
# Prints both trainers' target tokens/s, their ratio and peak memory, and one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${1:?usage: scripts/bench-train.sh reverse|g2p [MINUTES]}
minutes=${2:-3}
reference=${TORCH_REFERENCE:-../shared/reference/torch_seq2seq.py}
[ -f "$reference" ] || { echo "bench-train: $reference not found (set TORCH_REFERENCE)" >&2; exit 2; }
python3 -c "import torch" 2>/dev/null || { echo "bench-train: python3 cannot import torch (pip install torch)" >&2; exit 2; }

cargo build --release --locked --quiet -p picoformer-host-tools
picoformer=$PWD/target/release/picoformer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case "$workload" in
  reverse)
    "$picoformer" data synth --task reverse --n 20000 --seed 0 --split --out "$work/data" >/dev/null
    model=(--d-model 64 --heads 4 --d-ff 256 --encoder-layers 2 --decoder-layers 2)
    torch_model=(--d-model 64 --heads 4 --d-ff 256 --enc 2 --dec 2)
    tokens=(--output-tokens chars) ;;
  g2p)
    "$picoformer" data cmudict --out "$work/data" >/dev/null
    model=(--d-model 96 --heads 4 --d-ff 224 --encoder-layers 3 --decoder-layers 2)
    torch_model=(--d-model 96 --heads 4 --d-ff 224 --enc 3 --dec 2)
    tokens=(--output-tokens space) ;;
  *) echo "bench-train: unknown workload $workload (reverse or g2p)" >&2; exit 2 ;;
esac
threads=$(nproc)

# Runs a command and prints its peak resident memory (bytes) on the last line of stderr.
peak() { python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:]); sys.stdout.flush()
print("PEAK_RSS", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)
sys.exit(r.returncode)' "$@"; }

echo "== picoformer train ($workload, $minutes min, $threads threads)" >&2
peak "$picoformer" train --data "$work/data/train.tsv" --dev "$work/data/dev.tsv" --out "$work/ck" \
  "${model[@]}" "${tokens[@]}" --norm pre --batch-size 256 --lr 1e-3 --warmup 1000 --label-smoothing 0.1 \
  --dropout 0.1 --clip 1.0 --weight-decay 0.01 --dev-sample 1500 --patience 1000 --epochs 100000 \
  --max-minutes "$minutes" --threads "$threads" --json >"$work/pf.out" 2>"$work/pf.err"
echo "== PyTorch reference ($workload, $minutes min, $threads threads)" >&2
peak python3 "$reference" --data "$work/data" "${torch_model[@]}" "${tokens[@]}" --batch 256 \
  --minutes "$minutes" --threads "$threads" >"$work/pt.out" 2>"$work/pt.err"

python3 - "$work" "$workload" "$minutes" <<'PY'
import json, sys
work, workload, minutes = sys.argv[1], sys.argv[2], float(sys.argv[3])
def last_json(path):
    return json.loads([l for l in open(path) if l.startswith("{")][-1])
def peak(path):
    return int([l.split()[1] for l in open(path) if l.startswith("PEAK_RSS")][-1])
pf, pt = last_json(f"{work}/pf.out"), last_json(f"{work}/pt.out")
pf_steady, pf_wall, pt_wall = pf["target_tokens_per_second"], pf["wall_target_tokens_per_second"], pt["target_tokens_per_s"]
res = {"workload": workload, "minutes": minutes,
       "picoformer_target_tokens_per_second": round(pf_steady), "picoformer_wall_target_tokens_per_second": round(pf_wall),
       "pytorch_target_tokens_per_second": pt_wall, "ratio_wall": round(pf_wall / pt_wall, 2),
       "picoformer_peak_rss_bytes": peak(f"{work}/pf.err"), "pytorch_peak_rss_bytes": peak(f"{work}/pt.err"),
       "picoformer_epochs": pf["epochs"], "pytorch_epochs": pt["epochs"],
       "picoformer_best_dev_exact_match": pf["best_dev_exact_match"], "pytorch_dev_wer": pt["dev_wer"]}
print(f"picoformer  {pf_steady:9.0f} target tokens/s steady ({pf_wall:.0f} including dev evaluation), "
      f"peak {res['picoformer_peak_rss_bytes'] / 2**20:.0f} MiB, {pf['epochs']} epochs, best dev exact match {100 * pf['best_dev_exact_match']:.1f}%")
print(f"PyTorch     {pt_wall:9.0f} target tokens/s (including its dev evaluation), "
      f"peak {res['pytorch_peak_rss_bytes'] / 2**20:.0f} MiB, {pt['epochs']} epochs, dev WER {pt['dev_wer']:.1f}%")
print(f"ratio       {res['ratio_wall']:.2f}x (both including dev evaluation)")
print(json.dumps(res))
PY
