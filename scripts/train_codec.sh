#!/usr/bin/env bash
# Train the spectral codec (44.1 kHz stereo, lmdm.models.codec) on corpus v2, resumably: re-running this
# script continues from the newest checkpoint in the run folder (exactly, as an uninterrupted run would).
# Usage: bash scripts/train_codec.sh [WORK_DIR]   (default: /work/runs; needs WORK_DIR/corpus2, made below)
# Held-out check of the newest checkpoint:
#   python tools/codec_judge.py WORK_DIR/codec-v1/step-XXXXXXXX.ckpt WORK_DIR/heldout2/manifest.jsonl --png spec.png
set -euo pipefail
W=${1:-/work/runs}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$W"

# corpus v2 (recorded instruments, 24 styles) and a held-out set from another seed; skipped once made
[ -f "$W/corpus2/manifest.jsonl" ] || nice -n 10 python -m lmdm data synth --hours 0.5 --seed 1 --out "$W/corpus2"
[ -f "$W/heldout2/manifest.jsonl" ] || nice -n 10 python -m lmdm data synth --hours 0.05 --seed 777 --out "$W/heldout2"

# the codec: checkpoints every 100 steps (the newest kept), metrics.jsonl and train.log in the run folder
nice -n 10 python -m lmdm train autoencoder --config "$ROOT/configs/train/codec-v1.json" --resume \
  --set autoencoder.manifest="$W/corpus2/manifest.jsonl" --set run.out_dir="$W/codec-v1" \
  --set run.progress=false >> "$W/codec-v1.log" 2>&1
