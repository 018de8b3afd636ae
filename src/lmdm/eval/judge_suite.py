"""The judge's sections of `lmdm eval`: diversity, codec round trip and naturally worded prompts.

Every figure comes from the judge (`lmdm.eval.judge`: musicnn tags, basic-pitch notes, librosa chroma,
beats and spectra) or plain signal processing, never from lmdm's own tagger, and each sits beside
the same figure on held-out corpus renders (the ceiling):
- natural prompts (natural_prompts.json, plain language, many genres the corpus lacks): tag
  agreement with the prompt's words, tempo error against a named BPM, key against a named key;
- diversity: pitch-class-profile correlation between different prompts' outputs (the corpus: between
  different pieces) and the distribution of keys read; waveform and chroma-sequence similarity between
  seeds of one prompt, and between different prompts that name one tempo;
- timbre: spectral centroid and 95 % roll-off of the outputs and of the corpus;
- codec round trip of held-out pieces through the model's autoencoder: chroma-sequence and PCP
  correlation with the original, basic-pitch note F-measure against the piece's own MIDI score (and
  the original render's, the transcriber's ceiling), centroid and roll-off ratios, multi-resolution
  STFT distance.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from .judge import chroma_sequence, judge_audio, key_from_profile, mono, pitch_class_profile, timbre
from .transcribe import midi_notes, note_f_measure, transcribe

PROMPTS = Path(__file__).with_name("natural_prompts.json")


@dataclass
class JudgeSuite:
    seconds: float = 10.0        # length of each generated clip and corpus excerpt
    prompts: int | None = None   # natural prompts used (None: all)
    seeds: int = 2               # seeds per seed prompt
    corpus_pieces: int = 12      # held-out pieces for the corpus ceiling
    codec_pieces: int = 6        # held-out pieces round-tripped through the codec


JUDGE_SUITES = {"quick": JudgeSuite(prompts=12, seeds=2, corpus_pieces=8, codec_pieces=4), "full": JudgeSuite()}


# ---------------------------------------------------------------- similarity figures (model-free)
def waveform_similarity(a: np.ndarray, b: np.ndarray, sr: int, max_lag: float = 0.05) -> float:
    """Largest normalised cross-correlation of the two mono mixes (22.05 kHz) over lags within
    ±max_lag s: 1 for a clip with itself, ≈0 for unrelated signals."""
    x, y = mono(a, sr), mono(b, sr)
    n = min(len(x), len(y))
    x, y = x[:n] - x[:n].mean(), y[:n] - y[:n].mean()
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    if norm == 0:
        return 0.0
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)
    lag = int(max_lag * 22050)
    return float(np.concatenate([xc[:lag + 1], xc[-lag:]]).max() / norm)


def chroma_similarity(a: np.ndarray, b: np.ndarray, sr: int) -> float:
    """Pearson correlation of the two chroma sequences (12 x frames, flattened, trimmed to the shorter)."""
    ca, cb = chroma_sequence(a, sr), chroma_sequence(b, sr)
    n = min(ca.shape[1], cb.shape[1])
    return _corr(ca[:, :n].ravel(), cb[:, :n].ravel())


def pcp_correlation(p: np.ndarray, q: np.ndarray) -> float:
    return _corr(np.asarray(p), np.asarray(q))


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    d = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(np.clip(x @ y / d, -1.0, 1.0)) if d > 0 else 0.0


def mean_pairwise(items, fn) -> float | None:
    vals = [fn(a, b) for a, b in combinations(items, 2)]
    return float(np.mean(vals)) if vals else None


def key_distribution(keys: list[str]) -> dict:
    """How the keys read spread: counts, distinct keys and the share of the most common one."""
    counts = Counter(keys)
    return {"counts": dict(counts.most_common()), "distinct": len(counts),
            "top_share": counts.most_common(1)[0][1] / len(keys) if keys else None}


def mrstft_distance(ref: np.ndarray, est: np.ndarray, sr: int, sizes=(512, 1024, 2048)) -> float:
    """Multi-resolution STFT distance of the mono mixes: mean over FFT sizes (hop 1/4, Hann) of spectral
    convergence ‖|Y|-|X|‖/‖|X|‖ plus the mean absolute log10-magnitude difference. 0 for identical audio."""
    import torch
    x = torch.from_numpy(np.asarray(ref, np.float32).reshape(-1, np.shape(ref)[-1]).mean(0))
    y = torch.from_numpy(np.asarray(est, np.float32).reshape(-1, np.shape(est)[-1]).mean(0))
    n = min(len(x), len(y))
    out = []
    for size in sizes:
        win = torch.hann_window(size)
        X, Y = (torch.stft(s[:n], size, size // 4, window=win, return_complex=True).abs() for s in (x, y))
        sc = float(torch.linalg.norm(Y - X) / torch.linalg.norm(X).clamp_min(1e-8))
        mag = float((torch.log10(Y + 1e-5) - torch.log10(X + 1e-5)).abs().mean())
        out.append(sc + mag)
    return float(np.mean(out))


def codec_figures(original: np.ndarray, decoded: np.ndarray, sr: int, score=None) -> dict:
    """How much of a piece survives a codec: chroma-sequence and PCP correlation, centroid and 95 %
    roll-off ratios (decoded / original), MR-STFT distance, and with `score` (MIDI notes of the
    excerpt) basic-pitch's note F-measure on the decoded audio and on the original."""
    n = min(original.shape[-1], decoded.shape[-1])
    original, decoded = original[..., :n], decoded[..., :n]
    to, td = timbre(original, sr), timbre(decoded, sr)
    out = {"chroma_correlation": chroma_similarity(original, decoded, sr),
           "pcp_correlation": pcp_correlation(pitch_class_profile(original, sr), pitch_class_profile(decoded, sr)),
           "centroid_ratio": td["centroid_hz"] / to["centroid_hz"] if to["centroid_hz"] else None,
           "rolloff_ratio": td["rolloff95_hz"] / to["rolloff95_hz"] if to["rolloff95_hz"] else None,
           "mrstft": mrstft_distance(original, decoded, sr)}
    if score is not None:
        out["note_f"] = note_f_measure(score, transcribe(decoded, sr))["f_measure"]
        out["note_f_original"] = note_f_measure(score, transcribe(original, sr))["f_measure"]
    return out


