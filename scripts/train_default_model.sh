#!/usr/bin/env bash
# Reproduce lmdm's embedded default model from nothing but this repository (2 CPU cores: ~4 hours).
# Every step is a plain lmdm command; the weights land in src/lmdm/default_model/.
# Usage: bash scripts/train_default_model.sh [WORK_DIR]   (default: runs/)
set -euo pipefail
W=${1:-runs}
mkdir -p "$W"

# 1. the built-in corpus as the shipped model saw it (renderer v1: 3 h of 11 styles with stems; a separate
#    seed makes the held-out set)
lmdm data synth --renderer v1 --hours 3 --stems --out "$W/synth"
lmdm data synth --renderer v1 --hours 0.25 --seed 1 --out "$W/heldout"

# 2. the compact autoencoder (22.05 kHz mono, 32 latent channels, unit-std latents)
lmdm train autoencoder --config configs/train/default-autoencoder.json \
  --set autoencoder.manifest="$W/synth/manifest.jsonl" --set run.out_dir="$W/default-autoencoder"

# 2b. a decoder-only fine-tune without the waveform term that made reconstructions quiet (the encoder,
#     hence the latents below, unchanged); its decoder is the one shipped (step 6)
lmdm train autoencoder --config configs/train/default-decoder.json \
  --set autoencoder.manifest="$W/synth/manifest.jsonl" \
  --set autoencoder.init="$W/default-autoencoder/model/autoencoder.safetensors" --set run.out_dir="$W/default-decoder"

# 3. latents + sketch controls; every 6th piece also gets a (stem, rest-of-the-band) accompaniment pair
lmdm data encode "$W/synth/manifest.jsonl" --model "$W/default-autoencoder/model" --out "$W/latents" \
  --no-stems --accompaniment-every 6 --dtype bf16

# 4. stage 1: the block-causal DiT with its context router, sketch and accompaniment groups
lmdm train finetune --config configs/train/default-model.json \
  --set finetune.latents="$W/latents" --set finetune.autoencoder_init="$W/default-autoencoder/model" \
  --set run.out_dir="$W/default-model"

# 4b. stage 1b: the sketch group (control loss, router lr multiplier, more high-noise items; ~16 min)
lmdm train finetune --config configs/train/default-sketch.json \
  --set finetune.latents="$W/latents" --set finetune.init="$W/default-model/model" \
  --set run.out_dir="$W/default-model-sketch"

# 5. stage 2: ARC-Forcing on the model's own rollouts, half of them following a sketch (600 steps, ~45 min)
lmdm train arc-forcing --config configs/train/arc-default.json \
  --set finetune.latents="$W/latents" --set finetune.init="$W/default-model-sketch/model" \
  --set run.out_dir="$W/default-model-arc"

# 6. ship the ARC-Forced weights with the fine-tuned decoder, in bf16, inside the package
python - "$W/default-model-arc/model" "$W/default-decoder/model/autoencoder.safetensors" <<'PY'
import sys, torch, lmdm
from safetensors.torch import load_file
from lmdm.checkpoints import DEFAULT_MODEL_DIR, load_strict, save_pretrained
model = lmdm.from_pretrained(sys.argv[1])
load_strict(model.autoencoder, load_file(sys.argv[2]), sys.argv[2])   # the fine-tuned decoder
model.config.sketch_cfg_scale = 3.0   # v0.4.1: guidance on a sketch when one is given (model card)
model.config.control_guidance = 0.3   # v0.4.2: control guidance through the decoder with a sketch
save_pretrained(model.to(torch.bfloat16), DEFAULT_MODEL_DIR)
PY
# 6b. v0.6: ARC-Forcing continued from the shipped v0.4 weights with the tag loss (a frozen latent
#     tagger's style / instruments / tempo class on every rollout chunk; 1200 steps, ~75 min), shipped the same way
lmdm train arc-forcing --config configs/train/arc-default-tags.json \
  --set finetune.latents="$W/latents" --set run.out_dir="$W/default-model-arc-tags"
