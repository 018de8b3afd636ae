"""The v2 mix: per-track EQ and compression, level, pan, one shared convolution reverb, bus
compression and a limiter, in numpy/scipy (documented here because pedalboard, the obvious
library, is GPL-3: this project keeps copyleft code to optional extras).

- EQ: RBJ-cookbook biquads (scipy `sosfilt`): a high-pass that clears each track's sub range,
  a low shelf, a presence peak and a high shelf, with per-role settings and a little randomness
  per piece.
- Compression: a feed-forward RMS compressor per track on 5.8 ms blocks (ratio and threshold by
  role: drums and bass harder, pads gently), smoothed attack/release, make-up to the track's level.
- Reverb: one room per piece, an impulse response of stereo-decorrelated noise with an
  exponential decay (RT60 by style), darker as it decays (the tail is low-passed by a filter
  that closes with time), a pre-delay, and a few early reflections. Each track's send is
  convolved with it (FFT), so a track's reverb stays in its stem.
- Bus: the v1 bus compressor and limiter (`v1/render.py`) compute one gain curve from the sum and
  apply it to every stem, so `mix == sum(stems)` holds.
"""
from __future__ import annotations

import random

import numpy as np
from scipy import fft as sfft
from scipy.signal import sosfilt

from ..v1.render import BLOCK, CEILING, smooth_gain

SR = 44100
# role -> (high-pass Hz, low shelf (Hz, dB), presence (Hz, dB, Q), high shelf (Hz, dB), comp (threshold dB, ratio),
#          level dBFS, pan width, reverb send range)
ROLE = {
    "drums":  (30, (90, 2.0), (4000, 1.5, 0.9), (9000, 2.0), (-18, 3.0), -20.0, 0.0, (0.06, 0.14)),
    "bass":   (32, (80, 1.5), (900, 1.0, 1.0), (5000, -4.0), (-20, 4.0), -23.5, 0.0, (0.0, 0.02)),
    "chords": (110, (250, -1.5), (2500, 1.0, 0.8), (8000, 1.0), (-22, 2.0), -21.5, 0.45, (0.12, 0.25)),
    "melody": (160, (300, -1.0), (3000, 2.0, 1.0), (9000, 1.5), (-20, 2.5), -21.5, 0.35, (0.12, 0.25)),
    "pad":    (180, (300, -2.0), (2000, -1.0, 0.7), (7000, -2.0), (-26, 1.5), -25.0, 0.0, (0.25, 0.4)),
}


def _biquad(kind: str, f0: float, db: float = 0.0, q: float = 0.707, sr: int = SR) -> np.ndarray:
    """One RBJ-cookbook section as an sos row."""
    a = 10 ** (db / 40)
    w = 2 * np.pi * f0 / sr
    cw, sw = np.cos(w), np.sin(w)
    alpha = sw / (2 * q)
    if kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        den = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:   # shelves, slope 1
        s = 2 * np.sqrt(a) * alpha
        sign = 1 if kind == "lowshelf" else -1
        b = [a * ((a + 1) - sign * (a - 1) * cw + s), sign * 2 * a * ((a - 1) - sign * (a + 1) * cw),
             a * ((a + 1) - sign * (a - 1) * cw - s)]
        den = [(a + 1) + sign * (a - 1) * cw + s, -sign * 2 * ((a - 1) + sign * (a + 1) * cw),
               (a + 1) + sign * (a - 1) * cw - s]
    return np.array(b + den, np.float64) / den[0]


def eq_sos(role: str, rng: random.Random, tone: float = 0.0) -> tuple[np.ndarray, dict]:
    """A track's EQ; `tone` (dB) moves every track's high shelf: a style's darkness or sheen."""
    hp, (lf, lg), (pf, pg, pq), (hf, hg), *_ = ROLE.get(role, ROLE["melody"])
    j = lambda: rng.uniform(-1.5, 1.5)  # noqa: E731  (a piece's own small EQ moves)
    lg, pg, hg = lg + j(), pg + j(), hg + j() + tone
    # the low shelf and the high-pass share one section: a shelf below a high-pass is folded into a
    # second-order high-pass whose resonance (Q) lifts or dips the region just above the cut
    q = float(np.clip(0.707 * 10 ** (lg / 20), 0.5, 1.2))
    sos = np.stack([_biquad("highpass", hp, q=q), _biquad("peak", pf, pg, pq), _biquad("highshelf", hf, hg)])
    return sos, {"highpass_hz": hp, "low_shelf_db": round(lg, 1), "presence_db": round(pg, 1),
                 "high_shelf_db": round(hg, 1)}