# ---------------------------------------------------------------- the section
def load_prompts(path: str | Path | None = None) -> dict:
    return json.loads(Path(path or PROMPTS).read_text())


def _brief(j: dict) -> dict:
    """The figures of one judged clip that the report keeps."""
    p = j.get("prompt") or {}
    tags = p.get("tags") or {}
    return {"tags": {d: list(v)[:3] for d, v in j["tags"].items()} if "unavailable" not in j["tags"] else None,
            "key": j["chroma"]["key"], "pcp": j["chroma"]["pcp"], "bpm": j["tempo"]["bpm"],
            "centroid_hz": j["timbre"]["centroid_hz"], "rolloff95_hz": j["timbre"]["rolloff95_hz"],
            "loudness_lufs": j["timbre"]["loudness_lufs"], "tag_agreement": tags.get("agreement"),
            "tempo_error": (p.get("tempo") or {}).get("error"),
            "tempo_error_folded": (p.get("tempo") or {}).get("error_octave_folded"),
            "key_relation": (p.get("key") or {}).get("relation")}


def _stats(values) -> dict | None:
    v = [x for x in values if x is not None]
    return {"median": float(np.median(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)} if v else None


def _side(clips: list[dict], audios, sr: int) -> dict:
    """Summary figures of one side (model outputs or corpus excerpts)."""
    keys = [c["key"] for c in clips]
    return {"pcp_correlation_between": mean_pairwise([np.array(c["pcp"]) for c in clips], pcp_correlation),
            "keys": key_distribution(keys),
            "centroid_hz": _stats(c["centroid_hz"] for c in clips),
            "rolloff95_hz": _stats(c["rolloff95_hz"] for c in clips),
            "loudness_lufs": _stats(c["loudness_lufs"] for c in clips),
            "tag_agreement": _stats(c["tag_agreement"] for c in clips),
            "tempo_error": _stats(c["tempo_error"] for c in clips),
            "tempo_error_folded": _stats(c["tempo_error_folded"] for c in clips),
            "key_same_or_relative": (float(np.mean([c["key_relation"] in ("same", "relative") for c in clips
                                                    if c["key_relation"]]))
                                     if any(c["key_relation"] for c in clips) else None)}


def _pairs(audios: list[np.ndarray], sr: int) -> dict:
    return {"waveform": mean_pairwise(audios, lambda a, b: waveform_similarity(a, b, sr)),
            "chroma": mean_pairwise(audios, lambda a, b: chroma_similarity(a, b, sr))}


def evaluate_judge(model, manifest: str | Path, spec: JudgeSuite | str = "quick", seed: int = 0, progress=None,
                   prompts_file: str | Path | None = None, clips_dir: str | Path | None = None,
                   on_stage=None) -> dict:
    """The judge section for one model (see the module docstring); `manifest`: held-out corpus with
    MIDI scores (`lmdm data synth`). `clips_dir`: keep every generated clip there as a WAV file (and
    reuse one already there: the same prompt, seed and length), to listen to them or resume a run.
    `on_stage(report)`: called with the report so far after each stage (to save partial results)."""
    import torch

    from ..data.dataset import load_audio, read_manifest
    spec = JUDGE_SUITES[spec] if isinstance(spec, str) else spec
    say = progress or (lambda msg: None)
    sr, channels = model.sample_rate, model.autoencoder.config.audio_channels
    n = round(spec.seconds * sr)
    texts = load_prompts(prompts_file)
    prompts = texts["prompts"][: spec.prompts] if spec.prompts else texts["prompts"]

    def gen(prompt: str, s: int) -> np.ndarray:
        if clips_dir is None:
            return model.generate(prompt, spec.seconds, seed=s).float().numpy()
        import hashlib

        import soundfile as sf
        name = hashlib.sha1(f"{prompt}|{s}|{spec.seconds}".encode()).hexdigest()[:12]
        path = Path(clips_dir) / f"{name}.wav"
        if path.exists():
            return sf.read(str(path), dtype="float32", always_2d=True)[0].T
        audio = model.generate(prompt, spec.seconds, seed=s).float().numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio.T, sr, subtype="FLOAT")
        with open(Path(clips_dir) / "index.tsv", "a") as f:
            f.write(f"{path.name}\t{s}\t{prompt}\n")
        return audio

    report: dict = {"seconds": spec.seconds, "prompts_file": str(prompts_file or PROMPTS.name)}
    saved = on_stage or (lambda r: None)
    # the loops first (seeds, one tempo), then the codec and the corpus, then the long prompt list
    seeds = []
    for p in texts["seed_prompts"]:
        say(f"judge: seeds of '{p}'")
        seeds.append({"prompt": p, **_pairs([gen(p, seed + k) for k in range(spec.seeds)], sr)})
    report["seeds"] = seeds
    say("judge: one tempo, different prompts")
    tempo_audio = [gen(p, seed) for p in texts["same_tempo"]]
    report["same_tempo"] = {"prompts": texts["same_tempo"], **_pairs(tempo_audio, sr),
                            "keys": [key_from_profile(pitch_class_profile(a, sr))[0] for a in tempo_audio]}
    saved(report)

    entries = read_manifest(manifest)
    root = Path(manifest).parent
    codec = []
    for i, e in enumerate(entries[-spec.codec_pieces:] if spec.codec_pieces else []):
        say(f"judge: codec round trip {i + 1}/{spec.codec_pieces}")
        x = load_audio(root / e["path"], sr, channels)[:, :n]
        with torch.no_grad():
            lat = model.autoencoder.encode(torch.from_numpy(x)[None].to(model.autoencoder.dtype))
            y = model.autoencoder.decode(lat).float()[0, :, :n].numpy()
        score = midi_notes(root / e["midi"], 0.0, spec.seconds) if e.get("midi") else None
        codec.append({"path": e["path"], **codec_figures(x, y, sr, score)})
    report["codec"] = codec
    corpus_audio, corpus = [], []
    for i, e in enumerate(entries[: spec.corpus_pieces]):
        say(f"judge: corpus piece {i + 1}/{spec.corpus_pieces}")
        audio = load_audio(root / e["path"], sr, channels)[:, :n]
        corpus_audio.append(audio)
        corpus.append({"path": e["path"], **_brief(judge_audio(audio, sr, prompt=e["captions"][0], notes=False))})
    report["corpus"] = corpus
    report["corpus_side"] = _side(corpus, corpus_audio, sr)
    report["corpus_pairs"] = _pairs(corpus_audio[:4], sr)
    saved(report)

    clips = []
    for i, p in enumerate(prompts):
        say(f"judge: natural prompt {i + 1}/{len(prompts)}")
        clips.append({"prompt": p, **_brief(judge_audio(gen(p, seed), sr, prompt=p, notes=False))})
        report["natural"] = clips
        if (i + 1) % 5 == 0:
            saved(report)
    report["model_side"] = _side(clips, [], sr)
    report["summary"] = judge_summary(report)
    return report