python - "$W/default-model-arc-tags/model" <<'PY'
import sys, torch, lmdm
from lmdm.checkpoints import DEFAULT_MODEL_DIR, save_pretrained
model = lmdm.from_pretrained(sys.argv[1])   # started from DEFAULT_MODEL_DIR: decoder and guidance settings kept
save_pretrained(model.to(torch.bfloat16), DEFAULT_MODEL_DIR)
PY
# 6c. v0.7: the beat clock. ARC-Forcing from the shipped v0.6 weights with a new beat-clock group in the
#     rollouts (300 steps, ~10 min), then continued at gentler clock settings with a fresh discriminator
#     (~10 min per 300 steps), shipped the same way (model card, v0.7)
lmdm train arc-forcing --config configs/train/arc-default-beat.json \
  --set finetune.latents="$W/latents" --set run.out_dir="$W/default-model-arc-beat"
lmdm train arc-forcing --config configs/train/arc-default-beat2.json \
  --set finetune.latents="$W/latents" --set finetune.init="$W/default-model-arc-beat/model" \
  --set run.out_dir="$W/default-model-arc-beat2"
python - "$W/default-model-arc-beat2/model" <<'PY'
import sys, torch, lmdm
from lmdm.checkpoints import DEFAULT_MODEL_DIR, save_pretrained
save_pretrained(lmdm.from_pretrained(sys.argv[1]).to(torch.bfloat16), DEFAULT_MODEL_DIR)
PY
# 6d. v0.8: guidance distillation. The shipped v0.7 weights learn their own CFG velocity at w = 2
#     (a frozen copy is the teacher), 300 steps (~8 min), shipped the same way (model card, v0.8)
lmdm train finetune --config configs/train/default-distill.json \
  --set finetune.latents="$W/latents" --set run.out_dir="$W/default-model-distill"
python - "$W/default-model-distill/model" <<'PY'
import sys, torch, lmdm
from lmdm.checkpoints import DEFAULT_MODEL_DIR, save_pretrained
save_pretrained(lmdm.from_pretrained(sys.argv[1]).to(torch.bfloat16), DEFAULT_MODEL_DIR)
PY
# 6e. v0.9 / v0.10: prompt guidance. A latent-text probe fitted contrastively on the training latents and
#     their captions, with instrument-family heads from the corpus metadata (v0.10; on because the latents
#     list stems) (2000 steps, ~2.5 min), written into the shipped model with guidance strength 0.4 on by
#     default (instrument weight 0.5: PromptGuidance's default) (model card, v0.10); the DiT's weights are v0.8's
lmdm train prompt-probe --model src/lmdm/default_model --latents "$W/latents" --out "$W/default-model-probe" --strength 0.4
python - "$W/default-model-probe" <<'PY'
import sys, lmdm
from lmdm.checkpoints import DEFAULT_MODEL_DIR, save_pretrained
save_pretrained(lmdm.from_pretrained(sys.argv[1]), DEFAULT_MODEL_DIR)   # stored in bf16 as its input was
PY
# 6f. v0.11: beat guidance. No training: the shipped config runs the model again without the beat clock on
#     the first 3 of 8 denoising steps and pushes 3x towards the clock (model card, v0.11)
python - <<'PY'
import lmdm
from lmdm.checkpoints import DEFAULT_MODEL_DIR, save_pretrained
model = lmdm.from_pretrained(DEFAULT_MODEL_DIR)
model.config.beat_cfg_scale, model.config.beat_cfg_steps = 3.0, 3
save_pretrained(model, DEFAULT_MODEL_DIR)
PY
# 7. evaluate stage 1 against stage 2 on 60-s streams (numbers in src/lmdm/default_model/MODEL_CARD.md)
lmdm eval --model "$W/default-model/model" --compare "$W/default-model-arc/model" \
  --reference "$W/heldout/manifest.jsonl" --suite quick --seconds 60 --no-baseline --dtype bf16 --out "$W/eval-arc"