def _blocks(x: np.ndarray, reduce: str) -> np.ndarray:
    """Per-block mean power or peak over both channels (the last partial block dropped, repeated)."""
    m = x.shape[-1] // BLOCK * BLOCK
    b = x[:, :m].reshape(x.shape[0], -1, BLOCK)
    out = np.abs(b).max(axis=(0, 2)) if reduce == "peak" else np.einsum("cbk,cbk->b", b, b) / (BLOCK * x.shape[0])
    return np.append(out, out[-1:]) if m < x.shape[-1] else out


def _active_rms(x: np.ndarray) -> float:
    """RMS over the blocks that are not near-silent (a stem that plays half the time is levelled
    by how loud it is when it plays)."""
    power = _blocks(x, "rms")
    active = power[power > power.max() * 1e-4] if power.size else power
    return float(np.sqrt(active.mean())) if active.size else 0.0


def _curve(gain_db: np.ndarray, samples: int) -> np.ndarray:
    """Block gains (dB, one per BLOCK samples, at block centres) -> per-sample linear gain, linearly
    interpolated in the gain domain (a reshape, not np.interp: this runs on every track)."""
    g = (10 ** (gain_db / 20)).astype(np.float32)
    g = np.concatenate([g[:1], g, g[-1:]])
    frac = (np.arange(BLOCK, dtype=np.float32) + 0.5) / BLOCK
    # sample j of block i lies between centre i-1/2 and i+1/2: blend (g[i], g[i+1]) then shift half a block
    left = g[:-1, None] * (1 - frac) + g[1:, None] * frac
    curve = left.reshape(-1)[BLOCK // 2:BLOCK // 2 + samples]
    # _blocks repeats the last block for a partial one, so the curve may need one more block's worth
    if curve.size < samples:
        curve = np.pad(curve, (0, samples - curve.size), mode="edge")
    return curve


def _compressor(x: np.ndarray, threshold_db: float = -14.0, ratio: float = 2.0) -> np.ndarray:
    level = 10 * np.log10(_blocks(x, "rms") + 1e-12)
    reduction = np.minimum(0.0, (threshold_db - level) * (1 - 1 / ratio))
    return _curve(smooth_gain(reduction, 0.01, 0.15, SR), x.shape[-1])


def _limiter(x: np.ndarray) -> np.ndarray:
    need = 20 * np.log10(np.minimum(1.0, CEILING / np.maximum(_blocks(x, "peak"), 1e-9)))
    padded = np.pad(need, 1, mode="edge")        # look one block ahead and behind
    need = np.minimum(need, np.minimum(padded[:-2], padded[2:]))
    return _curve(smooth_gain(need, 1e-4, 0.05, SR), x.shape[-1])


def compress(x: np.ndarray, threshold_db: float, ratio: float) -> np.ndarray:
    """Track compressor with make-up gain (the track is brought to a nominal level first)."""
    level = _active_rms(x)
    if level <= 0:
        return x
    pre = 10 ** (-14 / 20) / level
    return x * _compressor(x * np.float32(pre), threshold_db + 8, ratio)


def _wet(x: np.ndarray, spectrum: np.ndarray, size: int) -> np.ndarray:
    """Reverb of a (2, n) send: folded to mono at half rate (pairs averaged: a room's tail above
    11 kHz is negligible), convolved with the stereo IR by FFT, back to full rate linearly."""
    n = x.shape[-1]
    end = n - n % 2
    mono = (x[0, 0:end:2] + x[0, 1:end:2] + x[1, 0:end:2] + x[1, 1:end:2]) * np.float32(0.5)
    half = sfft.irfft(sfft.rfft(mono, size)[None] * spectrum, size, axis=1)[:, :end // 2].astype(np.float32)
    wet = np.empty((2, n), np.float32)
    wet[:, 0:end:2] = half
    wet[:, 1:end - 1:2] = 0.5 * (half[:, :-1] + half[:, 1:])
    wet[:, end - 1:] = half[:, -1:]
    return wet


def impulse_response(rt60: float, rng: np.random.Generator, predelay: float = 0.015) -> np.ndarray:
    """(2, n) float32: a stereo room. Decorrelated noise under an exponential decay, split into
    bands that decay at different rates (highs die first), plus a few early reflections."""
    rate = SR // 2                           # the reverb runs at half rate (see _wet)
    n = int((rt60 + predelay) * rate)
    t = np.arange(n - int(predelay * rate)) / rate
    noise = rng.standard_normal((2, t.size)).astype(np.float32)
    from scipy.signal import butter
    lp = butter(2, 2500, fs=rate, output="sos")
    low = sosfilt(lp, noise, axis=1).astype(np.float32)
    high = noise - low
    ir = low * np.exp(-6.91 * t / rt60) + high * np.exp(-6.91 * t / (0.45 * rt60))
    ir = np.concatenate([np.zeros((2, n - t.size), np.float32), ir.astype(np.float32)], axis=1)
    for k in range(6):   # early reflections
        at = int((predelay + rng.uniform(0.003, 0.04)) * rate)
        ir[k % 2, at] += rng.uniform(0.3, 0.7) * (1 if rng.random() < 0.5 else -1)
    return (ir / np.sqrt(np.sum(ir ** 2) / 2)).astype(np.float32)


def mixdown(raw: dict[str, np.ndarray], rng: random.Random, rt60: tuple[float, float] = (0.8, 1.8),
            tone: float = 0.0):
    """raw dry stems (2, n) -> (stems, mix, info), mix == sum(stems), limited to -1 dBFS."""
    n = next(iter(raw.values())).shape[-1]
    room = rng.uniform(*rt60)
    ir = impulse_response(room, np.random.default_rng(rng.randrange(2 ** 32)))
    size = sfft.next_fast_len(n // 2 + ir.shape[1], real=True)
    spectrum = sfft.rfft(ir, size, axis=1)
    stems, info = {}, {}
    for name, audio in raw.items():
        *_, (thr, ratio), level, width, send_range = ROLE.get(name, ROLE["melody"])
        sos, eq = eq_sos(name, rng, tone)
        x = sosfilt(sos.astype(np.float32), audio, axis=1).astype(np.float32, copy=False)
        x = compress(x, thr, ratio)
        level += rng.uniform(-1.5, 1.5)
        gain = 10 ** (level / 20) / max(_active_rms(x), 1e-6)
        pan = rng.uniform(-1, 1) * width
        theta = (pan + 1) * np.pi / 4         # equal-power balance, unity at the centre
        lr = np.array([np.cos(theta), np.sin(theta)], np.float32)[:, None] * np.float32(np.sqrt(2))
        x = x * (np.float32(gain) * lr)
        send = rng.uniform(*send_range)
        if send > 0:
            x = x + _wet(x * np.float32(send), spectrum, size)
        stems[name] = x
        info[name] = {"gain_db": round(20 * np.log10(gain), 2), "pan": round(pan, 3), "reverb": round(send, 3),
                      "eq": eq, "compressor": {"threshold_db": thr, "ratio": ratio}}
    mix = sum(stems.values())
    target = 10 ** (rng.uniform(-16.0, -13.0) / 20)
    pre = target / max(_active_rms(mix), 1e-6)
    curve = _compressor(mix * np.float32(pre)) * np.float32(pre)
    curve *= _limiter(mix * curve)
    fade = min(n, int(0.01 * SR))
    curve[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    for v in stems.values():
        v *= curve
    mix = sum(stems.values())
    peak = max([float(np.abs(mix).max())] + [float(np.abs(s).max()) for s in stems.values()])
    if peak > CEILING:
        for v in stems.values():
            v *= np.float32(CEILING / peak)
        mix = sum(stems.values())
    return stems, mix.astype(np.float32), {"rt60": round(room, 2), "stems": info}