def judge_summary(r: dict) -> dict:
    """The headline figures, model beside corpus where both exist."""
    m, c = r["model_side"], r["corpus_side"]

    def med(side, key):
        return (side.get(key) or {}).get("median")
    codec = r["codec"]

    def cmean(key):
        v = [x[key] for x in codec if x.get(key) is not None]
        return float(np.mean(v)) if v else None
    return {"pcp_corr_between_prompts": m["pcp_correlation_between"], "pcp_corr_between_corpus": c["pcp_correlation_between"],
            "distinct_keys": m["keys"]["distinct"], "distinct_keys_corpus": c["keys"]["distinct"],
            "top_key_share": m["keys"]["top_share"], "top_key_share_corpus": c["keys"]["top_share"],
            "centroid_hz": med(m, "centroid_hz"), "centroid_hz_corpus": med(c, "centroid_hz"),
            "rolloff95_hz": med(m, "rolloff95_hz"), "rolloff95_hz_corpus": med(c, "rolloff95_hz"),
            "tag_agreement": med(m, "tag_agreement"), "tag_agreement_corpus": med(c, "tag_agreement"),
            "named_tempo_error": med(m, "tempo_error"), "named_key_same_or_relative": m["key_same_or_relative"],
            "seed_waveform_similarity": _mean(s["waveform"] for s in r["seeds"]),
            "seed_chroma_similarity": _mean(s["chroma"] for s in r["seeds"]),
            "same_tempo_waveform_similarity": r["same_tempo"]["waveform"],
            "same_tempo_chroma_similarity": r["same_tempo"]["chroma"],
            "corpus_waveform_similarity": r["corpus_pairs"]["waveform"],
            "corpus_chroma_similarity": r["corpus_pairs"]["chroma"],
            "codec_chroma_correlation": cmean("chroma_correlation"), "codec_pcp_correlation": cmean("pcp_correlation"),
            "codec_note_f": cmean("note_f"), "codec_note_f_original": cmean("note_f_original"),
            "codec_centroid_ratio": cmean("centroid_ratio"), "codec_rolloff_ratio": cmean("rolloff_ratio"),
            "codec_mrstft": cmean("mrstft")}


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def judge_table(reports: dict[str, dict]) -> list[str]:
    """report.md lines for the judge section of one or more models."""
    have = {n: r["judge"] for n, r in reports.items() if r.get("judge") and "unavailable" not in r["judge"]}
    missing = [f"Judge section ({n}): unavailable — {r['judge']['unavailable']}" for n, r in reports.items()
               if (r.get("judge") or {}).get("unavailable")]
    if not have:
        return missing + [""] if missing else []
    lines = ["## Judge (outside listener models, not lmdm's tagger)", "",
             "Tags: musicnn MTT/MSD; notes: basic-pitch; key, beats, spectra: librosa; loudness: pyloudnorm "
             "(`lmdm judge`, docs/judge.md). `*_corpus`: the same figure on held-out corpus renders (the ceiling). "
             "Similarities: 1 = identical, ≈0 = unrelated.", "",
             "| figure | " + " | ".join(have) + " |", "|---|" + "---|" * len(have)]
    for k in next(iter(have.values()))["summary"]:
        cells = [have[n]["summary"].get(k) for n in have]
        lines.append(f"| {k} | " + " | ".join("–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
                                                for v in cells) + " |")
    for name, r in have.items():
        lines += ["", f"Keys read ({name}): outputs {r['model_side']['keys']['counts']}; corpus "
                  f"{r['corpus_side']['keys']['counts']}", "",
                  "| prompt | top tags (MTT / MSD) | key | BPM | centroid | roll-off | tag agr. | tempo err |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in r["natural"]:
            tags = " / ".join(", ".join(t) for t in c["tags"].values()) if c["tags"] else "–"
            te = "–" if c["tempo_error"] is None else f"{c['tempo_error']:.0%}"
            ta = "–" if c["tag_agreement"] is None else f"{c['tag_agreement']:.2f}"
            lines.append(f"| {c['prompt']} | {tags} | {c['key']} | {c['bpm']:.0f} | {c['centroid_hz']:.0f} | "
                         f"{c['rolloff95_hz']:.0f} | {ta} | {te} |")
    return lines + [""]
