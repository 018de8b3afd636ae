"""`lmdm eval`'s controls part (issues #6, #9): sketch adherence and accompaniment coherence on a tiny
grouped model and a synthetic manifest with stems (the numbers are meaningless; the pipeline and the
metrics' sanity are what is tested)."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from lmdm.cli import build_parser
from lmdm.eval.controls_suite import (ControlsSuite, beat_alignment, controls_table, evaluate_controls,
                                      key_agreement, sketch_adherence)
from lmdm.live.testmodel import tiny_live_model

SR = 16000


def clicks(bpm, seconds, sr=SR, phase=0.0, freq=2000.0):
    """A click track: 10 ms decaying bursts every beat, starting at `phase` seconds."""
    n = int(seconds * sr)
    out = np.zeros(n, dtype=np.float32)
    burst = (np.sin(2 * np.pi * freq * np.arange(int(0.01 * sr)) / sr) * np.exp(-np.arange(int(0.01 * sr)) / 40))
    for t in np.arange(phase, seconds, 60.0 / bpm):
        i = int(t * sr)
        out[i:i + len(burst)] += burst[: n - i].astype(np.float32)
    return 0.8 * out


def chord(freqs, seconds, sr=SR, amp=0.2):
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)  # slow swell, so loudness varies
    return (amp * env * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    seconds = 2.5
    lines = []
    for k, (bpm, freqs) in enumerate([(120, (261.6, 329.6, 392.0)), (90, (220.0, 277.2, 329.6)),
                                      (150, (293.7, 370.0, 440.0))]):
        stems = {"drums": clicks(bpm, seconds), "chords": chord(freqs, seconds)}
        (root / "stems" / str(k)).mkdir(parents=True)
        paths = {}
        for name, audio in stems.items():
            paths[name] = f"stems/{k}/{name}.wav"
            sf.write(str(root / paths[name]), audio, SR, subtype="FLOAT")
        sf.write(str(root / f"{k}.wav"), sum(stems.values()), SR, subtype="FLOAT")
        lines.append({"path": f"{k}.wav", "duration": seconds, "sample_rate": SR, "channels": 1,
                      "captions": [f"piece {k} at {bpm} bpm"], "metadata": {"tempo": bpm}, "stems": paths})
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    plain = [{k: v for k, v in e.items() if k != "stems"} for e in lines]
    (root / "nostems.jsonl").write_text("\n".join(json.dumps(e) for e in plain) + "\n")
    return root


SUITE = ControlsSuite(sketch_pieces=2, accompaniment_pieces=3, seconds=1.5)


def grouped(groups=True):
    return tiny_live_model(block_frames=32, context_blocks=3, steps=2, groups=groups, sample_rate=SR,
                           strides=(4, 8, 4))


def test_controls_report_has_every_number(manifest):
    model = grouped()
    said = []
    r = evaluate_controls(model, manifest / "manifest.jsonl", SUITE, seed=0, progress=said.append)
    sk = r["sketch"]
    assert len(sk["pieces"]) == 2 and sk["hop"] == 128 and "skipped" not in sk
    for tag in ("sketch", "no_sketch", "codec", "drawn", "drawn_no_sketch"):
        for key in ("loudness_correlation", "centroid_correlation", "loudness_mae_db", "voiced_in_both"):
            assert np.isfinite(sk[tag][key]), (tag, key, sk[tag])
        assert sk["pieces"][0][tag]["frames"] == 188  # ceil(1.5 * 16000 / 128)
    # the codec ceiling is the source itself through the model's autoencoder
    from lmdm.audio.controls import extract_controls
    from lmdm.eval.controls_suite import _clip, compare_controls
    n, hop = round(SUITE.seconds * model.sample_rate), model.config.downsampling_ratio
    source = _clip(manifest / sk["pieces"][0]["path"], model.sample_rate, model.autoencoder.config.audio_channels, n)
    with torch.no_grad():
        codec = model.autoencoder.decode(model.autoencoder.encode(torch.from_numpy(source)[None]))[0, :, :n].numpy()
    assert sk["pieces"][0]["codec"] == compare_controls(extract_controls(source, model.sample_rate, hop),
                                                        extract_controls(codec, model.sample_rate, hop),
                                                        model.sample_rate / hop)
    acc = r["accompaniment"]
    assert len(acc["pieces"]) == 3 and acc["pieces"][0]["given"] == "chords"
    assert acc["cutoff_frames"] == 0  # block-causal: `lmdm accompany`'s default
    for part in ("generated", "random_stem", "unconditioned", "reference"):
        for key in ("alignment", "best", "key_agreement"):
            assert np.isfinite(acc[part][key]), (part, key, acc[part])
    assert 0.0 <= acc["wins_vs_random_stem"] <= 1.0
    s = r["summary"]
    assert np.isfinite(s["loudness_correlation_sketch"]) and np.isfinite(s["beat_alignment_generated"])
    assert any("sketch" in m for m in said) and any("accompaniment" in m for m in said)
    # same seed -> same numbers
    again = evaluate_controls(model, manifest / "manifest.jsonl", SUITE, seed=0)
    assert again["summary"] == s
    md = "\n".join(controls_table({"tiny": {"controls": r}}))
    assert "| loudness_correlation_sketch |" in md and "| beat_alignment_random_stem |" in md
    sketch_table = md.split("Accompaniment coherence")[0]
    assert "| loudness_correlation_codec |" in sketch_table and "beat_alignment" not in sketch_table
    assert "| loudness_correlation_drawn |" in sketch_table
    json.dumps(r)  # report.json-able


def test_skipped_with_a_reason(manifest):
    plain = grouped(groups=False)
    r = evaluate_controls(plain, manifest / "manifest.jsonl", SUITE)
    assert "no 'sketch' input group" in r["sketch"]["skipped"]
    assert "no 'accompaniment' input group" in r["accompaniment"]["skipped"]
    assert all(v is None for v in r["summary"].values())
    md = "\n".join(controls_table({"plain": {"controls": r}}))
    assert "skipped" in md and "| loudness" not in md
    small = ControlsSuite(sketch_pieces=1, accompaniment_pieces=1, seconds=0.5)
    r = evaluate_controls(grouped(), manifest / "nostems.jsonl", small)
    assert "has stems" in r["accompaniment"]["skipped"] and "skipped" not in r["sketch"]
    assert controls_table({"x": {"no": "controls"}}) == []


def test_drawn_curves_are_the_sketch_the_model_is_given():
    """The drawn part compares the output with exactly the curves fed as the sketch."""
    from lmdm.eval.controls_suite import _at_frames, random_curves
    from lmdm.engine.sketch import controls_from_curves, normalise_centroid, normalise_loudness
    from lmdm.audio.controls import hz_to_midi
    curves = random_curves(np.random.default_rng([0, 1]), 12.0)
    assert curves["loudness"][-1][0] >= 12.0 and all(1.0 <= b[0] - a[0] <= 4.0 for a, b in
                                                      zip(curves["loudness"], curves["loudness"][1:]))
    assert all(-45 <= v <= -10 for _, v in curves["loudness"]) and all(300 <= v <= 4000 for _, v in curves["centroid"])
    sketch = controls_from_curves(curves, 258, 21.5)
    assert np.allclose(sketch[0].numpy(), normalise_loudness(_at_frames(curves["loudness"], 258, 21.5)), atol=1e-6)
    midi = hz_to_midi(_at_frames(curves["centroid"], 258, 21.5))
    assert np.allclose(sketch[1].numpy(), normalise_centroid(midi), atol=1e-6)


def test_sketch_adherence_is_perfect_when_the_output_is_the_source():
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    f0 = 220 * 2 ** (np.floor(t * 2) / 12)  # a rising scale, one note per half second
    audio = (np.sin(2 * np.pi * np.cumsum(f0) / SR) * (0.1 + 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)))
             + 0.01 * rng.normal(size=len(t))).astype(np.float32)
    same = sketch_adherence(audio, audio, SR, 128)
    assert same["loudness_correlation"] == pytest.approx(1.0)
    assert same["centroid_correlation"] == pytest.approx(1.0)
    assert same["pitch_error_semitones"] == pytest.approx(0.0) and same["voiced_in_both"] > 0.8
    assert same["loudness_mae_db"] == pytest.approx(0.0)
    other = sketch_adherence(audio, audio[::-1].copy(), SR, 128)  # the same sound backwards
    assert other["loudness_correlation"] < 0.5 and other["pitch_error_semitones"] > 1.0


def test_beat_alignment_prefers_the_same_beat():
    a = clicks(120, 8.0)
    same = beat_alignment(a, a, SR)
    assert same["alignment"] == pytest.approx(1.0) and same["best_lag_ms"] == 0.0
    other = beat_alignment(a, clicks(97, 8.0, freq=3000.0), SR)
    assert same["alignment"] > other["alignment"] + 0.5
    shifted = beat_alignment(a, clicks(120, 8.0, phase=0.25), SR)  # off-beat: related but out of phase
    assert shifted["alignment"] < 0.3 and shifted["best"] > 0.8 and abs(abs(shifted["best_lag_ms"]) - 250) < 30
    silent = beat_alignment(a, np.zeros_like(a), SR)
    assert silent["alignment"] is None


def test_key_agreement():
    c_major = chord((261.6, 329.6, 392.0), 2.0)
    assert key_agreement(c_major, chord((130.8, 659.3, 784.0), 2.0), SR) > 0.8  # same pitch classes, other octaves
    assert key_agreement(c_major, chord((277.2, 349.2, 415.3), 2.0), SR) < 0.3  # a semitone up
    assert key_agreement(c_major, np.zeros(SR, dtype=np.float32), SR) is None


def test_eval_cli_has_the_controls_switches():
    args = build_parser().parse_args(["eval", "--reference", "m.jsonl"])
    assert args.controls is True and args.stems_reference is None
    args = build_parser().parse_args(["eval", "--reference", "m.jsonl", "--no-controls", "--stems-reference", "s.jsonl"])
    assert args.controls is False and args.stems_reference == "s.jsonl"


def test_eval_cli_sampling_flags_override_the_models_config_fields():
    import dataclasses

    from lmdm.cli.eval import CONFIG_OVERRIDES
    from lmdm.config import ModelConfig
    argv = ["eval", "--reference", "m.jsonl", "--steps", "3", "--cfg", "2", "--sketch-cfg", "1.5",
            "--control-guidance", "0.2", "--prompt-guidance", "0.4", "--beat-cfg", "1.25"]
    args = build_parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert {field for _, field in CONFIG_OVERRIDES} <= fields
    assert [getattr(args, flag) for flag, _ in CONFIG_OVERRIDES] == [3, 2.0, 1.5, 0.2, 0.4, 1.25]


def test_requests_longer_than_the_pieces_are_capped_not_padded(manifest):
    """2.5-s pieces, 6-s requests: every comparison covers the piece, never a padded silent tail."""
    r = evaluate_controls(grouped(), manifest / "manifest.jsonl",
                          ControlsSuite(sketch_pieces=1, accompaniment_pieces=2, seconds=6.0), seed=0)
    assert r["sketch"]["pieces"][0]["sketch"]["frames"] == 313   # ceil(2.5 * 16000 / 128), not 750
    assert r["accompaniment"]["seconds"] == 2.5


def test_sketch_quality_numbers(manifest):
    """With `quality`, the sketched, drawn and unsketched streams get FD against the reference windows,
    style agreement and clipping numbers, and they land in the summary and the sketch table."""
    from lmdm.eval.controls_suite import SketchQuality

    class Tagger:
        def predict(self, clips, sr):
            return [{"style": "house"} for _ in clips]

    def embed(clips, sr):   # a 2-d embedding: RMS and peak of each window
        return np.stack([np.sqrt((clips ** 2).mean(axis=(1, 2))), np.abs(clips).max(axis=(1, 2))], 1)

    rng = np.random.default_rng(0)
    quality = SketchQuality(embed, rng.normal(0.1, 0.02, (20, 2)), 0.5, Tagger())
    r = evaluate_controls(grouped(), manifest / "manifest.jsonl", SUITE, seed=0, quality=quality)
    q = r["sketch"]["quality"]
    assert set(q) == {"sketch", "no_sketch", "drawn"}
    for tag, m in q.items():
        assert m["windows"] == 2 * 3   # 2 pieces x three 0.5-s windows of 1.5 s
        assert np.isfinite(m["fd"]) and m["low"] <= m["high"]
        assert m["style_agreement"] is None   # the manifest's pieces have no style to agree with
        assert m["median_peak"] > 0 and 0.0 <= m["clipped_fraction"] <= 1.0
        assert r["summary"][f"fd_{tag}"] == m["fd"]
    sketch_table = "\n".join(controls_table({"tiny": {"controls": r}})).split("Accompaniment coherence")[0]
    assert "| fd_drawn |" in sketch_table and "| clipped_fraction_sketch |" in sketch_table
