"""How much prompt adherence the default model's codec leaves: the shipped tagger's style and
instrument agreement and the tempo error on held-out pieces, as they are and after an
encode/decode round trip through the default autoencoder.
Usage: python tools/codec_ceiling.py HELDOUT/manifest.jsonl [PIECES] [MODEL] [TAGGER]   (the model card
used 5, then 12; MODEL: a model directory, default the embedded default model; TAGGER: a tagger file,
default the shipped one)"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

import lmdm
from lmdm.audio.io import load_audio
from lmdm.eval.suite import _adherence
from lmdm.eval.tagger import Tagger

manifest, pieces = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 5
model = sys.argv[3] if len(sys.argv) > 3 else "default"
tagger = Tagger.load(*sys.argv[4:5])[0]
ae = lmdm.load(model, dtype=torch.float32).autoencoder
sr = ae.sample_rate
rows = {"original": [], "through the codec": []}
for line in manifest.read_text().splitlines()[:pieces]:
    e = json.loads(line)
    x = load_audio(manifest.parent / e["path"], sr, ae.config.audio_channels)
    with torch.no_grad():
        y = ae.decode(ae.encode(torch.from_numpy(x)[None]))[0, :, :x.shape[-1]].numpy()
    rows["original"].append(_adherence(tagger, x, sr, e["metadata"], 10.0))
    rows["through the codec"].append(_adherence(tagger, y, sr, e["metadata"], 10.0))
for name, r in rows.items():
    print(f"{name}: style {np.mean([a['style_agreement'] for a in r]):.2f}, instruments "
          f"{np.mean([a['instrument_jaccard'] for a in r]):.2f}, median tempo error "
          f"{np.median([a['tempo_error'] for a in r if a['tempo_error'] is not None]):.4f}")
