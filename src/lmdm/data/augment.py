"""Dynamics augmentation: the same music under slow, drawn-curve-like loudness and brightness moves.

Why: the built-in corpus is loops at a steady level, so within a training window the sketch's
loudness and centroid curves only repeat what the context already says (beat-level wiggles around a
constant), and a model trained on them learns to ignore the sketch. Measured on default model v0.4:
drawn curves swinging between -45 and -10 dB every 1-4 s came back with a loudness correlation of
0.05 (no better than without the sketch). A user's sketch is exactly such a curve: a swell, a
fade, a stop, a filter sweep. `augment_dynamics` puts those moves into copies of the training audio
(`encode_dataset(augment_copies=)`), where only the sketch can tell the model they are coming.

- gain: a piecewise-linear curve in dB through breakpoints 0.5-4 s apart, each at a level drawn from
  [-30, 0] dB, or -60 dB (a stop) with probability `p_stop`. Gain only attenuates: no clipping.
- brightness (with probability `p_filter`): a time-varying low-pass applied frame by frame in the
  STFT domain (sqrt-Hann windows at 50 % overlap reconstruct exactly), magnitude response
  1 / sqrt(1 + (f / fc)^4), fc through breakpoints log-uniform in [150 Hz, 8 kHz].
"""
from __future__ import annotations

import numpy as np

N_FFT = 1024


def _curve(rng: np.random.Generator, seconds: float, draw) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoint times (from 0 to past `seconds`) and a value `draw(rng)` at each."""
    times = [0.0]
    while times[-1] < seconds:
        times.append(times[-1] + float(rng.uniform(0.5, 4.0)))
    times = np.array(times)
    return times, np.array([draw(rng) for _ in times])


def _lowpass_stft(x: np.ndarray, sample_rate: int, cutoff_at) -> np.ndarray:
    """x (channels, samples) low-passed with a cutoff that follows `cutoff_at(seconds) -> Hz`."""
    hop = N_FFT // 2
    n = x.shape[-1]
    frames = int(np.ceil(n / hop)) + 1
    padded = np.pad(x, ((0, 0), (hop, frames * hop + hop - n)))
    window = np.sqrt(np.hanning(N_FFT + 1)[:-1])   # periodic: sqrt-Hann^2 sums to 1 at hop N/2
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    out = np.zeros_like(padded)
    for k in range(frames + 1):
        seg = padded[:, k * hop:k * hop + N_FFT]
        if seg.shape[-1] < N_FFT:
            break
        fc = cutoff_at((k * hop + N_FFT / 2 - hop) / sample_rate)
        gain = 1.0 / np.sqrt(1.0 + (freqs / fc) ** 4)
        out[:, k * hop:k * hop + N_FFT] += np.fft.irfft(np.fft.rfft(seg * window) * gain, N_FFT) * window
    return out[:, hop:hop + n]


def augment_dynamics(audio: np.ndarray, sample_rate: int, rng: np.random.Generator,
                     p_stop: float = 0.15, p_filter: float = 0.5) -> tuple[np.ndarray, dict]:
    """A copy of `audio` (channels, samples) under a random gain curve and, with probability
    `p_filter`, a low-pass sweep. Returns (audio float32, description with the curves drawn)."""
    x = np.asarray(audio, dtype=np.float64)
    seconds = x.shape[-1] / sample_rate
    t_gain, db = _curve(rng, seconds, lambda r: -60.0 if r.random() < p_stop else float(r.uniform(-30.0, 0.0)))
    info = {"gain_db": [[round(float(a), 3), round(float(b), 2)] for a, b in zip(t_gain, db)]}
    if rng.random() < p_filter:
        t_cut, hz = _curve(rng, seconds, lambda r: float(np.exp(r.uniform(np.log(150.0), np.log(8000.0)))))
        x = _lowpass_stft(x, sample_rate, lambda s: np.exp(np.interp(s, t_cut, np.log(hz))))
        info["lowpass_hz"] = [[round(float(a), 3), round(float(b), 1)] for a, b in zip(t_cut, hz)]
    gain = 10.0 ** (np.interp(np.arange(x.shape[-1]) / sample_rate, t_gain, db) / 20.0)
    return (x * gain).astype(np.float32), info
