"""Style / instrument agreement of one model under several prompt-guidance settings (the model card's v0.9 and v0.10 sweeps).

    python tools/prompt_guidance_sweep.py MODEL_DIR HELDOUT/manifest.jsonl '{"strength": 0.3}' '{"strength": 0.15}' ...

Each JSON is a `lmdm.engine.prompt_guidance.PromptGuidance` (strength, iterations, first_step, last_step,
instrument_weight for probes with instrument heads), plus
optionally "hinge": false (the probe's target similarity set to 1: push every block) and "beat_cfg" /
"beat_cfg_steps" (the stream's guidance on the beat clock and the steps it acts on; default: the model's). Streams: the eval's
first 24 held-out captions (`lmdm eval`'s order for seed 0) with seeds 0..23, 10 blocks each, the first
20 s tagged in 10-s windows by the evaluation's tagger; the tempo error is the median over the captions
that name a BPM, each stream's 20 s read by the evaluation's beat tracker.
"""
import json
import sys
import time

import numpy as np
import torch

import lmdm
from lmdm.data.dataset import read_manifest
from lmdm.engine.beat import bpm_from_text
from lmdm.eval.suite import _adherence, _median_tempo_error
from lmdm.eval.tagger import Tagger
from lmdm.engine.guidance.prompt import PromptGuidance


def main(model_dir: str, heldout: str, *settings: str) -> None:
    m, tagger = lmdm.load(model_dir, dtype="auto"), Tagger.load()[0]
    entries = read_manifest(heldout)
    chosen = [entries[i] for i in np.random.default_rng(0).permutation(len(entries))[:24]]
    target = float(m.prompt_probe.target_similarity)
    for setting in settings:
        cfg = json.loads(setting)
        m.prompt_probe.target_similarity.fill_(target if cfg.pop("hinge", True) else 1.0)
        beat_cfg = cfg.pop("beat_cfg", None)
        beat_steps = cfg.pop("beat_cfg_steps", None)
        g = PromptGuidance(**cfg)
        rows, start = [], time.time()
        for k, e in enumerate(chosen):
            s = m.stream(e["captions"][0], seed=k, prompt_guidance=g, beat_cfg=beat_cfg, beat_cfg_steps=beat_steps)
            audio = torch.cat([s.next_block()[0] for _ in range(10)], -1).float().numpy()[:, : 20 * m.sample_rate]
            rows.append({**_adherence(tagger, audio, m.sample_rate, e["metadata"], 10.0),
                         "tempo_requested": bpm_from_text(e["captions"][0]) is not None})
        per: dict[str, list] = {}
        for r in rows:
            per.setdefault(r["style"], []).append(r["style_agreement"])
        print(setting, f"style {np.mean([r['style_agreement'] for r in rows]):.3f} instruments "
              f"{np.mean([r['instrument_jaccard'] for r in rows]):.3f} named-BPM tempo error "
              f"{_median_tempo_error([r for r in rows if r['tempo_requested']]):.3f} ({time.time() - start:.0f} s)",
              {k: round(float(np.mean(v)), 2) for k, v in sorted(per.items())}, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
