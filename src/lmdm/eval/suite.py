"""`lmdm eval`: generate the streams a suite needs, measure them, write report.json/.md and plots.

Streams use fixed held-out captions (from a corpus manifest) and fixed seeds, so two models (e.g.
stage-1 vs ARC-Forcing) are compared on identical requests. Measured per model:
- FD-lmdm of every 10 s window against held-out corpus audio, as a drift curve, for text-only
  and primed streams (primed: the stream starts from the encoded opening of a reference piece);
- prompt adherence: tagger agreement with the caption's style and instrument families, and the
  beat tracker's tempo error against the caption's BPM;
- prompt transitions: A→B switched mid-stream: blocks until the tagger prefers B, and the
  spectral-flux discontinuity at the switch;
- speed: the real-time factor of the generation itself.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import load_audio, read_manifest
from ..data.tempo import estimate_tempo
from .metrics import (blocks_until_match, drift_curve, drift_ratio, frechet_with_interval, switch_discontinuity,
                      windows)
from .tagger import Tagger, instruments_of

WINDOW_SECONDS = 10.0


@dataclass
class Suite:
    prompts: int        # held-out captions (one stream each, text-only and primed)
    seconds: float      # stream length
    transitions: int    # A→B pairs
    reference: int      # held-out pieces for the reference set
    window_seconds: float = WINDOW_SECONDS  # drift and adherence are measured per window


SUITES = {"quick": Suite(prompts=6, seconds=30.0, transitions=2, reference=24),
          "full": Suite(prompts=24, seconds=60.0, transitions=8, reference=120)}


def _stream_audio(model, prompt, seconds, seed, context=None, switch=None) -> tuple[np.ndarray, float]:
    """Render `seconds` of a stream (optionally switching to prompt `switch[1]` at block switch[0])."""
    stream = model.stream(prompt, seed=seed, context=context)
    total = round(seconds * model.sample_rate)
    pieces, have, start = [], 0, time.perf_counter()
    while have < total:
        if switch and stream.block_index == switch[0]:
            stream.set_prompts(switch[1])
        audio = stream.next_block()[0]
        pieces.append(audio)
        have += audio.shape[-1]
    elapsed = time.perf_counter() - start
    return torch.cat(pieces, -1)[:, :total].numpy(), seconds / elapsed


def _embed_windows(tagger: Tagger, audio: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    parts = windows(audio, sr, seconds)
    return tagger.embed_audio(torch.from_numpy(np.stack(parts)), sr) if parts else np.zeros((0, tagger.cfg.embed_dim))


def evaluate(model, manifest: str | Path, suite: str | Suite = "quick", tagger: Tagger | None = None,
             seed: int = 0, progress=None) -> dict:
    spec = SUITES[suite] if isinstance(suite, str) else suite
    tagger = tagger or Tagger.load()[0]
    entries = read_manifest(manifest)
    root = Path(manifest).parent
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(entries))
    chosen = [entries[i] for i in order[: spec.prompts]]
    ref_entries = [entries[i] for i in order[spec.prompts: spec.prompts + spec.reference]] or chosen
    sr = model.sample_rate
    ref_audio = [load_audio(root / e["path"], sr, 2) for e in ref_entries]
    reference = np.concatenate([_embed_windows(tagger, a, sr, spec.window_seconds) for a in ref_audio])
    say = progress or (lambda msg: None)

    report = {"suite": suite if isinstance(suite, str) else "custom", "window_seconds": spec.window_seconds,
              "streams": {}, "adherence": [], "transitions": [], "rtf": []}
    for kind in ("text", "primed"):
        per_window: list[list[np.ndarray]] = []
        for k, entry in enumerate(chosen):
            say(f"{kind} stream {k + 1}/{len(chosen)}")
            caption = entry["captions"][0]
            context = None
            if kind == "primed":
                opening = load_audio(root / entry["path"], sr, 2)[None, :, : round(model.window_seconds * sr)]
                with torch.no_grad():
                    context = model.autoencoder.encode(torch.from_numpy(opening).to(model.autoencoder.dtype))[0]
            audio, rtf = _stream_audio(model, caption, spec.seconds, seed + k, context)
            report["rtf"].append(rtf)
            emb = _embed_windows(tagger, audio, sr, spec.window_seconds)
            for w, e in enumerate(emb):
                if len(per_window) <= w:
                    per_window.append([])
                per_window[w].append(e)
            if kind == "text":
                report["adherence"].append(_adherence(tagger, audio, sr, entry["metadata"], spec.window_seconds))
        curve = drift_curve([np.stack(w) for w in per_window if len(w) >= 2], reference)
        first = np.stack(per_window[0]) if per_window else np.zeros((0, 1))
        report["streams"][kind] = {"drift_curve": curve, "drift_ratio": drift_ratio(curve) if len(curve) > 1 else None,
                                   "fd_first_window": frechet_with_interval(first, reference, bootstrap=50)
                                   if len(first) >= 2 else None}
    block_frames = model.config.pattern.block_frames
    for k in range(spec.transitions):
        a, b = chosen[k % len(chosen)], chosen[(k + 1) % len(chosen)]
        if a["metadata"]["style"] == b["metadata"]["style"]:
            continue
        say(f"transition {k + 1}/{spec.transitions}")
        switch_block = max(1, int(spec.seconds / 2 / (block_frames * model.config.frame_seconds)))
        audio, _ = _stream_audio(model, a["captions"][0], spec.seconds, seed + 100 + k,
                                 switch=(switch_block, b["captions"][0]))
        report["transitions"].append(_transition(tagger, audio, sr, a, b, switch_block,
                                                 block_frames * model.config.downsampling_ratio))
    report["summary"] = _summary(report)
    return report


def _adherence(tagger: Tagger, audio: np.ndarray, sr: int, meta: dict, seconds: float) -> dict:
    parts = windows(audio, sr, seconds)
    preds = tagger.predict(torch.from_numpy(np.stack(parts)), sr) if parts else []
    want = set(instruments_of(meta))
    style_ok = [p["style"] == meta["style"] for p in preds]
    inst = [len(want & set(p["instruments"])) / max(1, len(want | set(p["instruments"]))) for p in preds]
    bpm = estimate_tempo(audio, sr)
    return {"style": meta["style"], "style_agreement": float(np.mean(style_ok)) if preds else None,
            "instrument_jaccard": float(np.mean(inst)) if preds else None, "tempo": meta["tempo"],
            "estimated_tempo": bpm, "tempo_error": abs(bpm - meta["tempo"]) / meta["tempo"] if bpm else None}


def _transition(tagger, audio, sr, a, b, switch_block, block_samples) -> dict:
    blocks = [audio[:, i:i + block_samples] for i in range(0, audio.shape[-1] - block_samples + 1, block_samples)]
    probs = [tagger.predict(torch.from_numpy(np.stack(blocks[i:i + 8])), sr) for i in range(0, len(blocks), 8)]
    probs = [p for chunk in probs for p in chunk]
    styles = tagger.cfg.styles
    pa = np.array([p["style_probs"][styles.index(a["metadata"]["style"])] for p in probs])
    pb = np.array([p["style_probs"][styles.index(b["metadata"]["style"])] for p in probs])
    return {"from": a["metadata"]["style"], "to": b["metadata"]["style"], "switch_block": switch_block,
            "blocks_until_match": blocks_until_match(pa, pb, switch_block),
            "discontinuity": switch_discontinuity(audio, switch_block * block_samples),
            "p_from": pa.tolist(), "p_to": pb.tolist()}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _summary(r: dict) -> dict:
    return {"style_agreement": _mean(a["style_agreement"] for a in r["adherence"]),
            "instrument_jaccard": _mean(a["instrument_jaccard"] for a in r["adherence"]),
            "median_tempo_error": float(np.median([a["tempo_error"] for a in r["adherence"]
                                                   if a["tempo_error"] is not None] or [np.nan])),
            "drift_ratio_text": r["streams"]["text"]["drift_ratio"],
            "drift_ratio_primed": r["streams"]["primed"]["drift_ratio"],
            "blocks_until_match": _mean(t["blocks_until_match"] for t in r["transitions"]),
            "switch_discontinuity": _mean(t["discontinuity"] for t in r["transitions"]),
            "realtime_factor": _mean(r["rtf"])}


def write_report(reports: dict[str, dict], out: str | Path) -> Path:
    """report.json, report.md and drift/transition plots for one or more models side by side."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(reports, indent=2, default=float))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in reports.items():
        for kind, s in r["streams"].items():
            xs = [r["window_seconds"] * (i + 1) for i in range(len(s["drift_curve"]))]
            ax.plot(xs, s["drift_curve"], marker="o", label=f"{name} ({kind})")
    ax.set_xlabel("window end (s)"), ax.set_ylabel("FD-lmdm vs held-out corpus"), ax.legend()
    ax.set_title("Drift over the stream")
    fig.tight_layout(), fig.savefig(out / "drift.png", dpi=100), plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in reports.items():
        for t in r["transitions"]:
            ax.plot(t["p_to"], label=f"{name}: {t['from']}→{t['to']}")
            ax.axvline(t["switch_block"], color="grey", lw=0.5)
    ax.set_xlabel("block"), ax.set_ylabel("tagger P(new style)"), ax.set_title("Prompt transitions")
    if any(r["transitions"] for r in reports.values()):
        ax.legend()
    fig.tight_layout(), fig.savefig(out / "transitions.png", dpi=100), plt.close(fig)
    keys = list(next(iter(reports.values()))["summary"])
    lines = ["# lmdm eval report", "", "| metric | " + " | ".join(reports) + " |", "|---|" + "---|" * len(reports)]
    for k in keys:
        cells = [reports[n]["summary"][k] for n in reports]
        lines.append(f"| {k} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
    lines += ["", "![drift](drift.png)", "", "![transitions](transitions.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    return out
