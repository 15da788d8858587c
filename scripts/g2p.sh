#!/usr/bin/env bash
# The G2P recipe end to end, on one machine: CMUdict data, training (models/g2p-en.toml, which keeps
# the last evaluations' weights), checkpoint averaging, quantization-aware fine-tuning, int8 export
# with int8 attention caches, and dev and test evaluation (greedy and beam) with the no_std engine.
# Every choice (best checkpoint or an average of the last N, QAT or not) is made on the dev split.
# Rerunning it resumes where it stopped.
#
#   usage: scripts/g2p.sh [OUT_DIR]        (default runs/g2p-en)
#   env:   G2P_MINUTES   training time limit in minutes (default 110, what the shipped model used;
#                        the schedule is the config's epochs unless the limit would cut it short)
#          G2P_QAT_EPOCHS  QAT epochs (default 2)
#          G2P_AVERAGE   snapshot counts to try averaging (default "5 10 20")
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/g2p-en}
minutes=${G2P_MINUTES:-110}
qat_epochs=${G2P_QAT_EPOCHS:-2}
averages=${G2P_AVERAGE:-5 10 20}
cargo build --release --locked --quiet -p picoformer-host-tools
picoformer=$PWD/target/release/picoformer
mkdir -p "$out"
start=$SECONDS

[ -f "$out/data/test.tsv" ] || "$picoformer" data cmudict --out "$out/data"

finished() { [ -f "$1/state.json" ] && grep -q '"finished": true' "$1/state.json"; }
if finished "$out/ck"; then
  echo "training already finished in $out/ck" >&2
elif [ -f "$out/ck/state.json" ]; then
  "$picoformer" train --resume "$out/ck" --max-minutes "$minutes" --json > "$out/train.json"
else
  "$picoformer" train --config models/g2p-en.toml --data "$out/data/train.tsv" --dev "$out/data/dev.tsv" \
    --out "$out/ck" --max-minutes "$minutes" --json > "$out/train.json"
fi
"$picoformer" plot "$out/ck" --out "$out/curves.png"

device=(--kv-cache int8 --max-input-len 22 --max-output-len 22)
dev_wer() { "$picoformer" eval --model "$1" --data "$out/data/dev.tsv" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["wer"])'; }
lower() { python3 -c "import sys; sys.exit(0 if $1 < $2 else 1)"; }

# The best dev checkpoint, or the mean of the last N snapshots: whichever int8 blob has the lower dev WER.
"$picoformer" export --checkpoint "$out/ck" --quant int8 "${device[@]}" --out "$out/best.pfb"
chosen=ck; chosen_wer=$(dev_wer "$out/best.pfb")
echo "dev WER: best checkpoint $chosen_wer" >&2
for n in $averages; do
  "$picoformer" average "$out/ck" --last "$n" --out "$out/avg$n" || continue
  "$picoformer" export --checkpoint "$out/avg$n" --quant int8 "${device[@]}" --out "$out/avg$n.pfb"
  wer=$(dev_wer "$out/avg$n.pfb")
  echo "dev WER: average of the last $n snapshots $wer" >&2
  if lower "$wer" "$chosen_wer"; then chosen=avg$n; chosen_wer=$wer; fi
done
echo "keeping $chosen" >&2

if finished "$out/qat"; then
  echo "QAT already finished in $out/qat" >&2
elif [ -f "$out/qat/state.json" ]; then
  "$picoformer" train --resume "$out/qat" --json > "$out/qat.json"
else
  "$picoformer" train --init "$out/$chosen" --qat --epochs "$qat_epochs" --data "$out/data/train.tsv" \
    --dev "$out/data/dev.tsv" --out "$out/qat" --json > "$out/qat.json"
fi

"$picoformer" export --checkpoint "$out/$chosen" --quant f32 --out "$out/g2p-en-f32.pfb"
"$picoformer" export --checkpoint "$out/$chosen" --quant int8 "${device[@]}" --out "$out/plain.pfb"
"$picoformer" export --checkpoint "$out/qat" --quant int8 "${device[@]}" --out "$out/qat.pfb"
# Keep whichever int8 blob has the lower dev WER (dev only: the test split is for the final report).
plain=$(dev_wer "$out/plain.pfb"); qat=$(dev_wer "$out/qat.pfb")
if lower "$qat" "$plain"; then best=qat; else best=plain; fi
echo "dev WER: plain int8 $plain, after QAT $qat: keeping $best" >&2
cp "$out/$best.pfb" "$out/g2p-en.pfb"
for blob in g2p-en-f32 g2p-en; do
  for split in dev test; do
    for beam in 1 3; do
      "$picoformer" eval --model "$out/$blob.pfb" --data "$out/data/$split.tsv" --beam "$beam" --json \
        > "$out/eval-$blob-$split-beam$beam.json"
      echo "$blob $split beam $beam: $(cat "$out/eval-$blob-$split-beam$beam.json")"
    done
  done
done

# The record the shipped model is tested against (host-tools/tests/g2p_model.rs): models/g2p-en.json,
# written to a temporary file and renamed, like every other output of the project.
info_greedy=$("$picoformer" inspect "$out/g2p-en.pfb" --json)
info_beam3=$("$picoformer" inspect "$out/g2p-en.pfb" --beam 3 --json)
python3 - "$out" "$chosen" "$best" "$info_greedy" "$info_beam3" <<'PY'
import json, os, sys
out, chosen, best = sys.argv[1:4]
greedy, beam3 = (json.loads(a) for a in sys.argv[4:6])
def scores(blob, split, beam):
    with open(os.path.join(out, f"eval-{blob}-{split}-beam{beam}.json")) as f:
        e = json.load(f)
    return {"wer": e["wer"], "per": e["token_error_rate"]}
weights = "best dev checkpoint" if chosen == "ck" else f"mean of the last {chosen[len('avg'):]} snapshots"
quantized = "after QAT" if best == "qat" else "no QAT"
record = {
    "model": "models/g2p-en.pfb",
    "recipe": f"models/g2p-en.toml via scripts/g2p.sh ({weights}, {quantized})",
    "params": greedy["params"],
    "flash_bytes": greedy["flash_bytes"],
    "workspace_bytes_greedy": greedy["workspace_bytes"],
    "workspace_bytes_beam3": beam3["workspace_bytes"],
    "quant": "int8, int8 attention caches, input and output up to 22",
}
for prefix, blob in (("", "g2p-en"), ("f32_", "g2p-en-f32")):
    for split in ("dev", "test"):
        record[f"{prefix}{split}_greedy"] = scores(blob, split, 1)
        record[f"{prefix}{split}_beam3"] = scores(blob, split, 3)
path = os.path.join(out, "g2p-en.json")
with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
PY
echo "recorded in $out/g2p-en.json (copy it beside the blob as models/g2p-en.json)"
echo "done in $((SECONDS - start)) s; the blob is $out/g2p-en.pfb"
