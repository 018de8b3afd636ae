"""The beat clock: a router input group that tells the model where the beats fall.

A prompt's "110 BPM" alone does not make a small model keep 110 BPM: trained on text, the default
model plays its own ~105-135 BPM beat whatever the caption asks (model card, v0.6). The `beat`
group gives every latent frame the phase of a beat grid, so tempo becomes a time-aligned input
like a sketch:

    beat = [mask | sin 2πφ | cos 2πφ]   (BEAT_CHANNELS = 3), φ = beats elapsed at the frame's start

mask 1 where a clock runs, all zero where none does (free tempo; what training feeds when it drops
the clock). The synthetic corpus starts every piece on a downbeat at t = 0, so in training φ of
frame i is i · frame_seconds · bpm / 60 exactly. A stream keeps one `BeatClock` whose tempo may
change mid-stream: the phase stays continuous at the change, so the beat does not jump.
"""
from __future__ import annotations

import math
import re

import torch

from ..errors import ConfigError

BEAT_CHANNELS = 3
MIN_BPM, MAX_BPM = 30.0, 300.0
_BPM = re.compile(r"(\d{2,3}(?:\.\d+)?)\s*bpm\b", re.IGNORECASE)


def bpm_from_text(text: str) -> float | None:
    """The tempo a prompt asks for ("... 110 BPM", "(92 bpm)"), or None when it names none."""
    m = _BPM.search(text or "")
    if m is None:
        return None
    bpm = float(m.group(1))
    return bpm if MIN_BPM <= bpm <= MAX_BPM else None


def bpm_from_prompts(prompts) -> float | None:
    """A blend's tempo: that of its heaviest part that names one (a plain string is one part)."""
    parts = [(prompts, 1.0)] if isinstance(prompts, str) else list(prompts)
    for text, _ in sorted(parts, key=lambda p: -p[1]):
        bpm = bpm_from_text(text)
        if bpm is not None:
            return bpm
    return None


def with_tempo(text: str, bpm: float) -> str:
    """`text` asking for `bpm`: a tempo it names is replaced, otherwise one is appended."""
    named = f"{bpm:g} BPM"
    return _BPM.sub(named, text, count=1) if _BPM.search(text) else f"{text}, {named}"


def check_bpm(bpm: float) -> float:
    bpm = float(bpm)
    if not (MIN_BPM <= bpm <= MAX_BPM) or math.isnan(bpm):
        raise ConfigError(f"bpm must be between {MIN_BPM:g} and {MAX_BPM:g}, got {bpm}")
    return bpm


def beat_group(phase: torch.Tensor, on: torch.Tensor | bool = True) -> torch.Tensor:
    """Phases in beats (..., n) -> the group (..., 3, n); frames where `on` (..., n) is False are all zero."""
    angle = 2 * math.pi * phase.double()
    group = torch.stack((torch.ones_like(angle), torch.sin(angle), torch.cos(angle)), -2).float()
    if isinstance(on, torch.Tensor):
        return group * on.float().unsqueeze(-2)
    return group if on else torch.zeros_like(group)


def grid_phase(first_frame: int, n: int, bpm: float, frame_seconds: float) -> torch.Tensor:
    """Beats elapsed at the start of frames first_frame .. first_frame + n - 1 of a piece that starts on a beat."""
    frames = torch.arange(first_frame, first_frame + n, dtype=torch.float64)
    return frames * (frame_seconds * bpm / 60.0)


class BeatClock:
    """A stream's beat grid: tempo changes take effect at a frame, keeping the phase continuous there.
    `bpm` None stops the clock from that frame on (the group reads all zero). `delay_frames`: the group
    shows the model the grid that many frames late (`ModelConfig.beat_lead_frames`: a model that learned
    to play its beats ahead of its clock then lands them on the grid); `phase_at` stays the grid's own."""

    def __init__(self, frame_seconds: float, bpm: float | None = None, delay_frames: float = 0.0):
        self.frame_seconds = frame_seconds
        self.delay_frames = float(delay_frames)
        self.segments: list[tuple[int, float, float | None]] = []   # (from frame, phase there, bpm)
        self.set_bpm(bpm, 0)

    @property
    def bpm(self) -> float | None:
        return self.segments[-1][2]

    def phase_at(self, frame: int) -> float:
        return self._phase(frame, self._segment(frame))

    def _phase(self, frame: int, segment) -> float:
        start, phase, bpm = segment
        return phase + (frame - start) * self.frame_seconds * (bpm or 0.0) / 60.0

    def set_bpm(self, bpm: float | None, frame: int) -> None:
        bpm = None if bpm is None else check_bpm(bpm)
        if self.segments and bpm == self.bpm:
            return
        phase = self.phase_at(frame) if self.segments else 0.0
        self.segments = [s for s in self.segments if s[0] < frame] + [(frame, phase, bpm)]

    def _segment(self, frame: int):
        for seg in reversed(self.segments):
            if seg[0] <= frame:
                return seg
        return self.segments[0]

    def group(self, start: int, n: int) -> torch.Tensor:
        """The group (3, n) for absolute frames start .. start + n - 1."""
        phase, on = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.bool)
        for i in range(n):
            frame = start + i - self.delay_frames      # the whole grid, tempo changes too, shown late
            segment = self._segment(frame)
            phase[i], on[i] = self._phase(frame, segment), segment[2] is not None
        return beat_group(phase, on)
