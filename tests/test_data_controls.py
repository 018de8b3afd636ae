"""Sketch controls: they follow what they measure, at the latent frame rate."""
import numpy as np
import pytest
import torch

from lmdm.audio.controls import a_weighting_db, extract_controls, hz_to_midi, num_frames

SR, HOP = 44100, 2048


def sine(freq, seconds=2.0, amp=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def test_frame_count_matches_latents():
    for n in (1, HOP - 1, HOP, HOP + 1, 10 * HOP + 7):
        c = extract_controls(np.zeros(n) + 1e-3, SR, HOP)
        assert all(v.shape == (num_frames(n, HOP),) and v.dtype == np.float32 for v in c.values())
    assert num_frames(44100) == 22   # 21.53 frames per second


def test_centroid_rises_with_a_sine_sweep():
    t = np.arange(4 * SR) / SR
    freq = np.geomspace(100, 8000, len(t))
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SR)
    c = extract_controls(x)["centroid"][1:-1]     # edge frames see zero padding
    assert np.all(np.diff(c) > 0)
    assert c[0] == pytest.approx(hz_to_midi(110), abs=3) and c[-1] == pytest.approx(hz_to_midi(7600), abs=3)


def test_loudness_follows_a_gain_ramp_and_a_weighting():
    x = sine(1000, 4.0, amp=1.0) * np.linspace(0.01, 1.0, 4 * SR)
    loud = extract_controls(x)["loudness"][1:-1]
    assert np.all(np.diff(loud) > 0)
    full = extract_controls(sine(1000, 1.0, amp=1.0))["loudness"]
    assert full[5] == pytest.approx(-3.01, abs=0.05)           # full-scale sine RMS, A(1 kHz) = 0 dB
    low = extract_controls(sine(50, 1.0, amp=1.0))["loudness"]
    assert low[5] == pytest.approx(-3.01 + float(a_weighting_db(50)), abs=0.5)   # ≈ -33 dB: A-weighted
    silent = extract_controls(np.zeros(SR))
    assert silent["loudness"].max() <= -99 and not silent["centroid"].any() and not silent["f0"].any()


@pytest.mark.parametrize("freq", [55.0, 110.0, 261.63, 440.0, 1000.0])
def test_pitch_of_a_sine(freq):
    c = extract_controls(sine(freq))
    f0, voicing = c["f0"][1:-1], c["voicing"][1:-1]
    assert np.all(np.abs(f0 / freq - 1) < 0.01) and voicing.min() > 0.9


def test_noise_is_unvoiced_and_inputs_are_flexible():
    noise = np.random.default_rng(0).standard_normal(2 * SR) * 0.1
    assert (extract_controls(noise)["f0"] == 0).mean() > 0.8
    stereo = torch.from_numpy(np.stack([sine(220), sine(220)])).float()
    f0 = extract_controls(stereo)["f0"][1:-1]
    assert np.all(np.abs(f0 / 220 - 1) < 0.01)
    # other sample rates and hops
    c = extract_controls(sine(440, sr=16000), sample_rate=16000, hop=320)
    assert len(c["f0"]) == num_frames(32000, 320) and abs(np.median(c["f0"]) / 440 - 1) < 0.01
