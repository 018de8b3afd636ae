"""`lmdm eval`: generate the streams a suite needs, measure them, write report.json/.md and plots.

Streams use fixed held-out captions (from a corpus manifest) and fixed seeds, so two models (e.g.
stage-1 vs ARC-Forcing) are compared on identical requests. Measured per model:
- FD-lmdm of every 10 s window against held-out corpus audio, as a drift curve, for text-only
  and primed streams (primed: the stream starts from the encoded opening of a reference piece);
- context memory: per window, how far each primed stream still is from the same request without
  the priming (`metrics.context_memory`; ~0 = the model has forgotten, or never used, its context);
- prompt adherence: tagger agreement with the caption's style and instrument families, and the
  beat tracker's tempo error against the piece's BPM (the tempo in the metadata, whether or not the
  caption names it; a model with a beat clock gets the named one through its clock, report key
  `beat_clock`): `median_tempo_error` over all captions, `median_tempo_error_requested` over those
  that name their BPM (where the others only imply a tempo through their style);
- prompt transitions: A→B switched mid-stream: blocks until the tagger prefers B, and the
  spectral-flux discontinuity at the switch;
- speed: the real-time factor of the generation itself;
- the offline baseline (`baseline=True`): see `offline_windows`; its FD and adherence sit next to
  the streamed text-only ones under the report key `baseline`;
- control adherence and accompaniment coherence (`controls=True`, report key `controls`): see
  `lmdm.eval.controls_suite` (skipped with a reason for a model without those input groups).

FD uses a pluggable embedder (`lmdm.eval.embedders`: FD-lmdm by default, or a local VGGish/CLAP);
adherence and transitions always use lmdm's tagger (they need its style/instrument heads). Any
sample rate and channel count works: reference and priming audio are loaded at the model's rate and
its autoencoder's channel count, and the embedders mix to mono.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..engine.beat import bpm_from_text
from ..audio.io import load_audio
from ..data.dataset import read_manifest
from ..data.labels import instruments_of
from ..data.tempo import beat_steadiness, estimate_tempo
from .embedders import lmdm_embedder
from .metrics import (blocks_until_match, context_memory, drift_curve, drift_ratio, frechet_with_interval,
                      switch_discontinuity, windows)
from .tagger import Tagger

WINDOW_SECONDS = 10.0


@dataclass
class Suite:
    prompts: int        # held-out captions (one stream each, text-only and primed)
    seconds: float      # stream length
    transitions: int    # A→B pairs
    reference: int      # held-out pieces for the reference set
    window_seconds: float = WINDOW_SECONDS  # drift and adherence are measured per window
    baseline: bool = True  # also sample the offline-window baseline (one window per eval window)


# quick: 6 x 30 s text + primed + baseline (~18 windows) + 2 transitions: ~9.5 min of audio, about a
# minute at 10x real time, plus tagging.
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


def offline_windows(model, prompt, count: int, seed: int, seconds: float) -> list[np.ndarray] | None:
    """The offline-window baseline: `count` independent pieces of `seconds`, each sampled by the SAME
    model as ONE whole window at once, with no streaming.

    Precisely: piece w is `model.stream(prompt, seed=seed + 1000 * w, pattern=bidirectional with
    context_frames=0 and block_frames=window_frames)` -> a single `next_latents()` call (every
    denoising step sees the whole window_frames-long window, full attention, no history, text-only
    conditioning), decoded offline by `autoencoder.decode` and cut to `seconds`. This is what an
    outpainting-free, non-streaming sampler of the same weights gives (as `lmdm generate` does for a
    plain SAO model); piece 0 uses the streamed text-only request's seed. Returns None when the
    model's window is shorter than `seconds` (no fair comparison then)."""
    from ..config import PatternConfig
    frames = model.config.pattern.window_frames
    need = round(seconds * model.sample_rate)
    if frames * model.config.downsampling_ratio < need:
        return None
    pattern = PatternConfig(pattern="bidirectional", block_frames=frames, context_frames=0)
    out = []
    for w in range(count):
        latents = model.stream(prompt, seed=seed + 1000 * w, pattern=pattern).next_latents()
        with torch.no_grad():
            audio = model.autoencoder.decode(latents.to(model.autoencoder.dtype)).float()[0, :, :need]
        out.append(audio.numpy())
    return out


