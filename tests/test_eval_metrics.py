import numpy as np
import pytest

from lmdm.audio.controls import extract_controls
from lmdm.eval.metrics import (EvalError, blocks_until_match, control_adherence, detect_switch, drift_curve,
                               drift_ratio, frechet_distance, frechet_with_interval, switch_discontinuity, windows)

rng = np.random.default_rng(0)


def test_frechet_is_zero_on_itself_and_grows_with_noise():
    ref = rng.normal(size=(400, 8))
    assert frechet_distance(ref, ref) < 1e-6
    fds = [frechet_distance(ref, ref + rng.normal(scale=s, size=ref.shape)) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(fds, fds[1:]))
    ci = frechet_with_interval(ref[:200], ref[200:], bootstrap=50)
    assert ci["low"] <= ci["fd"] <= ci["high"] or ci["fd"] < ci["high"]


def test_frechet_rejects_bad_input():
    with pytest.raises(EvalError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(EvalError):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(EvalError, match="widths"):
        frechet_distance(rng.normal(size=(5, 3)), rng.normal(size=(5, 4)))


def test_drift_flags_a_degrading_stream_not_a_stable_one():
    ref = rng.normal(size=(300, 6))
    streams = 40
    stable = [rng.normal(size=(streams, 6)) for _ in range(6)]
    degrading = [rng.normal(size=(streams, 6)) * (1 + 0.4 * k) + 0.3 * k for k in range(6)]
    assert drift_ratio(drift_curve(degrading, ref)) > 3 * drift_ratio(drift_curve(stable, ref))
    assert drift_ratio(drift_curve(stable, ref)) < 2.5


def test_planted_switch_is_found_within_one_block():
    blocks = np.concatenate((rng.normal(0, 0.3, size=(12, 16)), rng.normal(1, 0.3, size=(9, 16))))
    assert abs(detect_switch(blocks) - 12) <= 1
    a = np.r_[np.ones(12), np.linspace(1, 0, 9)]
    b = np.r_[np.zeros(12), np.linspace(0, 1, 9)]
    assert blocks_until_match(a, b, 12) == 5


def test_switch_discontinuity_is_large_for_a_jump_small_for_a_crossfade():
    sr = 22050
    t = np.arange(2 * sr) / sr
    a, b = 0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sign(np.sin(2 * np.pi * 97 * t))
    jump = np.r_[a[:sr], b[sr:]]
    fade = np.r_[a[:sr // 2], a[sr // 2:3 * sr // 2] * np.linspace(1, 0, sr) + b[sr // 2:3 * sr // 2] * np.linspace(0, 1, sr),
                 b[3 * sr // 2:]]
    assert switch_discontinuity(jump, sr) > 2 * switch_discontinuity(fade, sr)


def test_control_adherence_is_perfect_for_audio_rendered_from_its_own_controls():
    sr = 44100
    t = np.arange(4 * sr) / sr
    gain = np.linspace(0.05, 0.8, len(t))
    freq = 200 * 2 ** (2 * t / 4)  # two octaves up
    audio = gain * np.sin(2 * np.pi * np.cumsum(freq) / sr)
    target = extract_controls(audio, sr)
    again = extract_controls(audio.copy(), sr)
    for name in ("loudness", "centroid"):
        r = control_adherence(target[name], again[name])
        assert r["correlation"] > 0.999 and r["mae"] < 1e-6
    wrong = control_adherence(target["loudness"], target["loudness"][::-1])
    assert wrong["correlation"] < 0


def test_windows_split_a_stream():
    audio = np.zeros((2, 44100 * 25))
    assert [w.shape[-1] for w in windows(audio, 44100, 10)] == [441000, 441000]


def test_context_memory_is_zero_for_forgotten_priming_and_one_for_unrelated_streams():
    from lmdm.eval.metrics import EvalError, context_memory
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(40, 16))
    text = [rng.normal(size=(6, 16)) for _ in range(4)]
    assert context_memory(text, text, reference) == [0.0] * 4          # the priming left no trace
    unrelated = [rng.normal(size=(6, 16)) for _ in range(4)]
    assert all(0.7 < m < 1.3 for m in context_memory(unrelated, text, reference))
    fading = [t + (0.5 ** k) * (u - t) for k, (t, u) in enumerate(zip(text, unrelated))]
    curve = context_memory(fading, text, reference)
    assert all(a > b for a, b in zip(curve, curve[1:]))               # a stream forgetting its start
    with pytest.raises(EvalError):
        context_memory(text, text, reference[:1])
