"""Tempo estimation: onset strength, two ways of finding its periodicity, then a learned choice
among their tempi and simple ratios.

Used to check the synthetic corpus (its rendered audio must show the tempo in its metadata) and
by evaluation (does generated audio keep the prompted tempo?). The first pass (`tempo_scores`) finds
the strongest periodicity by autocorrelation, but like most beat trackers it can land on double or
half time (drum and bass's snare every two beats, a one-drop's hats on the eighths) or on 3:2, and on
a decoder's smeared onsets its autocorrelation can peak at no simple ratio of the beat at all (the
default model's 79-BPM lo-fi stream: 131). The Fourier tempogram (`fourier_tempogram`) instead asks
how much of the onset energy falls at one phase of a steady beat, over the whole clip, so a beat held
for 30 s stands out even where single onsets are soft. `estimate_tempo` takes both tempi and their
simple ratios as candidates and picks one with a linear model of their autocorrelations and tempogram
values in three frequency bands (kick, snare, hats) plus a log-tempo prior, fitted on the built-in
corpus's own audio (`tempo_reader.json`, written by `scripts/fit_tempo_reader.py`; its "fit" entry
records the corpus and the accuracy). `tempo_matches` still accepts the ratios, as tempo-estimation
benchmarks' "accuracy 2" does.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np

from ..audio.controls import frame_signal, power_spectrum, to_mono

OCTAVE_RATIOS = (1.0, 2.0, 0.5, 1.5, 2.0 / 3.0)
READER_PATH = Path(__file__).with_name("tempo_reader.json")
# band groups of the 40 log-spaced bands: ~30-200 Hz (kick, bass), ~200 Hz-2.5 kHz (snare, chords),
# ~2.5-11 kHz (hats, cymbals), and all of them
BAND_GROUPS = {"low": slice(0, 13), "mid": slice(13, 30), "high": slice(30, 40), "all": slice(0, 40)}
# where each group's autocorrelation is read, in beat periods: the eighth note, the beat, two, three
# and four beats, the dotted quarter and the dotted eighth
LAG_MULTIPLES = (0.5, 1.0, 2.0, 3.0, 4.0, 1.5, 0.75)
# where each group's Fourier tempogram is read, in multiples of the candidate's tempo
TEMPOGRAM_MULTIPLES = (1.0, 2.0)
SAME_TEMPO = 0.03      # candidates closer than this (relative) are one candidate


def _band_matrix(n_bins: int, sample_rate: int, bands: int, fmin: float = 30.0, fmax: float = 11000.0):
    """(n_bins, bands) triangular filters on a log-frequency axis (a poor man's mel bank)."""
    freqs = np.linspace(0, sample_rate / 2, n_bins)
    edges = np.geomspace(fmin, min(fmax, sample_rate / 2), bands + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T


def analysis_hop(sample_rate: int) -> int:
    """512 samples at 44.1 kHz and the same ~11.6 ms at any other rate."""
    return max(64, int(round(512 * sample_rate / 44100)))


def band_flux(audio, sample_rate: int, hop: int | None = None, n_fft: int | None = None, bands: int = 40
              ) -> tuple[np.ndarray, float]:
    """Per-band spectral flux of log band energies -> ((frames, bands), frames per second)."""
    hop = hop or analysis_hop(sample_rate)
    x = to_mono(audio)
    spec = power_spectrum(frame_signal(x, hop, n_fft or 4 * hop))
    energy = spec @ _band_matrix(spec.shape[1], sample_rate, bands)
    logs = np.log10(np.maximum(energy, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)                   # 80 dB range, like a dB spectrogram
    flux = np.maximum(0.0, np.diff(logs, axis=0))
    return np.concatenate([np.zeros((1, bands)), flux]), sample_rate / hop


def _detrend(envelope: np.ndarray, rate: float) -> np.ndarray:
    """Remove the slowly varying part, so sustained loudness changes do not look like beats."""
    k = max(1, int(round(0.4 * rate)))
    local = np.convolve(envelope, np.ones(k) / k, mode="same")
    return np.maximum(envelope - local, 0.0)


def onset_strength(audio, sample_rate: int, hop: int = 512, n_fft: int = 2048, bands: int = 40
                   ) -> tuple[np.ndarray, float]:
    """Spectral flux of log band energies, averaged over bands -> (envelope, frames per second)."""
    flux, rate = band_flux(audio, sample_rate, hop, n_fft, bands)
    return _detrend(flux.mean(axis=1), rate), rate


def _autocorrelation(envelope: np.ndarray) -> np.ndarray:
    """Normalised (lag 0 = 1), negative values clipped."""
    e = envelope - envelope.mean()
    size = 1 << int(math.ceil(math.log2(2 * len(e))))
    ac = np.fft.irfft(np.abs(np.fft.rfft(e, size)) ** 2, size)[: len(e)]
    return np.maximum(ac / max(ac[0], 1e-12), 0.0)


def tempo_scores(envelope: np.ndarray, frame_rate: float, bpm_range=(40.0, 240.0), prior_bpm: float = 120.0,
                 prior_octaves: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(bpm per lag, score) over the lags inside `bpm_range`. The score of a beat period L sums
    the autocorrelation at L, 2L, 3L and 4L (weights 1/k): a real beat recurs at the half-bar and
    bar, while a syncopated figure (the dotted eighths of funk or a bossa clave, 3/4 of a beat)
    does not, so it no longer wins. Then a log-normal prior around `prior_bpm` picks the octave."""
    ac = _autocorrelation(envelope)
    lags = np.arange(1, len(ac))
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


def _tempogram_components(envelope: np.ndarray, rate: float, bpms) -> np.ndarray:
    """sum_t (e(t) - mean e) exp(2 pi i t bpm / 60) / sum_t e(t) at each of `bpms` (complex): the
    envelope's Fourier component at each tempo per unit onset energy, its phase counted from a beat at
    the envelope's first frame."""
    e = np.asarray(envelope, dtype=np.float64)
    t = np.arange(len(e)) / rate
    waves = np.exp(2j * np.pi * np.outer(np.asarray(bpms, dtype=np.float64) / 60.0, t))
    return waves @ (e - e.mean()) / max(float(e.sum()), 1e-12)


def fourier_tempogram(envelope: np.ndarray, rate: float, bpms) -> np.ndarray:
    """The magnitude of `_tempogram_components`: the share of an onset envelope's energy that falls at
    one phase of a steady beat at each tempo (1: every onset at the same phase of every beat; a beat
    that wanders or a clip without one reads near 0)."""
    return np.abs(_tempogram_components(envelope, rate, bpms))


def _beat_component(audio, sample_rate: int, bpm: float) -> complex:
    """A clip's band-averaged onset envelope's tempogram component at `bpm`."""
    flux, rate = band_flux(audio, sample_rate)
    return complex(_tempogram_components(_detrend(flux.mean(axis=1), rate), rate, [bpm])[0])


def beat_steadiness(audio, sample_rate: int, bpm: float) -> float:
    """How steadily a clip keeps a beat at `bpm`: the Fourier tempogram of its whole onset envelope
    at that tempo. Unlike a tempo reading it has no metrical level to get wrong, and it needs the
    phase held from start to end, so a beat that wanders or runs at another tempo reads low."""
    return abs(_beat_component(audio, sample_rate, bpm))


def beat_phase(audio, sample_rate: int, bpm: float) -> float:
    """Where a clip's onsets fall on a beat grid at `bpm` that starts at its first sample, in beats
    (-0.5, 0.5]: negative = ahead of the grid. It includes the onset analysis's own latency, so
    compare clips with each other (a model's stream with the real piece it imitates), not with 0."""
    return float(np.angle(_beat_component(audio, sample_rate, bpm)) / (2 * np.pi))


def tempogram_peak(flux: np.ndarray, rate: float, bpm_range=(40.0, 240.0)) -> float:
    """The tempo where the band-averaged envelope's Fourier tempogram peaks (0.0 when it is silent);
    a zero-padded FFT reads it on a grid finer than 0.1 BPM."""
    e = _detrend(flux.mean(axis=1), rate)
    if not e.any():
        return 0.0
    size = 1 << max(16, int(math.ceil(math.log2(8 * len(e)))))
    magnitude = np.abs(np.fft.rfft(e - e.mean(), size))
    bpms = np.arange(len(magnitude)) * rate / size * 60.0
    inside = np.flatnonzero((bpms >= bpm_range[0]) & (bpms <= bpm_range[1]))
    return float(bpms[inside[np.argmax(magnitude[inside])]])


def candidate_features(flux: np.ndarray, rate: float, bpms, peak: float) -> np.ndarray:
    """(len(bpms), 4 + 4 x (7 + 2)) features of each candidate tempo (`tempo_candidates`: the first
    pass's comes first): whether it is the first pass's, whether it is the tempogram's `peak`,
    log2(bpm / 120) and its square, then per band group the autocorrelation of its onset envelope at
    `LAG_MULTIPLES` of the beat period and its Fourier tempogram at `TEMPOGRAM_MULTIPLES` of the tempo."""
    bpms = np.asarray(bpms, dtype=np.float64)
    octaves = np.log2(bpms / 120.0)
    columns = [(np.arange(len(bpms)) == 0).astype(np.float64),
               (np.abs(bpms / max(peak, 1e-9) - 1.0) <= SAME_TEMPO).astype(np.float64), octaves, octaves ** 2]
    for group in BAND_GROUPS.values():
        envelope = _detrend(flux[:, group].mean(axis=1), rate)
        ac = _autocorrelation(envelope)
        for m in LAG_MULTIPLES:
            lag = m * 60.0 * rate / bpms
            columns.append(np.where(lag < len(ac) - 1, np.interp(lag, np.arange(len(ac)), ac), 0.0))
        columns += list(fourier_tempogram(envelope, rate, np.outer(TEMPOGRAM_MULTIPLES, bpms).ravel())
                        .reshape(len(TEMPOGRAM_MULTIPLES), len(bpms)))
    return np.stack(columns, axis=1)


def reader_layout() -> dict:
    """What a reader file's weights mean: the features `candidate_features` computes."""
    return {"ratios": list(OCTAVE_RATIOS), "lag_multiples": list(LAG_MULTIPLES),
            "tempogram_multiples": list(TEMPOGRAM_MULTIPLES),
            "band_groups": {k: [v.start, v.stop] for k, v in BAND_GROUPS.items()}}


@functools.lru_cache(maxsize=4)
def load_reader(path: str | Path = READER_PATH) -> dict:
    reader = json.loads(Path(path).read_text())
    layout = reader_layout()
    if any(reader.get(k) != v for k, v in layout.items()):
        raise ValueError(f"{path} was fitted for other tempo features than this lmdm computes; "
                         "refit it with scripts/fit_tempo_reader.py")
    for key in ("weights", "mean", "std"):
        reader[key] = np.asarray(reader[key], dtype=np.float64)
    return reader


def first_pass_tempo(flux: np.ndarray, rate: float, bpm_range=(40.0, 240.0), prior_bpm: float = 120.0) -> float:
    """The strongest periodicity of the band-averaged onset envelope, in BPM (0.0 when there is none)."""
    envelope = _detrend(flux.mean(axis=1), rate)
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


def tempo_candidates(first: float, peak: float = 0.0, bpm_range=(40.0, 240.0)) -> list[float]:
    """The first pass's tempo and its `OCTAVE_RATIOS` multiples inside `bpm_range` (that tempo first),
    then the tempogram's `peak` and its multiples that are not already there."""
    out: list[float] = []
    for bpm in (first, peak):
        for r in OCTAVE_RATIOS:
            c = bpm * r
            if bpm > 0 and bpm_range[0] <= c <= bpm_range[1] and all(abs(c / x - 1) > SAME_TEMPO for x in out):
                out.append(c)
        if not out and bpm > 0:
            out.append(bpm)
    return out


def estimate_tempo(audio, sample_rate: int, bpm_range=(40.0, 240.0), prior_bpm: float = 120.0,
                   reader: str | Path | None = READER_PATH) -> float:
    """The most likely tempo in BPM (0.0 for silence or audio shorter than two beats). `reader=None`
    returns the first pass alone (the strongest periodicity, with its octave ambiguity)."""
    flux, rate = band_flux(audio, sample_rate)
    bpm = first_pass_tempo(flux, rate, bpm_range, prior_bpm)
    if bpm == 0.0 or reader is None:
        return bpm
    r = load_reader(reader)
    peak = tempogram_peak(flux, rate, bpm_range)
    candidates = tempo_candidates(bpm, peak, bpm_range)
    scores = (candidate_features(flux, rate, candidates, peak) - r["mean"]) / r["std"] @ r["weights"]
    return float(candidates[int(np.argmax(scores))])


def tempo_matches(estimate: float, reference: float, tolerance: float = 0.04,
                  ratios=OCTAVE_RATIOS) -> bool:
    """True when `estimate` is within `tolerance` (relative) of reference × one of `ratios`."""
    return any(abs(estimate / (reference * r) - 1.0) <= tolerance for r in ratios) if estimate > 0 else False
