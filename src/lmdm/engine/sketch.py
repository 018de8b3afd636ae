"""Sketch controls and accompaniment as router input groups (SPEC §4, Sketch2Sound recipe).

Two extra `dit.input_groups` carry time-aligned conditioning, one value per latent frame, each
through its own zero-initialised bias-free projection (so a model without them trained is unchanged):

- `sketch` = [mask | loudness | centroid | pitch]  (SKETCH_CHANNELS = 4). mask 1 where a control
  curve is given. Normalisation (all three roughly in [-1, 1]; 0 is what a dropped control reads):
    loudness  (clip(dB, -80, 0) + 40) / 40           A-weighted dB of `audio.controls` (-40 dB -> 0)
    centroid  (clip(midi, 24, 132) - 78) / 54         spectral centroid on the MIDI scale; silence -> -1
    pitch     voicing * (clip(midi(f0), 24, 96) - 60) / 36, and 0 where unvoiced (f0 = 0)
- `accompaniment` = [mask | accompaniment latents] (io_channels + 1), time-aligned with the window.
  The stream zeroes every frame at or after `target start - cutoff_frames` (see `Stream`).

Utilities used by training and inference: `median_filter` (a random kernel in training, a kernel from
`--sketch-strength` at inference), the groups (`sketch_group`, `accompaniment_group`), and controls from
audio (`controls_from_audio`, at the latent frame rate) or from curve files (`controls_from_curves`).
The training-time dropouts live in `lmdm.train.group_dropout`.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from ..audio.controls import HOP, SAMPLE_RATE, extract_controls, hz_to_midi
from ..errors import ShapeError

SKETCH_NAMES = ("loudness", "centroid", "pitch")
SKETCH_CHANNELS = 1 + len(SKETCH_NAMES)  # [mask | controls]


# -- normalisation ----------------------------------------------------------------------------

def _clip(x, lo: float, hi: float):
    """np.clip in float64, or torch.clamp for a tensor (differentiable: control guidance uses it)."""
    if isinstance(x, torch.Tensor):
        return x.clamp(lo, hi)
    return np.clip(np.asarray(x, dtype=np.float64), lo, hi)


def normalise_loudness(db):
    return (_clip(db, -80.0, 0.0) + 40.0) / 40.0


def normalise_centroid(midi):
    return (_clip(midi, 24.0, 132.0) - 78.0) / 54.0


def normalise_pitch(f0_hz, voicing=None):
    f0 = np.asarray(f0_hz, dtype=np.float64)
    voiced = f0 > 0
    midi = hz_to_midi(np.where(voiced, f0, 440.0))
    p = np.where(voiced, (np.clip(midi, 24.0, 96.0) - 60.0) / 36.0, 0.0)
    if voicing is not None:
        p = p * np.asarray(voicing, dtype=np.float64)
    return p


def sketch_from_controls(controls: dict) -> torch.Tensor:
    """`audio.controls.extract_controls` output -> normalised (3, frames) float32 [loudness, centroid, pitch]."""
    rows = [normalise_loudness(controls["loudness"]), normalise_centroid(controls["centroid"]),
            normalise_pitch(controls["f0"], controls.get("voicing"))]
    return torch.from_numpy(np.stack(rows)).float()


def controls_from_audio(audio, sample_rate: int = SAMPLE_RATE, hop: int = HOP) -> torch.Tensor:
    """Audio (samples,) or (channels, samples) -> normalised controls (3, ceil(samples / hop)),
    one per latent frame when hop is the autoencoder's downsampling ratio."""
    return sketch_from_controls(extract_controls(audio, sample_rate, hop))


