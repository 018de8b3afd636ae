"""Reading audio files: any format soundfile reads, as (channels, samples) float32, resampled and
up/down-mixed on request."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DataError


def load_audio(path: str | Path, sample_rate: int | None = None, channels: int | None = None) -> np.ndarray:
    """-> (channels, samples) float32, resampled and up/down-mixed on request."""
    import soundfile as sf
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:   # soundfile raises LibsndfileError, RuntimeError, TypeError... on bad files
        raise DataError(f"cannot read audio {path}: {e}") from e
    audio = audio.T
    if sample_rate and sr != sample_rate:
        try:
            from scipy.signal import resample_poly
        except ImportError as e:
            raise DataError(f"{path} is at {sr} Hz; resampling to {sample_rate} Hz needs scipy") from e
        g = math.gcd(sr, sample_rate)
        audio = resample_poly(audio, sample_rate // g, sr // g, axis=1).astype(np.float32)
    if channels and audio.shape[0] != channels:
        if audio.shape[0] == 1:
            audio = np.repeat(audio, channels, axis=0)
        elif channels == 1:
            audio = audio.mean(axis=0, keepdims=True)
        else:
            raise DataError(f"{path} has {audio.shape[0]} channels; cannot map them to {channels}")
    return np.ascontiguousarray(audio)
