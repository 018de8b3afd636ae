"""int8 vs fp32 on the shipped default model, side by side: the same prompts and seeds rendered by
the float model and by its int8 copy (`LiveMusicModel.quantize_int8`), and, as the yardstick, by the
float model with another seed. Signal-level figures per render (loudness, spectral centroid, beat
steadiness at the asked tempo, the project's tagger's style) and how far int8 moves each one,
next to how far a change of seed moves it. Also times the first audio of `generate` per dtype.

    PYTHONPATH=src python tools/int8_quality.py --seconds 20 --threads 1 [--out DIR]

With --out, every render is also written as DIR/<style>-<fp32|int8|fp32-seed1>.wav, for `lmdm judge`.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from lmdm.checkpoints import load
from lmdm.data.controls import loudness_and_centroid, to_mono
from lmdm.data.tempo import beat_steadiness
from lmdm.eval.tagger import SHIPPED, Tagger

PROMPTS = [("lofi", 80), ("house", 124), ("funk", 105), ("jazz", 140)]


def figures(audio: torch.Tensor, sr: int, bpm: float, tagger: Tagger) -> dict:
    mono = to_mono(audio.numpy())
    loud, cent = loudness_and_centroid(mono, sr)
    pred = tagger.predict(torch.from_numpy(mono)[None], sr)[0]
    return {"loudness_db": float(np.mean(loud)), "centroid": float(np.mean(cent)),
            "steadiness": float(beat_steadiness(mono, sr, bpm)), "style": pred["style"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write each render here as WAV")
    args = ap.parse_args()
    if args.out:
        import soundfile as sf
        Path(args.out).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    fp32 = load("default", dtype="fp32")
    int8 = copy.deepcopy(fp32).quantize_int8()
    tagger, _ = Tagger.load(SHIPPED)
    rows, first_audio = [], {"fp32": [], "int8": []}
    for style, bpm in PROMPTS:
        prompt = f"{style}, {bpm} BPM"
        out = {}
        for name, model, seed in (("fp32", fp32, 0), ("int8", int8, 0), ("fp32 seed 1", fp32, 1)):
            start, first = time.perf_counter(), []
            audio = model.generate(prompt, args.seconds, seed=seed,
                                   on_audio=lambda c: first or first.append(time.perf_counter()))
            if name in first_audio:
                first_audio[name].append(first[0] - start)
            out[name] = figures(audio, model.sample_rate, bpm, tagger)
            if args.out:
                sf.write(Path(args.out) / f"{style}-{name.replace(' seed ', '-seed')}.wav", audio.T.numpy(),
                         model.sample_rate, subtype="PCM_16")
            out[name]["rms"] = float(audio.pow(2).mean().sqrt())
            if name == "fp32":
                ref_audio = audio
            elif name == "int8":
                out[name]["audio_rel_rms_diff"] = float((audio - ref_audio).pow(2).mean().sqrt()
                                                        / ref_audio.pow(2).mean().sqrt())
        rows.append({"prompt": prompt, **out})
        print(json.dumps(rows[-1]), flush=True)
    print("\nprompt               | loudness dB fp32/int8/seed1 | centroid fp32/int8/seed1 | steadiness fp32/int8/seed1 "
          "| style fp32/int8/seed1")
    for r in rows:
        a, b, c = r["fp32"], r["int8"], r["fp32 seed 1"]
        print(f"{r['prompt']:<20} | {a['loudness_db']:6.1f} {b['loudness_db']:6.1f} {c['loudness_db']:6.1f} | "
              f"{a['centroid']:6.1f} {b['centroid']:6.1f} {c['centroid']:6.1f} | {a['steadiness']:.2f} "
              f"{b['steadiness']:.2f} {c['steadiness']:.2f} | {a['style']} {b['style']} {c['style']}")
    for key in ("loudness_db", "centroid", "steadiness"):
        d_int8 = np.mean([abs(r["int8"][key] - r["fp32"][key]) for r in rows])
        d_seed = np.mean([abs(r["fp32 seed 1"][key] - r["fp32"][key]) for r in rows])
        print(f"{key}: mean |int8 - fp32| {d_int8:.3f}, mean |seed 1 - seed 0| {d_seed:.3f}")
    same = sum(r["int8"]["style"] == r["fp32"]["style"] for r in rows)
    print(f"style agreement int8 vs fp32: {same}/{len(rows)}; waveform rel. RMS difference int8 vs fp32: "
          + ", ".join(f"{r['int8']['audio_rel_rms_diff']:.2f}" for r in rows))
    for name, times in first_audio.items():
        print(f"first audio of generate ({name}, model loaded, {args.threads} thread(s)): "
              f"median {np.median(times):.2f} s, max {max(times):.2f} s")


if __name__ == "__main__":
    main()
