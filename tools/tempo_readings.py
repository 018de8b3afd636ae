"""Per-caption tempo readings of a model's eval streams: what `lmdm eval`'s tempo error is made of.

Renders the text-only streams `lmdm eval` renders (the same held-out captions, order and seeds) for
the captions that name a BPM, and prints for each the requested tempo, the tracker's reading of the
whole stream with the fitted reader and with its first pass alone (`estimate_tempo(...,
reader=None)`), the Fourier tempogram's peak, how steadily the stream keeps a beat at the asked tempo
(`beat_steadiness`, with the same at 7 % off it for scale), how far its beats land ahead of the real
held-out piece's (`beat_phase` of both at the asked tempo; the corpus pieces' beats sit on the clock's
grid, so this is the stream's lead on its clock, and `beat_lead_frames` in a model's config is where
it is compensated), and the reader's reading of each 10-s window. A beat that wanders reads low on
steadiness; the 10-s readings alone cannot tell a wandering beat from the reader's own errors on short
windows, which are more frequent than on whole clips (README, Evaluation).

    python tools/tempo_readings.py default HELDOUT/manifest.jsonl --prompts 24 --seconds 60

`--save DIR` also writes each stream to DIR (FLAC, named by its caption index and style), so other
tempo readers can be tried on exactly these streams without rendering them again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import lmdm
from lmdm.engine.beat import bpm_from_text
from lmdm.audio.io import load_audio
from lmdm.data.dataset import read_manifest
from lmdm.data.tempo import band_flux, beat_phase, beat_steadiness, estimate_tempo, tempogram_peak
from lmdm.eval.suite import WINDOW_SECONDS, _stream_audio


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="'default' or a model directory")
    p.add_argument("manifest", help="held-out corpus manifest.jsonl (the one given to lmdm eval --reference)")
    p.add_argument("--prompts", type=int, default=6, help="the suite's number of captions (quick 6, full 24)")
    p.add_argument("--seconds", type=float, default=30.0, help="stream length (quick 30, full 60)")
    p.add_argument("--seed", type=int, default=0, help="lmdm eval's --seed")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--save", type=Path, help="also write each stream here as FLAC")
    a = p.parse_args(argv)
    if a.save:
        a.save.mkdir(parents=True, exist_ok=True)
    model = lmdm.load(a.model, dtype=a.dtype)
    entries = read_manifest(a.manifest)
    order = np.random.default_rng(a.seed).permutation(len(entries))   # as lmdm.eval.suite.evaluate picks
    sr = model.sample_rate
    window = int(WINDOW_SECONDS * sr)
    errors, leads = {"reader": [], "first pass": []}, []
    print("caption | asked | reader | first pass | tempogram peak | steady at asked (7 % off) | lead on the real "
          "piece (ms) | reader per 10-s window")
    for k, i in enumerate(order[: a.prompts]):
        caption = entries[i]["captions"][0]
        asked = bpm_from_text(caption)
        if asked is None:
            continue
        with torch.no_grad():
            audio, _ = _stream_audio(model, caption, a.seconds, a.seed + k)
        if a.save:
            sf.write(a.save / f"{k:02d}-{entries[i]['metadata']['style']}-{asked:g}bpm.flac", audio.T, sr)
        reader, first = estimate_tempo(audio, sr), estimate_tempo(audio, sr, reader=None)
        peak = tempogram_peak(*band_flux(audio, sr))
        steady, off = beat_steadiness(audio, sr, asked), beat_steadiness(audio, sr, 1.07 * asked)
        real = load_audio(Path(a.manifest).parent / entries[i]["path"], sr, audio.shape[0])
        lead = -((beat_phase(audio, sr, asked) - beat_phase(real, sr, asked) + 0.5) % 1.0 - 0.5) * 60000.0 / asked
        leads.append(lead)
        windows = [estimate_tempo(audio[:, s:s + window], sr) for s in range(0, audio.shape[-1] - window + 1, window)]
        errors["reader"].append(abs(reader / asked - 1))
        errors["first pass"].append(abs(first / asked - 1))
        print(f"{entries[i]['metadata']['style']} ({k}) | {asked:g} | {reader:.1f} | {first:.1f} | {peak:.1f} | "
              f"{steady:.2f} ({off:.2f}) | {lead:+.0f} | "
              + " / ".join(f"{w:.0f}" for w in windows), flush=True)
    if leads:
        print(f"beats ahead of the real pieces': median {np.median(leads):+.0f} ms")
    for name, e in errors.items():
        if e:
            print(f"{name}: median error {100 * np.median(e):.1f} %, within 5 %: {sum(x <= 0.05 for x in e)}/{len(e)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
