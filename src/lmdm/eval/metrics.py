"""Evaluation metrics that need no downloaded weights: Fréchet distance with a bootstrap interval,
drift over time, prompt-transition timing and continuity, and control adherence.

Every function takes plain arrays (embeddings, audio, control curves), so any embedder plugs in:
lmdm's own tagger, or a user's local CLAP / VGGish checkpoint wrapped as `audio -> (n, dim)`.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from ..errors import LMDMError


class EvalError(LMDMError, ValueError):
    """Inputs that a metric cannot be computed on (too few samples, wrong shapes)."""


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise EvalError(f"embeddings must be (n >= 2, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EvalError("embeddings contain NaN or infinite values")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) between two sets of embeddings."""
    (mu_a, s_a), (mu_b, s_b) = _stats(a), _stats(b)
    if mu_a.shape != mu_b.shape:
        raise EvalError(f"embedding widths differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as the FID code does
        eps = np.eye(s_a.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    return float(max(0.0, ((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean)))


def frechet_with_interval(a: np.ndarray, b: np.ndarray, bootstrap: int = 200, seed: int = 0,
                          level: float = 0.9) -> dict[str, float]:
    """FD plus a bootstrap confidence interval (resampling both sets with replacement).

    FD is biased upwards for small sets (the covariance estimates are noisy), so numbers are
    comparable only at equal set sizes: the interval shows how far apart two models must be."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a), np.asarray(b)
    samples = [frechet_distance(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
               for _ in range(bootstrap)]
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return {"fd": frechet_distance(a, b), "low": float(lo), "high": float(hi), "n_a": len(a), "n_b": len(b)}


def windows(audio: np.ndarray, sample_rate: int, seconds: float = 10.0) -> list[np.ndarray]:
    """Successive non-overlapping windows (channels, samples) of a stream; a short tail is dropped."""
    n = int(round(seconds * sample_rate))
    return [audio[..., i:i + n] for i in range(0, audio.shape[-1] - n + 1, n)]


def drift_curve(window_embeddings: list[np.ndarray], reference: np.ndarray) -> list[float]:
    """FD of the k-th window of every stream against the reference set, for k = 0, 1, ...

    window_embeddings[k] holds one embedding per stream for window k (shape (streams, dim)).
    A stream that degrades over time gives a rising curve."""
    return [frechet_distance(w, reference) for w in window_embeddings]


def drift_ratio(curve: list[float]) -> float:
    """Late windows against the first: mean of the second half divided by the first window."""
    if len(curve) < 2 or curve[0] <= 0:
        raise EvalError(f"a drift ratio needs at least 2 windows and a positive first value, got {curve}")
    late = curve[len(curve) // 2:]
    return float(np.mean(late) / curve[0])


def context_memory(primed: list[np.ndarray], unprimed: list[np.ndarray], reference: np.ndarray) -> list[float]:
    """How much a stream still depends on how it began, window by window: for each window k, the
    mean distance between the embeddings of a primed stream and the same stream (same prompt and
    seed) without the priming, divided by the mean distance between two different reference pieces.

    primed[k] / unprimed[k]: (streams, dim) for window k, row i the same request. About 0: the
    stream has forgotten its priming (the model ignores its context, or has "locked" onto the
    prompt); about 1: as different as two pieces. A model that continues what it hears stays high."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2 or len(ref) < 2:
        raise EvalError(f"context memory needs >= 2 reference embeddings, got shape {ref.shape}")
    d = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    scale = d[np.triu_indices(len(ref), 1)].mean()
    if not scale > 0:
        raise EvalError("the reference embeddings are all identical: no scale for context memory")
    out = []
    for p, u in zip(primed, unprimed):
        p, u = np.asarray(p, dtype=np.float64), np.asarray(u, dtype=np.float64)
        if p.shape != u.shape:
            raise EvalError(f"primed and unprimed windows differ in shape: {p.shape} vs {u.shape}")
        out.append(float(np.linalg.norm(p - u, axis=-1).mean() / scale))
    return out


def spectral_flux(audio: np.ndarray, hop: int = 1024, n_fft: int = 2048) -> np.ndarray:
    """Positive spectral flux per hop of a mono mix (log magnitude), a novelty curve."""
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(0) if x.ndim == 2 else x
    if len(x) < n_fft:
        raise EvalError(f"audio shorter than one analysis window ({len(x)} < {n_fft} samples)")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.log1p(np.abs(np.fft.rfft(frames, axis=-1)))
    return np.concatenate(([0.0], np.maximum(mag[1:] - mag[:-1], 0).sum(-1)))


def switch_discontinuity(audio: np.ndarray, switch_sample: int, hop: int = 1024) -> float:
    """Flux at a prompt switch relative to the stream's typical flux (median): ~1 is seamless,
    large values are an audible jump."""
    flux = spectral_flux(audio, hop)
    k = int(round(switch_sample / hop))
    near = flux[max(0, k - 2):k + 3]
    typical = np.median(flux[1:]) + 1e-9
    return float(near.max() / typical)


def blocks_until_match(scores_a: np.ndarray, scores_b: np.ndarray, switch_block: int) -> int | None:
    """After a switch from prompt A to B at `switch_block`, how many blocks until a classifier's
    score for B exceeds its score for A and stays there; None if it never does."""
    a, b = np.asarray(scores_a), np.asarray(scores_b)
    ahead = b > a
    for k in range(switch_block, len(a)):
        if ahead[k:].all():
            return k - switch_block
    return None


def detect_switch(embeddings: np.ndarray) -> int:
    """The block index where a sequence of per-block embeddings changes most (largest distance
    between the means before and after): finds a planted prompt switch."""
    e = np.asarray(embeddings, dtype=np.float64)
    if len(e) < 3:
        raise EvalError("need at least 3 blocks to locate a switch")
    gaps = [np.linalg.norm(e[:k].mean(0) - e[k:].mean(0)) * np.sqrt(k * (len(e) - k) / len(e))
            for k in range(1, len(e))]
    return int(np.argmax(gaps)) + 1


def control_adherence(target: np.ndarray, achieved: np.ndarray, voiced: np.ndarray | None = None) -> dict:
    """Pearson correlation and mean absolute error between a control curve and the one measured
    on the output (frames where `voiced` is False are ignored, e.g. silence for the centroid)."""
    t, a = np.asarray(target, dtype=np.float64), np.asarray(achieved, dtype=np.float64)
    n = min(len(t), len(a))
    t, a = t[:n], a[:n]
    if voiced is not None:
        keep = np.asarray(voiced[:n], dtype=bool)
        t, a = t[keep], a[keep]
    if len(t) < 3 or t.std() == 0 or a.std() == 0:
        return {"correlation": float("nan"), "mae": float(np.abs(t - a).mean()) if len(t) else float("nan")}
    return {"correlation": float(np.corrcoef(t, a)[0, 1]), "mae": float(np.abs(t - a).mean())}