def _embed_windows(embed, audio: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    parts = windows(audio, sr, seconds)
    return np.asarray(embed(np.stack(parts), sr)) if parts else np.zeros((0, getattr(embed, "dim", 0) or 0))


def evaluate(model, manifest: str | Path, suite: str | Suite = "quick", tagger: Tagger | None = None,
             seed: int = 0, progress=None, embedder=None, baseline: bool | None = None,
             controls=True, controls_manifest: str | Path | None = None, judge: bool = False) -> dict:
    """Run a suite on one model. `embedder`: the FD embedding, a callable (clips (N, channels,
    samples), sample_rate) -> (N, D) (default: the tagger's, FD-lmdm). `baseline`: also sample the
    offline-window baseline (default: the suite's setting). `controls`: also measure sketch adherence
    and accompaniment coherence (True: the suite's `controls_suite.CONTROL_SUITES` entry, or a
    `ControlsSuite`; False: skip); `controls_manifest`: where to find pieces with stems for the
    accompaniment part (default: `manifest`). `judge`: also run the judge section
    (`lmdm.eval.judge_suite`, report key `judge`; the suite's `JUDGE_SUITES` entry)."""
    spec = SUITES[suite] if isinstance(suite, str) else suite
    tagger = tagger or Tagger.load()[0]
    embed = embedder or lmdm_embedder(tagger)
    embed_name = getattr(embed, "name", "custom")
    baseline = spec.baseline if baseline is None else baseline
    entries = read_manifest(manifest)
    root = Path(manifest).parent
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(entries))
    chosen = [entries[i] for i in order[: spec.prompts]]
    ref_entries = [entries[i] for i in order[spec.prompts: spec.prompts + spec.reference]] or chosen
    sr = model.sample_rate
    channels = model.autoencoder.config.audio_channels
    ref_audio = [load_audio(root / e["path"], sr, channels) for e in ref_entries]
    reference = np.concatenate([_embed_windows(embed, a, sr, spec.window_seconds) for a in ref_audio])
    say = progress or (lambda msg: None)
    if len(reference) <= reference.shape[1]:
        say(f"warning: {len(reference)} reference windows from {len(ref_entries)} pieces for a {reference.shape[1]}-d "
            f"embedding: its covariance is rank-deficient and FD values are noisy (the manifest has "
            f"{len(entries)} pieces, {len(chosen)} of them prompts; a larger held-out corpus helps)")

    report = {"suite": suite if isinstance(suite, str) else "custom", "window_seconds": spec.window_seconds,
              "embedder": embed_name, "sample_rate": sr, "channels": channels,
              "steps": model.config.steps, "cfg_scale": model.config.cfg_scale,
              "sketch_cfg_scale": model.config.sketch_cfg_scale, "control_guidance": model.config.control_guidance,
              "beat_cfg_scale": model.config.beat_cfg_scale, "beat_cfg_steps": model.config.beat_cfg_steps,
              "prompt_guidance": model.config.prompt_guidance,
              # with a beat clock (`lmdm.engine.beat`) a stream keeps the BPM its caption names, as `lmdm generate` does
              "beat_clock": "beat" in model.config.dit.input_groups,
              "reference_pieces": len(ref_entries), "reference_windows": len(reference),
              "streams": {}, "adherence": [], "transitions": [], "rtf": []}
    by_kind = {}
    for kind in ("text", "primed"):
        per_window: list[list[np.ndarray]] = []
        for k, entry in enumerate(chosen):
            say(f"{kind} stream {k + 1}/{len(chosen)}")
            caption = entry["captions"][0]
            context = None
            if kind == "primed":
                opening = load_audio(root / entry["path"], sr, channels)[None, :, : round(model.window_seconds * sr)]
                with torch.no_grad():
                    context = model.autoencoder.encode(torch.from_numpy(opening).to(model.autoencoder.dtype))[0]
            audio, rtf = _stream_audio(model, caption, spec.seconds, seed + k, context)
            report["rtf"].append(rtf)
            emb = _embed_windows(embed, audio, sr, spec.window_seconds)
            for w, e in enumerate(emb):
                if len(per_window) <= w:
                    per_window.append([])
                per_window[w].append(e)
            if kind == "text":
                report["adherence"].append({**_adherence(tagger, audio, sr, entry["metadata"], spec.window_seconds),
                                            "tempo_requested": bpm_from_text(caption) is not None})
        curve = drift_curve([np.stack(w) for w in per_window if len(w) >= 2], reference)
        first = np.stack(per_window[0]) if per_window else np.zeros((0, 1))
        pooled = np.concatenate([np.stack(w) for w in per_window]) if per_window else np.zeros((0, 1))
        report["streams"][kind] = {"drift_curve": curve, "drift_ratio": drift_ratio(curve) if len(curve) > 1 else None,
                                   "fd_first_window": _fd(first, reference), "fd_all_windows": _fd(pooled, reference)}
        by_kind[kind] = [np.stack(w) for w in per_window]
    report["context_memory"] = context_memory(by_kind["primed"], by_kind["text"], reference)
    if baseline:
        report["baseline"] = _baseline(model, chosen, spec, seed, embed, tagger, reference, say)
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
    if controls:
        from .controls_suite import CONTROL_SUITES, ControlsSuite, SketchQuality, evaluate_controls
        if controls is True:
            controls = (CONTROL_SUITES[suite] if isinstance(suite, str) else
                        ControlsSuite(sketch_pieces=spec.prompts, accompaniment_pieces=spec.prompts, seconds=spec.seconds))
        report["controls"] = evaluate_controls(model, manifest, controls, seed, say,
                                               accompaniment_manifest=controls_manifest,
                                               quality=SketchQuality(embed, reference, spec.window_seconds, tagger))
    if judge:
        from .judge_suite import JUDGE_SUITES, JudgeSuite, evaluate_judge
        from .transcribe import JudgeUnavailable
        spec_j = JUDGE_SUITES[suite] if isinstance(suite, str) else JudgeSuite(seconds=spec.window_seconds)
        try:
            report["judge"] = evaluate_judge(model, manifest, spec_j, seed, say)
        except JudgeUnavailable as e:
            report["judge"] = {"unavailable": str(e)}
    return report


