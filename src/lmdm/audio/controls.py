"""Sketch controls at the latent frame rate: loudness, brightness and pitch, one value per frame.

Frame i covers samples [i * hop, (i + 1) * hop), the span of latent frame i for an autoencoder
with downsampling ratio `hop` (44100 / 2048 ≈ 21.53 frames/s by default); its analysis window is
centred on that span, and a clip of n samples has ceil(n / hop) frames, as many as the encoder
emits. Everything is vectorised numpy over frames, cheap enough to run on live input.

- loudness: A-weighted power in dB relative to full scale (a full-scale 1 kHz sine reads -3 dB),
  the A curve (IEC 61672) applied to an STFT power spectrum; floor -100 dB.
- centroid: the spectral centroid (magnitude-weighted mean frequency) on a MIDI-like log scale,
  12 * log2(f / 440) + 69; 0 for silent frames (loudness below -80 dB).
- f0 / voicing: YIN (de Cheveigné & Kawahara 2002): cumulative-mean-normalised difference
  function via FFT, first dip under the threshold, parabolic refinement. f0 in Hz (0 when
  unvoiced); voicing = 1 - the dip's depth, in [0, 1].
"""
from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 44100
HOP = 2048
NAMES = ("loudness", "centroid", "f0", "voicing")
SILENCE_DB = -80.0


def to_mono(audio) -> np.ndarray:
    """(samples,), (channels, samples) numpy or torch -> float64 mono numpy."""
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().float().numpy()
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {x.shape}")
    return x


def num_frames(samples: int, hop: int = HOP) -> int:
    return math.ceil(samples / hop)


def frame_signal(x: np.ndarray, hop: int, window: int) -> np.ndarray:
    """(ceil(n / hop), window) view: frame i is centred on [i * hop, (i + 1) * hop)."""
    n = num_frames(len(x), hop)
    left = window // 2 - hop // 2
    right = max(0, (n - 1) * hop + window - left - len(x))
    padded = np.pad(x, (max(left, 0), right))[max(-left, 0):]
    return np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:n]


def power_spectrum(frames: np.ndarray) -> np.ndarray:
    """One-sided power per bin, scaled so that the bins sum to the frame's windowed mean square."""
    w = np.hanning(frames.shape[1] + 2)[1:-1]
    spec = np.abs(np.fft.rfft(frames * w, axis=1)) ** 2 / (frames.shape[1] * np.sum(w ** 2))
    spec[:, 1:-1] *= 2
    return spec


def a_weighting_db(freqs: np.ndarray) -> np.ndarray:
    f2 = np.asarray(freqs, dtype=np.float64) ** 2
    num = 12194.0 ** 2 * f2 ** 2
    den = (f2 + 20.6 ** 2) * np.sqrt((f2 + 107.7 ** 2) * (f2 + 737.9 ** 2)) * (f2 + 12194.0 ** 2)
    with np.errstate(divide="ignore"):
        return 20 * np.log10(np.maximum(num / den, 1e-20)) + 2.0


def hz_to_midi(f):
    return 12 * np.log2(np.asarray(f) / 440.0) + 69


def loudness_and_centroid(audio, sample_rate: int = SAMPLE_RATE, hop: int = HOP) -> tuple[np.ndarray, np.ndarray]:
    x = to_mono(audio)
    spec = power_spectrum(frame_signal(x, hop, 2 * hop))
    freqs = np.fft.rfftfreq(2 * hop, 1.0 / sample_rate)
    weighted = spec @ (10 ** (a_weighting_db(freqs) / 10))
    loud = 10 * np.log10(np.maximum(weighted, 1e-10))
    mag = np.sqrt(spec)
    centre = (mag @ freqs) / np.maximum(mag.sum(axis=1), 1e-12)
    centroid = np.where(loud > SILENCE_DB, hz_to_midi(np.maximum(centre, 1e-3)), 0.0)
    return loud.astype(np.float32), centroid.astype(np.float32)


def yin(audio, sample_rate: int = SAMPLE_RATE, hop: int = HOP, fmin: float = 40.0, fmax: float = 1600.0,
        threshold: float = 0.15, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (f0 Hz, voicing), one per frame; f0 is 0 where the frame is unvoiced."""
    x = to_mono(audio)
    tau_max = int(math.ceil(sample_rate / fmin))
    tau_min = max(2, int(sample_rate / fmax))
    w = window or max(hop, tau_max + 1)
    frames = frame_signal(x, hop, w + tau_max)              # (T, w + tau_max)
    size = 1 << int(math.ceil(math.log2(2 * (w + tau_max))))
    head = np.fft.rfft(frames[:, :w], size, axis=1)
    full = np.fft.rfft(frames, size, axis=1)
    r = np.fft.irfft(np.conj(head) * full, size, axis=1)[:, : tau_max + 1]   # Σ x_j x_{j+τ}, j < w
    cs = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    energy_tau = cs[:, taus + w] - cs[:, taus]
    d = np.maximum(cs[:, w:w + 1] + energy_tau - 2 * r, 0.0)
    d[:, 0] = 0.0
    cmnd = np.ones_like(d)
    cumulative = np.cumsum(d[:, 1:], axis=1)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cumulative, 1e-12)
    cmnd[:, :tau_min] = 1.0
    # first dip under the threshold, then the minimum before twice that lag (never an octave down)
    below = cmnd < threshold
    first = np.where(below.any(axis=1), below.argmax(axis=1), np.argmin(cmnd, axis=1))
    masked = np.where((taus[None] >= first[:, None]) & (taus[None] < 2 * first[:, None]), cmnd, np.inf)
    best = np.clip(np.argmin(masked, axis=1), 1, tau_max - 1)
    rows = np.arange(len(frames))
    a, b, c = cmnd[rows, best - 1], cmnd[rows, best], cmnd[rows, best + 1]
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    period = best + np.clip(shift, -1, 1)
    depth = np.minimum(b, 1.0)
    energy = cs[:, w] / w
    voiced = (depth < threshold) & (energy > 1e-8)
    f0 = np.where(voiced, sample_rate / period, 0.0)
    return f0.astype(np.float32), np.clip(1.0 - depth, 0.0, 1.0).astype(np.float32)


def extract_controls(audio, sample_rate: int = SAMPLE_RATE, hop: int = HOP) -> dict[str, np.ndarray]:
    """{'loudness', 'centroid', 'f0', 'voicing'}: float32 arrays of ceil(samples / hop) frames."""
    loud, centroid = loudness_and_centroid(audio, sample_rate, hop)
    f0, voicing = yin(audio, sample_rate, hop)
    return {"loudness": loud, "centroid": centroid, "f0": f0, "voicing": voicing}


def controls_array(controls: dict[str, np.ndarray]) -> np.ndarray:
    """Stack in NAMES order -> (4, frames) float32, the layout stored next to latents."""
    return np.stack([controls[k] for k in NAMES]).astype(np.float32)
