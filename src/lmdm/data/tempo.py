"""Tempo estimation: onset strength, then autocorrelation weighted by a tempo prior.

Used to check the synthetic corpus (its rendered audio must show the tempo in its metadata) and
by evaluation (does generated audio keep the prompted tempo?). Like most beat trackers it can be
off by a simple ratio (double / half time, or 3:2 in triplet-heavy music); `tempo_matches`
accepts those, as tempo-estimation benchmarks' "accuracy 2" does.
"""
from __future__ import annotations

import math

import numpy as np

from .controls import frame_signal, power_spectrum, to_mono

OCTAVE_RATIOS = (1.0, 2.0, 0.5, 1.5, 2.0 / 3.0)


def _band_matrix(n_bins: int, sample_rate: int, bands: int, fmin: float = 30.0, fmax: float = 11000.0):
    """(n_bins, bands) triangular filters on a log-frequency axis (a poor man's mel bank)."""
    freqs = np.linspace(0, sample_rate / 2, n_bins)
    edges = np.geomspace(fmin, min(fmax, sample_rate / 2), bands + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T


def onset_strength(audio, sample_rate: int, hop: int = 512, n_fft: int = 2048, bands: int = 40
                   ) -> tuple[np.ndarray, float]:
    """Spectral flux of log band energies -> (envelope, frames per second)."""
    x = to_mono(audio)
    spec = power_spectrum(frame_signal(x, hop, n_fft))
    energy = spec @ _band_matrix(spec.shape[1], sample_rate, bands)
    logs = np.log10(np.maximum(energy, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)                   # 80 dB range, like a dB spectrogram
    flux = np.maximum(0.0, np.diff(logs, axis=0)).mean(axis=1)
    envelope = np.concatenate([[0.0], flux])
    # remove the slowly varying part, so sustained loudness changes do not look like beats
    k = max(1, int(round(0.4 * sample_rate / hop)))
    local = np.convolve(envelope, np.ones(k) / k, mode="same")
    return np.maximum(envelope - local, 0.0), sample_rate / hop


def tempo_scores(envelope: np.ndarray, frame_rate: float, bpm_range=(40.0, 240.0), prior_bpm: float = 120.0,
                 prior_octaves: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(bpm per lag, score) over the lags inside `bpm_range`. The score of a beat period L sums
    the autocorrelation at L, 2L, 3L and 4L (weights 1/k): a real beat recurs at the half-bar and
    bar, while a syncopated figure (the dotted eighths of funk or a bossa clave, 3/4 of a beat)
    does not, so it no longer wins. Then a log-normal prior around `prior_bpm` picks the octave."""
    e = envelope - envelope.mean()
    size = 1 << int(math.ceil(math.log2(2 * len(e))))
    ac = np.fft.irfft(np.abs(np.fft.rfft(e, size)) ** 2, size)[: len(e)]
    ac = np.maximum(ac / max(ac[0], 1e-12), 0.0)
    lags = np.arange(1, len(e))
    bpms = 60.0 * frame_rate / lags
    keep = (bpms >= bpm_range[0]) & (bpms <= bpm_range[1])
    lags, bpms = lags[keep], bpms[keep]
    score = np.zeros(len(lags))
    for k in (1, 2, 3, 4):
        inside = k * lags < len(ac)
        score[inside] += ac[k * lags[inside]] / k
    score += 0.5 * np.interp(lags / 2, np.arange(len(ac)), ac)   # eighth-note subdivision
    prior = np.exp(-0.5 * (np.log2(bpms / prior_bpm) / prior_octaves) ** 2)
    return bpms, score * prior


def estimate_tempo(audio, sample_rate: int, bpm_range=(40.0, 240.0), prior_bpm: float = 120.0,
                   hop: int = 512) -> float:
    """The most likely tempo in BPM (0.0 for silence or audio shorter than two beats)."""
    envelope, rate = onset_strength(audio, sample_rate, hop)
    if not envelope.any():
        return 0.0
    bpms, scores = tempo_scores(envelope, rate, bpm_range, prior_bpm)
    if len(scores) < 3:
        return 0.0
    i = int(np.argmax(scores))
    lag = 60.0 * rate / bpms[i]
    if 0 < i < len(scores) - 1:   # parabolic refinement of the peak lag (lags ascend as bpm descends)
        a, b, c = scores[i - 1], scores[i], scores[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            lag += 0.5 * (a - c) / denom
    return float(60.0 * rate / lag)


def tempo_matches(estimate: float, reference: float, tolerance: float = 0.04,
                  ratios=OCTAVE_RATIOS) -> bool:
    """True when `estimate` is within `tolerance` (relative) of reference × one of `ratios`."""
    return any(abs(estimate / (reference * r) - 1.0) <= tolerance for r in ratios) if estimate > 0 else False