def _fd(emb: np.ndarray, reference: np.ndarray) -> dict | None:
    return frechet_with_interval(emb, reference, bootstrap=50) if len(emb) >= 2 and len(reference) >= 2 else None


def _baseline(model, chosen, spec: Suite, seed: int, embed, tagger: Tagger, reference, say) -> dict:
    """FD and adherence of the offline-window baseline on the text-only requests (same captions, seeds)."""
    sr, count = model.sample_rate, int(spec.seconds // spec.window_seconds)
    what = {"definition": "each eval window sampled as one whole model window (bidirectional, no context, "
                          "text-only), decoded offline; see lmdm.eval.suite.offline_windows"}
    embs, adherence, start, made = [], [], time.perf_counter(), 0
    for k, entry in enumerate(chosen):
        say(f"baseline {k + 1}/{len(chosen)}")
        parts = offline_windows(model, entry["captions"][0], count, seed + k, spec.window_seconds)
        if parts is None:
            return {**what, "skipped": f"the model's window ({model.window_seconds:.2f} s) is shorter than the "
                                       f"eval window ({spec.window_seconds} s)"}
        made += len(parts)
        embs.append(np.asarray(embed(np.stack(parts), sr)))
        per = [_adherence(tagger, p, sr, entry["metadata"], spec.window_seconds) for p in parts]
        tempo = [p["tempo_error"] for p in per if p["tempo_error"] is not None]
        adherence.append({"style": entry["metadata"]["style"],
                          "style_agreement": _mean(p["style_agreement"] for p in per),
                          "instrument_jaccard": _mean(p["instrument_jaccard"] for p in per),
                          "tempo_error": float(np.median(tempo)) if tempo else None})
    elapsed = time.perf_counter() - start
    pooled = np.concatenate(embs) if embs else np.zeros((0, 1))
    return {**what, "windows": made, "fd_all_windows": _fd(pooled, reference), "adherence": adherence,
            "style_agreement": _mean(a["style_agreement"] for a in adherence),
            "instrument_jaccard": _mean(a["instrument_jaccard"] for a in adherence),
            "median_tempo_error": _median_tempo_error(adherence),
            "realtime_factor": made * spec.window_seconds / elapsed if elapsed > 0 else None}


def _adherence(tagger: Tagger, audio: np.ndarray, sr: int, meta: dict, seconds: float) -> dict:
    parts = windows(audio, sr, seconds)
    preds = tagger.predict(torch.from_numpy(np.stack(parts)), sr) if parts else []
    want = set(instruments_of(meta))
    style_ok = [p["style"] == meta["style"] for p in preds]
    inst = [len(want & set(p["instruments"])) / max(1, len(want | set(p["instruments"]))) for p in preds]
    bpm = estimate_tempo(audio, sr)
    return {"style": meta["style"], "style_agreement": float(np.mean(style_ok)) if preds else None,
            "instrument_jaccard": float(np.mean(inst)) if preds else None, "tempo": meta["tempo"],
            "estimated_tempo": bpm, "tempo_error": abs(bpm - meta["tempo"]) / meta["tempo"] if bpm else None,
            "beat_steadiness": beat_steadiness(audio, sr, meta["tempo"])}


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


def _median_tempo_error(adherence: list[dict]) -> float:
    return float(np.median([a["tempo_error"] for a in adherence if a["tempo_error"] is not None] or [np.nan]))


def _summary(r: dict) -> dict:
    fd = (r["streams"]["text"].get("fd_all_windows") or {}).get("fd")
    base = r.get("baseline") or {}
    out = {"fd_text": fd,
           "fd_baseline": (base.get("fd_all_windows") or {}).get("fd"),
           "style_agreement": _mean(a["style_agreement"] for a in r["adherence"]),
           "style_agreement_baseline": base.get("style_agreement"),
           "instrument_jaccard": _mean(a["instrument_jaccard"] for a in r["adherence"]),
           "median_tempo_error": _median_tempo_error(r["adherence"]),
           "median_tempo_error_requested": _median_tempo_error([a for a in r["adherence"] if a.get("tempo_requested")]),
           "instrument_jaccard_baseline": base.get("instrument_jaccard"),
           "median_tempo_error_baseline": base.get("median_tempo_error"),
           "drift_ratio_text": r["streams"]["text"]["drift_ratio"],
           "drift_ratio_primed": r["streams"]["primed"]["drift_ratio"],
           "context_memory_first": (r.get("context_memory") or [None])[0],
           "context_memory_last": (r.get("context_memory") or [None])[-1],
           "blocks_until_match": _mean(t["blocks_until_match"] for t in r["transitions"]),
           "switch_discontinuity": _mean(t["discontinuity"] for t in r["transitions"]),
           "realtime_factor": _mean(r["rtf"])}
    if "baseline" not in r:
        out = {k: v for k, v in out.items() if "baseline" not in k}
    return out


def _adherence_table(reports: dict[str, dict]) -> list[str]:
    """report.md rows, one per model and caption: what the adherence medians are made of."""
    lines = ["## Per caption (text-only streams)", "",
             "Tempo: the piece's BPM (* where the caption names it) and the beat tracker's reading of the whole "
             "stream. Steady: the share of the stream's onset energy that keeps one phase of a beat at the piece's "
             "BPM from start to end (`lmdm.data.tempo.beat_steadiness`; no metrical level to get wrong; a wandering "
             "beat or another tempo reads near 0).", "",
             "| model | style | tempo | read | tempo error | steady | style agreement | instrument Jaccard |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in reports.items():
        for a in r["adherence"]:
            cells = [a["tempo_error"], a.get("beat_steadiness"), a["style_agreement"], a["instrument_jaccard"]]
            lines.append(f"| {name} | {a['style']} | {a['tempo']:g}{'*' if a.get('tempo_requested') else ''} | "
                         f"{a['estimated_tempo']:.1f} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in cells)
                         + " |")
    return lines + [""]


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
        base = (r.get("baseline") or {}).get("fd_all_windows")
        if base:
            ax.axhline(base["fd"], ls="--", lw=1, color=ax.lines[-1].get_color(), label=f"{name} (offline baseline)")
    embedder = next(iter(reports.values())).get("embedder", "lmdm")
    ax.set_xlabel("window end (s)"), ax.set_ylabel(f"FD-{embedder} vs held-out corpus"), ax.legend()
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
    embedders = sorted({r.get("embedder", "lmdm") for r in reports.values()})
    lines += ["", f"FD: Fréchet distance in the {'/'.join(embedders)} embedding to held-out corpus windows, "
              "pooled over all text-only windows. `*_baseline`: the same model sampling each window offline in "
              "one go (no streaming, no context); tempo error per window there, per stream otherwise.",
              "", "![drift](drift.png)", "", "![transitions](transitions.png)", ""]
    lines += _adherence_table(reports)
    from .controls_suite import controls_table
    lines += controls_table(reports)
    from .judge_suite import judge_table
    lines += judge_table(reports)
    (out / "report.md").write_text("\n".join(lines))
    return out