def controls_from_curves(source, n_frames: int, frame_rate: float = SAMPLE_RATE / HOP) -> torch.Tensor:
    """Hand-drawn curves -> normalised controls (3, n_frames), linearly interpolated at frame times
    i / frame_rate (held constant past the ends). Units: loudness dB, centroid Hz, pitch Hz (0 = unvoiced).

    `source`: a dict, a .json file ({"loudness": [[seconds, value], ...] or [value per frame], ...})
    or a .csv file with a `time` column (seconds) and any of `loudness`, `centroid`, `pitch`.
    A missing curve reads 0 (what dropout gives)."""
    curves = _read_curves(source)
    unknown = set(curves) - set(SKETCH_NAMES)
    if unknown:
        raise ShapeError(f"unknown control curve(s) {sorted(unknown)}; expected {SKETCH_NAMES}")
    times = np.arange(n_frames) / frame_rate
    out = np.zeros((3, n_frames))
    for i, name in enumerate(SKETCH_NAMES):
        if name not in curves:
            continue
        pts = np.asarray(curves[name], dtype=np.float64)
        if pts.ndim == 1:  # one value per frame
            vals = np.interp(np.arange(n_frames), np.arange(len(pts)), pts)
        elif pts.ndim == 2 and pts.shape[1] == 2:
            order = np.argsort(pts[:, 0])
            vals = np.interp(times, pts[order, 0], pts[order, 1])
        else:
            raise ShapeError(f"curve {name!r} must be values per frame or [[seconds, value], ...]")
        if name == "loudness":
            out[i] = normalise_loudness(vals)
        elif name == "centroid":
            out[i] = normalise_centroid(hz_to_midi(np.maximum(vals, 1e-3)))
        else:
            out[i] = normalise_pitch(vals)
    return torch.from_numpy(out).float()


def _read_curves(source) -> dict:
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text())
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "time" not in rows[0]:
            raise ShapeError(f"{path}: a CSV of curves needs a 'time' column")
        return {k: [[float(r["time"]), float(r[k])] for r in rows if r[k] != ""]
                for k in rows[0] if k != "time"}
    raise ShapeError(f"{path}: control curves must be .json or .csv")


# -- filtering and dropout ----------------------------------------------------------------------

def median_filter(controls: torch.Tensor, kernel: int) -> torch.Tensor:
    """Running median over the last (frame) axis with an odd kernel, edges replicated; kernel 1 is
    the identity. Coarsens a sketch the way Sketch2Sound's training augmentation does."""
    kernel = int(kernel)
    if kernel < 1 or kernel % 2 == 0:
        raise ShapeError(f"median kernel must be a positive odd number, got {kernel}")
    if kernel == 1 or controls.shape[-1] == 0:
        return controls.clone()
    r = kernel // 2
    padded = torch.cat((controls[..., :1].expand(*controls.shape[:-1], r), controls,
                        controls[..., -1:].expand(*controls.shape[:-1], r)), -1)
    return padded.unfold(-1, kernel, 1).median(dim=-1).values


def strength_to_kernel(strength: float, max_kernel: int = 31) -> int:
    """Inference `--sketch-strength` in [0, 1]: 1 follows the sketch exactly (kernel 1), 0 keeps only
    its coarsest shape (max_kernel); odd kernels in between, linear in (1 - strength)."""
    if not 0.0 <= strength <= 1.0:
        raise ShapeError(f"sketch strength must be in [0, 1], got {strength}")
    return 2 * int(round((1.0 - strength) * (max_kernel - 1) / 2)) + 1


def sketch_group(controls: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised controls (batch, 3, frames) -> the `sketch` group (batch, 4, frames): [mask | controls],
    values zeroed where the mask is 0."""
    if controls.dim() != 3 or controls.shape[1] != 3:
        raise ShapeError(f"sketch controls must be (batch, 3, frames), got {tuple(controls.shape)}")
    if mask is None:
        mask = torch.ones(controls.shape[0], 1, controls.shape[-1], dtype=controls.dtype)
    return torch.cat((mask, controls * mask), 1)


def accompaniment_group(latents: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Accompaniment latents (batch, io, frames) -> the `accompaniment` group [mask | latents * mask]."""
    if mask is None:
        mask = torch.ones(latents.shape[0], 1, latents.shape[-1], dtype=latents.dtype)
    return torch.cat((mask, latents * mask), 1)
