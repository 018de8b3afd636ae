#!/usr/bin/env bash
# Reproduce lmdm's embedded default model from nothing but this repository (2 CPU cores: ~2 hours).
# Every step is a plain lmdm command; the weights land in src/lmdm/default_model/.
# Usage: bash scripts/train_default_model.sh [WORK_DIR]   (default: runs/)
set -euo pipefail
W=${1:-runs}
mkdir -p "$W"

# 1. the built-in corpus: 3 h of 11 styles with stems (a separate seed makes the held-out set)
lmdm data synth --hours 3 --stems --out "$W/synth"
lmdm data synth --hours 0.25 --seed 1 --out "$W/heldout"

# 2. the compact autoencoder (22.05 kHz mono, 32 latent channels, unit-std latents)
lmdm train autoencoder --config configs/train/default-autoencoder.json \
  --set autoencoder.manifest="$W/synth/manifest.jsonl" --set run.out_dir="$W/default-autoencoder"

# 3. latents + sketch controls; every 6th piece also gets a (stem, rest-of-the-band) accompaniment pair
lmdm data encode "$W/synth/manifest.jsonl" --model "$W/default-autoencoder/model" --out "$W/latents" \
  --no-stems --accompaniment-every 6 --dtype bf16

# 4. stage 1: the block-causal DiT with its context router, sketch and accompaniment groups
lmdm train finetune --config configs/train/default-model.json \
  --set finetune.latents="$W/latents" --set finetune.autoencoder_init="$W/default-autoencoder/model" \
  --set run.out_dir="$W/default-model"

# 5. ship it in bf16 inside the package
python - "$W/default-model/model" <<'PY'
import sys, torch, lmdm
from lmdm.checkpoints import DEFAULT_MODEL_DIR, save_pretrained
save_pretrained(lmdm.from_pretrained(sys.argv[1], dtype=torch.bfloat16), DEFAULT_MODEL_DIR)
PY
# 6. evaluate (numbers in src/lmdm/default_model/MODEL_CARD.md)
lmdm eval --model default --reference "$W/heldout/manifest.jsonl" --suite quick --out "$W/eval-default"
