"""Control adherence (sketch) and accompaniment coherence: the `controls` part of `lmdm eval` (issues #6, #9).

Sketch adherence (`sketch_adherence`), for held-out pieces of the reference manifest: controls are
extracted from the first `seconds` of the piece's audio (at most the whole piece: never padded) at the model's sample rate with hop = the
autoencoder's downsampling ratio (exactly what `lmdm generate --sketch piece.wav` feeds the model,
strength 1), the model generates `seconds` with `sketch=` those controls and the piece's first caption,
and controls are extracted from the output the same way. Reported per piece and as medians:
- loudness: Pearson correlation and mean absolute error (dB) of the A-weighted loudness curves,
  clipped to [-80, 0] dB (the range the sketch normalisation keeps), one value per latent frame;
- centroid: correlation and MAE (semitones) of the spectral centroid on the MIDI scale, on frames
  that are not silent (> -80 dB) in both;
- pitch: median |midi(f0 target) - midi(f0 output)| in semitones on frames voiced (YIN f0 > 0) in
  both, and the fraction of frames voiced in both;
- `*_smoothed`: the loudness / centroid correlation after a 0.5 s running median on both curves
  (the envelope, without beat-level detail).
The same numbers for the model WITHOUT the sketch (same caption, same seed) are the baseline: the
difference is what the sketch does. With `quality` (the main suite passes it), what the sketched
streams sound like: FD of their windows against the suite's reference windows and the tagger's style
agreement with the caption, and clipping (median peak, fraction of samples beyond +-1), for the
music-sketched, drawn-sketched and unsketched streams (equal window counts, so the three FDs compare
with each other, not with the main suite's 60-s streams). `codec`: the same numbers for the source
itself encoded and decoded by the model's autoencoder, the ceiling a perfect DiT could reach through
that codec.

Drawn-curve adherence (`drawn`): what `lmdm generate --sketch curves.json` is for. For the same
captions, `random_curves` draws a loudness curve (breakpoints 1-4 s apart at levels in [-45, -10] dB)
and a brightness curve (centroid log-uniform in [300, 4000] Hz), the model generates with them as the
sketch (`sketch.controls_from_curves`), and the output's controls are compared with the curves as
above (`drawn`), and the same request without the sketch (`drawn_no_sketch`). A held-out piece's
controls mostly move beat by beat around a steady level; drawn curves are slow, large moves.

Accompaniment coherence (`beat_alignment`, `key_agreement`), for manifest pieces with stems: one stem
(`given`, default "chords" when the piece has it, else the first in sorted order) of the first
`seconds` is the song given to `lmdm.engine.accompany.accompany` (the default cutoff of `lmdm accompany`),
the model generates the rest. Compared, with the given stem G of the piece:
- `generated`: the accompaniment generated for G;
- `random_stem`: that same generated audio against the given stem of ANOTHER piece (the next one
  with stems): what chance alignment looks like;
- `unconditioned`: the model without accompaniment (same caption and seed) against G;
- `reference`: the piece's real rest (mix - G) against G, what the corpus itself reaches.

Each stage's audio is measured at the model's rate; a model without the `sketch` / `accompaniment`
input group, a manifest without stems or a model without an autoencoder gives `{"skipped": reason}`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio.controls import SILENCE_DB, extract_controls, hz_to_midi, to_mono
from ..audio.io import load_audio
from ..data.dataset import read_manifest
from ..data.tempo import onset_strength
from .metrics import control_adherence


@dataclass
class ControlsSuite:
    sketch_pieces: int          # held-out pieces with sketch adherence measured
    accompaniment_pieces: int   # pieces with stems for accompaniment coherence
    seconds: float              # generated length per request
    given: str = "chords"       # the stem given as accompaniment (when the piece has it)


# quick: (6 x 3 sketch + 6 x 2 accompaniment) generations x 20 s = 10 min of audio, about a minute at 10x real time.
CONTROL_SUITES = {"quick": ControlsSuite(sketch_pieces=6, accompaniment_pieces=6, seconds=20.0),
                  "full": ControlsSuite(sketch_pieces=24, accompaniment_pieces=24, seconds=30.0)}

SMOOTH_SECONDS = 0.5
BEAT_SMOOTH_SECONDS = 0.025
MAX_LAG_SECONDS = 1.0


# -- metrics ------------------------------------------------------------------------------------

def _running_median(x: np.ndarray, kernel: int) -> np.ndarray:
    kernel = max(1, kernel | 1)
    if kernel == 1 or len(x) == 0:
        return x
    r = kernel // 2
    padded = np.pad(x, r, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, kernel), axis=-1)


def _finite(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def compare_controls(target: dict, achieved: dict, frame_rate: float) -> dict:
    """Adherence of `achieved` controls to `target` ones (both `audio.controls.extract_controls`
    dicts at the same hop): see the module docstring for each number."""
    n = min(len(target["loudness"]), len(achieved["loudness"]))
    lt = np.clip(target["loudness"][:n], SILENCE_DB, 0.0)
    la = np.clip(achieved["loudness"][:n], SILENCE_DB, 0.0)
    sounding = (target["loudness"][:n] > SILENCE_DB) & (achieved["loudness"][:n] > SILENCE_DB)
    ct, ca = target["centroid"][:n], achieved["centroid"][:n]
    kernel = int(round(SMOOTH_SECONDS * frame_rate))
    loud = control_adherence(lt, la)
    cent = control_adherence(ct, ca, sounding)
    loud_s = control_adherence(_running_median(lt, kernel), _running_median(la, kernel))
    cent_s = control_adherence(_running_median(ct[sounding], kernel), _running_median(ca[sounding], kernel))
    ft, fa = target["f0"][:n], achieved["f0"][:n]
    both = (ft > 0) & (fa > 0)
    pitch = (float(np.median(np.abs(hz_to_midi(ft[both]) - hz_to_midi(fa[both])))) if both.any() else None)
    return {"frames": int(n),
            "loudness_correlation": _finite(loud["correlation"]), "loudness_mae_db": _finite(loud["mae"]),
            "centroid_correlation": _finite(cent["correlation"]), "centroid_mae_semitones": _finite(cent["mae"]),
            "loudness_correlation_smoothed": _finite(loud_s["correlation"]),
            "centroid_correlation_smoothed": _finite(cent_s["correlation"]),
            "pitch_error_semitones": pitch, "voiced_in_both": float(both.mean()) if n else 0.0}


def sketch_adherence(source, generated, sample_rate: int, hop: int) -> dict:
    """Controls of `source` audio (the sketch) vs those of `generated` audio, at `hop`."""
    return compare_controls(extract_controls(source, sample_rate, hop), extract_controls(generated, sample_rate, hop),
                            sample_rate / hop)


def _onset_envelope(audio, sample_rate: int) -> tuple[np.ndarray, float]:
    env, rate = onset_strength(audio, sample_rate)
    sigma = BEAT_SMOOTH_SECONDS * rate
    r = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return np.convolve(env, kernel / kernel.sum(), mode="same"), rate


def beat_alignment(given, generated, sample_rate: int) -> dict:
    """How well the onsets of `generated` line up with those of `given` (both (samples,) or
    (channels, samples) at `sample_rate`, sample-aligned).

    Precisely: onset envelopes e_g, e_o (`data.tempo.onset_strength`, hop 512, the beat tracker's
    novelty curve), each smoothed with a Gaussian of sigma 25 ms (so an onset within a few tens of ms
    still counts), cut to the common length and z-normalised (mean 0, std 1). c(tau) =
    mean_t z_g[t] z_o[t + tau], a normalised cross-correlation in [-1, 1].
    - `alignment` = c(0): onsets at the same times score high, unrelated or out-of-phase onsets ~0
      (the headline number);
    - `best` = max c(tau) over |tau| <= 1 s and `best_lag_ms` its lag: a rhythmically related but
      shifted part has best >> alignment and a non-zero lag;
    - `lag0_share` = c(0) / best (1 when the best alignment is at lag 0).
    None values when either envelope is flat (silence)."""
    a, rate = _onset_envelope(given, sample_rate)
    b, _ = _onset_envelope(generated, sample_rate)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if n < 3 or a.std() == 0 or b.std() == 0:
        return {"alignment": None, "best": None, "best_lag_ms": None, "lag0_share": None}
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    max_lag = min(int(round(MAX_LAG_SECONDS * rate)), n - 1)
    lags = np.arange(-max_lag, max_lag + 1)
    c = np.array([np.dot(a[max(0, -t):n - max(0, t)], b[max(0, t):n - max(0, -t)]) / n for t in lags])
    zero = float(c[max_lag])
    k = int(np.argmax(c))
    best = float(c[k])
    return {"alignment": zero, "best": best, "best_lag_ms": float(lags[k] / rate * 1000),
            "lag0_share": zero / best if best > 0 else None}


def chroma_profile(audio, sample_rate: int, n_fft: int = 8192, fmin: float = 55.0, fmax: float = 5000.0) -> np.ndarray:
    """The 12-bin pitch-class profile of a clip: STFT magnitude (Hann, hop n_fft / 2) of bins in
    [fmin, fmax] summed by their nearest pitch class (C = 0), over the whole clip."""
    x = to_mono(audio)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=-1)).sum(0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    keep = (freqs >= fmin) & (freqs <= min(fmax, sample_rate / 2))
    pc = np.round(hz_to_midi(freqs[keep])).astype(int) % 12
    return np.bincount(pc, weights=mag[keep], minlength=12)


def key_agreement(given, generated, sample_rate: int) -> float | None:
    """Pearson correlation of the two clips' chroma profiles (`chroma_profile`): ~1 when they use the
    same pitch classes in the same proportions (same key), ~0 or below for unrelated keys."""
    a, b = chroma_profile(given, sample_rate), chroma_profile(generated, sample_rate)
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


# -- the suite ----------------------------------------------------------------------------------

def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _skip_reason(model, group: str) -> str | None:
    groups = model.config.dit.input_groups
    if group not in groups:
        return f"the model has no {group!r} input group (dit.input_groups: {sorted(groups)})"
    if model.autoencoder is None:
        return "the model has no autoencoder"
    return None


def _choose(entries: list[dict], count: int, seed: int) -> list[dict]:
    order = np.random.default_rng(seed).permutation(len(entries))
    return [entries[i] for i in order[:count]]


def _clip(path, sr, channels, n) -> np.ndarray:
    """The first n samples, or the whole piece when it is shorter: never padded, since following the
    silence of a padded tail is trivial and inflates every number (measured: a 60-s request on 30-s
    pieces read a loudness correlation of 0.98 for the codec round trip, 0.80 without the padding)."""
    return np.ascontiguousarray(load_audio(path, sr, channels)[:, :n])


@dataclass
class SketchQuality:
    """What the sketched streams sound like, next to the same requests without a sketch: FD against the
    main suite's `reference` embeddings (`embed`: clips (N, channels, samples), sr -> (N, D)) over
    windows of `window_seconds`, the `tagger`'s style agreement with the caption's style, and clipping."""
    embed: object
    reference: np.ndarray
    window_seconds: float
    tagger: object


def evaluate_controls(model, manifest: str | Path, suite: str | ControlsSuite = "quick", seed: int = 0,
                      progress=None, accompaniment_manifest: str | Path | None = None, steps: int | None = None,
                      quality: SketchQuality | None = None) -> dict:
    """Sketch adherence on pieces of `manifest` and accompaniment coherence on the pieces with stems of
    `accompaniment_manifest` (default: `manifest`); see the module docstring. -> {"sketch": ...,
    "accompaniment": ..., "summary": ...}, each part `{"skipped": reason}` where it cannot run.
    `quality`: also FD and style agreement of the sketched streams (`SketchQuality`)."""
    spec = CONTROL_SUITES[suite] if isinstance(suite, str) else suite
    say = progress or (lambda msg: None)
    out = {"seconds": spec.seconds,
           "sketch": _sketch_part(model, manifest, spec, seed, say, steps, quality),
           "accompaniment": _accompaniment_part(model, accompaniment_manifest or manifest, spec, seed, say, steps)}
    out["summary"] = controls_summary(out)
    return out


def _sketch_part(model, manifest, spec: ControlsSuite, seed: int, say, steps, quality: SketchQuality | None) -> dict:
    from ..engine.generate import generate
    from ..engine.sketch import controls_from_curves, sketch_from_controls
    reason = _skip_reason(model, "sketch")
    if reason:
        return {"skipped": reason}
    entries = read_manifest(manifest)
    root = Path(manifest).parent
    sr, hop = model.sample_rate, model.config.downsampling_ratio
    channels = model.autoencoder.config.audio_channels
    n = round(spec.seconds * sr)
    pieces, start, made = [], time.perf_counter(), 0.0
    heard: dict[str, list] = {"sketch": [], "no_sketch": [], "drawn": []}   # (_quality_of, style) per stream
    for k, entry in enumerate(_choose(entries, spec.sketch_pieces, seed)):
        say(f"sketch {k + 1}/{spec.sketch_pieces}")
        source = _clip(root / entry["path"], sr, channels, n)
        seconds = source.shape[-1] / sr   # capped at the piece's length
        target = extract_controls(source, sr, hop)
        caption = entry["captions"][0]
        with_sketch = generate(model, caption, seconds, seed=seed + k, steps=steps,
                               sketch=sketch_from_controls(target)).numpy()
        without = generate(model, caption, seconds, seed=seed + k, steps=steps).numpy()
        made += 2 * seconds
        ae = model.autoencoder
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(source))[None].to(ae.device, ae.dtype)
            codec = ae.decode(ae.encode(x))[0, :, :source.shape[-1]].float().cpu().numpy()
        pieces.append({"path": entry["path"], "caption": caption,
                       "sketch": compare_controls(target, extract_controls(with_sketch, sr, hop), sr / hop),
                       "no_sketch": compare_controls(target, extract_controls(without, sr, hop), sr / hop),
                       "codec": compare_controls(target, extract_controls(codec, sr, hop), sr / hop)})
        say(f"drawn sketch {k + 1}/{spec.sketch_pieces}")
        curves = random_curves(np.random.default_rng([seed, k]), seconds)
        frames = len(target["loudness"])   # the frames the music sketch had
        drawn = {"loudness": _at_frames(curves["loudness"], frames, sr / hop),
                 "centroid": hz_to_midi(_at_frames(curves["centroid"], frames, sr / hop)), "f0": np.zeros(frames)}
        following = generate(model, caption, seconds, seed=seed + k, steps=steps,
                             sketch=controls_from_curves(curves, frames, sr / hop)).numpy()
        made += seconds
        pieces[-1]["drawn"] = compare_controls(drawn, extract_controls(following, sr, hop), sr / hop)
        pieces[-1]["drawn_no_sketch"] = compare_controls(drawn, extract_controls(without, sr, hop), sr / hop)
        if quality is not None:
            style = (entry.get("metadata") or {}).get("style")
            for tag, audio in (("sketch", with_sketch), ("no_sketch", without), ("drawn", following)):
                heard[tag].append((_quality_of(quality, audio, sr), style))
    keys = [k for k in (pieces[0]["sketch"] if pieces else []) if k != "frames"]
    out = {"pieces": pieces, "hop": hop, "frame_rate": sr / hop}
    for tag in ("sketch", "no_sketch", "codec", "drawn", "drawn_no_sketch"):
        out[tag] = {k: _median(p[tag][k] for p in pieces) for k in keys}
    out["realtime_factor"] = made / max(time.perf_counter() - start, 1e-9)
    if quality is not None:
        out["quality"] = {tag: _pooled_quality(quality, rows) for tag, rows in heard.items()}
    return out


def _quality_of(q: SketchQuality, audio: np.ndarray, sr: int) -> dict:
    from .metrics import windows
    parts = windows(audio, sr, q.window_seconds)
    clipping = {"peak": float(np.abs(audio).max()) if audio.size else 0.0,
                "clipped": float((np.abs(audio) > 1.0).mean()) if audio.size else 0.0}
    if not parts:
        return {"embeddings": np.zeros((0, q.reference.shape[1])), "styles": [], **clipping}
    clips = np.stack(parts)
    return {"embeddings": np.asarray(q.embed(clips, sr)),
            "styles": [p["style"] for p in q.tagger.predict(torch.from_numpy(clips), sr)], **clipping}


def _pooled_quality(q: SketchQuality, rows: list) -> dict:
    """FD of all windows of one kind of stream against the reference, style agreement, and clipping:
    the median peak and the fraction of samples beyond +-1 over all streams."""
    from .metrics import frechet_with_interval
    emb = np.concatenate([r["embeddings"] for r, _ in rows]) if rows else np.zeros((0, q.reference.shape[1]))
    agree = [s == style for r, style in rows if style is not None for s in r["styles"]]
    fd = frechet_with_interval(emb, q.reference, bootstrap=50) if len(emb) >= 2 else None
    return {"windows": int(len(emb)), **({k: fd[k] for k in ("fd", "low", "high")} if fd else {"fd": None}),
            "style_agreement": float(np.mean(agree)) if agree else None,
            "median_peak": float(np.median([r["peak"] for r, _ in rows])) if rows else None,
            "clipped_fraction": float(np.mean([r["clipped"] for r, _ in rows])) if rows else None}


def random_curves(rng: np.random.Generator, seconds: float) -> dict:
    """A drawn sketch: loudness (dB) and centroid (Hz) breakpoints [[seconds, value], ...] 1-4 s apart."""
    times = [0.0]
    while times[-1] < seconds:
        times.append(times[-1] + float(rng.uniform(1.0, 4.0)))
    loud = rng.uniform(-45.0, -10.0, len(times))
    hz = np.exp(rng.uniform(np.log(300.0), np.log(4000.0), len(times)))
    return {"loudness": [[t, float(v)] for t, v in zip(times, loud)],
            "centroid": [[t, float(v)] for t, v in zip(times, hz)]}


def _at_frames(points, frames: int, frame_rate: float) -> np.ndarray:
    """A breakpoint curve at the latent frame times, interpolated as `controls_from_curves` does."""
    t, v = np.asarray(points, dtype=np.float64).T
    return np.interp(np.arange(frames) / frame_rate, t, v)


def _given_stem(entry: dict, prefer: str) -> str:
    return prefer if prefer in entry["stems"] else sorted(entry["stems"])[0]


def _coherence(given, audio, sr) -> dict:
    return {**beat_alignment(given, audio, sr), "key_agreement": key_agreement(given, audio, sr)}


def _accompaniment_part(model, manifest, spec: ControlsSuite, seed: int, say, steps) -> dict:
    from ..engine.accompany import accompany, default_cutoff
    from ..engine.generate import generate
    reason = _skip_reason(model, "accompaniment")
    if reason:
        return {"skipped": reason}
    entries = [e for e in read_manifest(manifest) if e.get("stems")]
    if not entries:
        return {"skipped": f"no piece of {manifest} has stems (entry['stems']); make one with `lmdm data synth --stems`"}
    root = Path(manifest).parent
    sr, channels = model.sample_rate, model.autoencoder.config.audio_channels
    n = round(spec.seconds * sr)
    chosen = _choose(entries, spec.accompaniment_pieces, seed)
    givens = []
    for entry in chosen:
        name = _given_stem(entry, spec.given)
        givens.append((name, _clip(root / entry["stems"][name], sr, channels, n)))
    n = min(g.shape[-1] for _, g in givens)   # one length for all: capped at the shortest piece
    givens = [(name, g[:, :n]) for name, g in givens]
    seconds = n / sr
    cutoff = default_cutoff(model)
    pieces, start, made = [], time.perf_counter(), 0.0
    for k, entry in enumerate(chosen):
        say(f"accompaniment {k + 1}/{len(chosen)}")
        name, given = givens[k]
        caption = entry["captions"][0]
        generated = accompany(model, torch.from_numpy(given), caption, seconds, seed=seed + k, steps=steps,
                              cutoff_frames=cutoff).numpy()
        plain = generate(model, caption, seconds, seed=seed + k, steps=steps).numpy()
        made += 2 * seconds
        rest = _clip(root / entry["path"], sr, channels, n) - given
        other = givens[(k + 1) % len(chosen)] if len(chosen) > 1 else None
        pieces.append({"path": entry["path"], "given": name, "caption": caption,
                       "generated": _coherence(given, generated, sr),
                       "random_stem": _coherence(other[1], generated, sr) if other else None,
                       "unconditioned": _coherence(given, plain, sr),
                       "reference": _coherence(given, rest, sr)})
    out = {"pieces": pieces, "cutoff_frames": cutoff, "given_preference": spec.given, "seconds": seconds}
    for part in ("generated", "random_stem", "unconditioned", "reference"):
        rows = [p[part] for p in pieces if p[part] is not None]
        out[part] = {k: _median(r[k] for r in rows) for k in ("alignment", "best", "lag0_share", "key_agreement")}
    out["wins_vs_random_stem"] = _wins(pieces, "random_stem")
    out["wins_vs_unconditioned"] = _wins(pieces, "unconditioned")
    out["realtime_factor"] = made / max(time.perf_counter() - start, 1e-9)
    return out


def _wins(pieces, other: str) -> float | None:
    """Fraction of pieces whose generated part aligns better (c(0)) with its own given stem than `other`."""
    pairs = [(p["generated"]["alignment"], p[other]["alignment"]) for p in pieces
             if p[other] is not None and p["generated"]["alignment"] is not None and p[other]["alignment"] is not None]
    return float(np.mean([a > b for a, b in pairs])) if pairs else None


def controls_summary(r: dict) -> dict:
    """The headline numbers (None where a part was skipped)."""
    s, a = r.get("sketch") or {}, r.get("accompaniment") or {}
    out = {}
    for tag in ("sketch", "no_sketch", "codec", "drawn", "drawn_no_sketch"):
        m = s.get(tag) or {}
        for k in ("loudness_correlation", "centroid_correlation", "pitch_error_semitones"):
            out[f"{k}_{tag}"] = m.get(k)
    for tag, m in (s.get("quality") or {}).items():
        out[f"fd_{tag}"] = m.get("fd")
        out[f"style_agreement_{tag}"] = m.get("style_agreement")
        out[f"clipped_fraction_{tag}"] = m.get("clipped_fraction")
    for tag in ("generated", "random_stem", "unconditioned", "reference"):
        m = a.get(tag) or {}
        out[f"beat_alignment_{tag}"] = m.get("alignment")
        out[f"key_agreement_{tag}"] = m.get("key_agreement")
    out["beat_wins_vs_random_stem"] = a.get("wins_vs_random_stem")
    return out


SKETCH_SUMMARY_KEYS = ("loudness", "centroid", "pitch", "fd_", "style_agreement_", "clipped_fraction_")


def controls_table(reports: dict[str, dict]) -> list[str]:
    """report.md lines: sketch adherence and accompaniment coherence, one column per model."""
    have = {name: r["controls"] for name, r in reports.items() if r.get("controls")}
    if not have:
        return []
    names = list(have)
    head = ["| " + " | ".join(["metric", *names]) + " |", "|---|" + "---|" * len(names)]

    def cell(v):
        return "–" if v is None else f"{v:.3f}"

    lines = ["## Control adherence and accompaniment coherence", ""]
    for part, label in (("sketch", "Sketch adherence (median over pieces): with the piece's own controls as the "
                                   "sketch vs the same request without it, and the piece itself through the "
                                   "model's autoencoder (codec: the ceiling); drawn: random slow loudness and "
                                   "brightness curves as the sketch, vs the same request without it"),
                        ("accompaniment", "Accompaniment coherence (median over pieces): beat alignment c(0) and "
                                          "chroma key agreement of the given stem with the generated part, with a "
                                          "stem of another piece, without accompaniment, and the real rest")):
        skipped = {n: have[n][part].get("skipped") for n in names if have[n][part].get("skipped")}
        lines += [label + ".", ""]
        for n, why in skipped.items():
            lines.append(f"- {n}: skipped ({why})")
        if len(skipped) == len(names):
            lines.append("")
            continue
        lines += head
        keys = [k for k in next(iter(have.values()))["summary"]
                if (part == "sketch") == k.startswith(SKETCH_SUMMARY_KEYS)]
        for k in keys:
            lines.append(f"| {k} | " + " | ".join(cell(have[n]["summary"].get(k)) for n in names) + " |")
        lines.append("")
    return lines
