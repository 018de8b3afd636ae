"""The audio arithmetic of the live modes: upstream audio brought to the model's channels and rate,
the dry line that lines the input up with the output, the dry/wet mix, and the input cutoff.

numpy only, no torch and no session state: the session (`session.py`) owns the buffers and calls these.
"""
from __future__ import annotations

import math

import numpy as np


class DryLine:
    """The input as it lines up with the output: input sample i sits at output (stream) sample origin + i."""

    def __init__(self, origin: int, channels: int):
        self.origin, self.start = origin, 0
        self.buf = np.zeros((channels, 0), np.float32)

    def push(self, audio: np.ndarray) -> None:
        self.buf = np.concatenate((self.buf, audio), 1)

    def take(self, pos: int, n: int) -> np.ndarray:
        """Input for output samples [pos, pos + n) (zeros where there is none); older input is dropped."""
        i = pos - self.origin
        out = np.zeros((self.buf.shape[0], n), np.float32)
        lo, hi = max(i, self.start), min(i + n, self.start + self.buf.shape[1])
        if hi > lo:
            out[:, lo - i:hi - i] = self.buf[:, lo - self.start:hi - self.start]
        drop = min(max(0, i + n - self.start), self.buf.shape[1])
        self.buf, self.start = self.buf[:, drop:], self.start + drop
        return out


class Resampler:
    """Linear interpolation that keeps its phase across frames (upstream audio at another rate)."""

    def __init__(self, src: int, dst: int, channels: int):
        self.src, self.step, self.pos = src, src / dst, 1.0  # pos: next output's position in [last | x]
        self.last = np.zeros((channels, 1), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.concatenate((self.last, x), 1)  # index 0 = the previous frame's last sample
        n = x.shape[1] - 1
        count = int(math.floor((n - self.pos) / self.step)) + 1 if self.pos <= n else 0
        t = self.pos + np.arange(count) * self.step
        grid = np.arange(n + 1)
        y = np.stack([np.interp(t, grid, c) for c in x]) if count else np.zeros((x.shape[0], 0))
        self.pos += count * self.step - n
        self.last = x[:, -1:]
        return y.astype(np.float32)


def match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """(c, n) → (channels, n): a different channel count goes through mono."""
    if audio.shape[0] == channels:
        return audio
    mono = audio.mean(axis=0, keepdims=True) if audio.shape[0] > 1 else audio
    return np.repeat(mono, channels, axis=0)


def mix(wet: np.ndarray, wet_gain: float, dry: DryLine | None, dry_gain: float, pos: int) -> np.ndarray:
    """wet_gain * generated + dry_gain * the input lined up with output samples [pos, pos + n)."""
    out = wet * wet_gain
    if dry is not None and dry_gain > 0:
        out = out + dry_gain * dry.take(pos, wet.shape[1])
    return out.astype(np.float32, copy=False)


def default_cutoff(mode: str, block_frames: int, lookahead_frames: int, block_causal: bool) -> int:
    """Latent frames between the newest input the model sees and the block it generates.
    Accompaniment: one block (Stream's default), but under half a block for block-causal models
    (their cache would otherwise see the input only at a bootstrap); never under the encoder's
    look-ahead. Generative delay: DelayStream's default (the smallest multiple of the block)."""
    B, need = block_frames, lookahead_frames
    if mode == "generative_delay":
        return B * max(1, math.ceil(need / B))
    if block_causal:
        return min(max(need, B // 2), max(B - 1, 0)) if need < B else need
    return max(B, need)
