"""The tempo estimator's signal-level parts on synthetic signals (the corpus-level checks live in
test_data_synth, which renders pieces)."""
import numpy as np
import pytest

from lmdm.data.tempo import (band_flux, beat_phase, beat_steadiness, estimate_tempo, fourier_tempogram,
                             tempo_candidates, tempogram_peak)

SR = 22050


def pulsed_noise(bpm_at, seconds: float = 20.0, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """Noise whose loudness swells once per beat (a raised cosine, no sharp onsets); `bpm_at(t)` gives
    the tempo at each time, so a beat can wander; `shift` beats moves every swell later."""
    t = np.arange(int(seconds * SR)) / SR
    phase = np.cumsum(bpm_at(t) / 60.0) / SR - shift
    swell = 0.5 * (1 + np.cos(2 * np.pi * phase)) ** 4
    return (np.random.default_rng(seed).standard_normal(len(t)) * (0.05 + swell)).astype(np.float32)


def test_fourier_tempogram_reads_a_steady_beat_at_its_tempo_only():
    rate = 86.0
    envelope = np.zeros(int(30 * rate))
    envelope[(np.arange(0, 30, 60 / 90) * rate).astype(int)] = 1.0      # one onset per beat at 90 BPM
    values = fourier_tempogram(envelope, rate, [90.0, 180.0, 100.0, 117.0])
    assert values[0] > 0.9 and values[1] > 0.8          # every onset at one phase of 90 (and of 180)
    assert values[2] < 0.15 and values[3] < 0.15         # no steady phase at other tempi


def test_tempogram_peak_finds_a_soft_beat_and_a_wandering_one_reads_weaker():
    steady = pulsed_noise(lambda t: np.full_like(t, 79.0))
    flux, rate = band_flux(steady, SR)
    assert abs(tempogram_peak(flux, rate) / 79.0 - 1) < 0.01
    assert abs(estimate_tempo(steady, SR) / 79.0 - 1) <= 0.04
    wandering = pulsed_noise(lambda t: 79.0 + 30.0 * t / t[-1])        # 79 -> 109 BPM over 20 s
    flux_w, rate_w = band_flux(wandering, SR)
    held = fourier_tempogram(flux.mean(axis=1), rate, [79.0])[0]
    best_wandering = fourier_tempogram(flux_w.mean(axis=1), rate_w, np.arange(70.0, 120.0, 0.5)).max()
    assert best_wandering < 0.5 * held


def test_tempo_candidates_join_both_families_without_repeats():
    c = tempo_candidates(131.1, 78.8)
    assert c[:4] == [131.1, 131.1 * 0.5, 131.1 * 1.5, 131.1 * 2 / 3]      # the first pass's family first
    assert 78.8 in c and 78.8 * 2 in c
    assert all(abs(a / b - 1) > 0.03 for i, a in enumerate(c) for b in c[:i])
    assert tempo_candidates(100.0, 200.0) == pytest.approx([100.0, 200.0, 50.0, 150.0, 200 / 3, 400 / 3])
    assert tempo_candidates(0.0, 0.0) == [] and tempo_candidates(250.0, 0.0) == pytest.approx([125.0, 500 / 3])


def test_beat_phase_tells_how_far_one_clip_is_ahead_of_another():
    steady = pulsed_noise(lambda t: np.full_like(t, 90.0))
    late = pulsed_noise(lambda t: np.full_like(t, 90.0), shift=0.2)           # 0.2 beat = 133 ms later
    early = pulsed_noise(lambda t: np.full_like(t, 90.0), shift=-0.1)
    assert beat_phase(late, SR, 90) - beat_phase(steady, SR, 90) == pytest.approx(0.2, abs=0.02)
    assert beat_phase(early, SR, 90) - beat_phase(steady, SR, 90) == pytest.approx(-0.1, abs=0.02)
    assert beat_steadiness(late, SR, 90) == pytest.approx(beat_steadiness(steady, SR, 90), rel=0.1)
