"""Notes from basic-pitch (Spotify, ICASSP 2022), the transcriber the judge listens with.

The model is the ONNX file bundled in the `basic-pitch` wheel (installed with --no-deps: its declared
TensorFlow is not needed), run with onnxruntime; windowing and note creation follow
basic_pitch.inference.run_inference / predict with its default thresholds, on arrays instead of a path.
`note_f_measure` scores a transcription against a MIDI score with mir_eval (onsets within 50 ms,
offsets ignored), as transcription papers do.
"""
from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import LMDMError

SR, HOP, WINDOW = 22050, 256, 22050 * 2 - 256   # basic_pitch.constants: AUDIO_SAMPLE_RATE, FFT_HOP, AUDIO_N_SAMPLES
OVERLAP_FRAMES = 30
FPS = SR // HOP


class JudgeUnavailable(LMDMError):
    """A judge package is not installed."""


def need(module: str, what: str, package: str | None = None):
    """Import `module` for `what`, or say which package to install."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise JudgeUnavailable(f"{what} needs the {package or module} package, which is not installed: "
                               f"pip install 'lmdm[judge]' (bash scripts/setup.sh installs it, with musicnn and "
                               f"basic-pitch) ({e})") from e


@lru_cache(maxsize=1)
def _session():
    ort = need("onnxruntime", "note transcription (basic-pitch)")
    spec = importlib.util.find_spec("basic_pitch")   # locate the wheel without importing it (it probes for TF)
    path = Path(spec.origin).parent / "saved_models" / "icassp_2022" / "nmp.onnx" if spec else None
    if path is None or not path.exists():
        raise JudgeUnavailable("note transcription needs basic-pitch's bundled ONNX model: pip install --no-deps "
                               "basic-pitch==0.4.0 (bash scripts/setup.sh does)")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _note_creation():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # basic_pitch/__init__ warns about every backend it does not find
    try:
        need("mir_eval", "note creation (basic-pitch)", "mir_eval")
        need("pretty_midi", "note creation (basic-pitch)", "pretty_midi")
        need("resampy", "note creation (basic-pitch)", "resampy")
        from basic_pitch import note_creation
    finally:
        root.setLevel(level)
    return note_creation


def model_output(audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """basic-pitch's frame activations {note, onset, contour} for mono or (channels, samples) audio."""
    librosa = need("librosa", "note transcription")
    y = np.asarray(audio, dtype=np.float32)
    y = y.mean(0) if y.ndim == 2 else y
    if sr != SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=SR)
    overlap = OVERLAP_FRAMES * HOP
    n = len(y)
    y = np.concatenate([np.zeros(overlap // 2, np.float32), y])
    hop = WINDOW - overlap
    wins = [np.pad(y[i:i + WINDOW], (0, max(0, WINDOW - len(y[i:i + WINDOW])))) for i in range(0, len(y), hop)]
    sess = _session()
    names = ["StatefulPartitionedCall:1", "StatefulPartitionedCall:2", "StatefulPartitionedCall:0"]
    out = {"note": [], "onset": [], "contour": []}
    for w in wins:
        for k, v in zip(out, sess.run(names, {"serving_default_input_2:0": w[None, :, None].astype(np.float32)})):
            out[k].append(v)
    keep = int(np.floor(n * FPS / SR))
    half = OVERLAP_FRAMES // 2
    return {k: np.concatenate(v)[:, half:-half].reshape(-1, v[0].shape[-1])[:keep] for k, v in out.items()}


def transcribe(audio: np.ndarray, sr: int) -> list[tuple[float, float, int, float]]:
    """Notes (start s, end s, MIDI pitch, amplitude) with basic-pitch's default thresholds."""
    out = model_output(audio, sr)
    if len(out["note"]) == 0:
        return []
    _, events = _note_creation().model_output_to_notes(out, onset_thresh=0.5, frame_thresh=0.3, min_note_len=11,
                                                       include_pitch_bends=False, melodia_trick=True)
    return sorted((float(s), float(e), int(p), float(a)) for s, e, p, a, *_ in events)


def note_pcp(notes) -> np.ndarray:
    """Duration-weighted pitch-class profile of notes, summing to 1 (zeros when there are none)."""
    pcp = np.zeros(12)
    for s, e, p, *_ in notes:
        pcp[p % 12] += max(0.0, e - s)
    return pcp / pcp.sum() if pcp.sum() > 0 else pcp


def midi_notes(path: str | Path, start: float = 0.0, end: float | None = None):
    """A MIDI score's pitched notes (drums left out) inside [start, end), times relative to start."""
    pretty_midi = need("pretty_midi", "scoring against a MIDI file")
    notes = []
    for inst in pretty_midi.PrettyMIDI(str(path)).instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            if n.start >= start and (end is None or n.start < end):
                notes.append((n.start - start, (n.end if end is None else min(n.end, end)) - start, n.pitch, 1.0))
    return sorted(notes)


def note_f_measure(reference, estimate, onset_tolerance: float = 0.05) -> dict:
    """mir_eval transcription precision/recall/F (onset within `onset_tolerance`, pitch within 50 cents,
    offsets ignored) of `estimate` against `reference`; notes as (start, end, pitch, ...)."""
    mir_eval = need("mir_eval", "note F-measure")
    if not reference or not estimate:
        return {"precision": 0.0, "recall": 0.0, "f_measure": 0.0, "reference_notes": len(reference),
                "estimated_notes": len(estimate)}

    def arrays(notes):
        iv = np.array([[s, max(e, s + 1e-3)] for s, e, *_ in notes])
        return iv, 440.0 * 2 ** ((np.array([n[2] for n in notes]) - 69) / 12)
    (ri, rp), (ei, ep) = arrays(reference), arrays(estimate)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=onset_tolerance,
                                                                    offset_ratio=None)
    return {"precision": float(p), "recall": float(r), "f_measure": float(f), "reference_notes": len(reference),
            "estimated_notes": len(estimate)}
