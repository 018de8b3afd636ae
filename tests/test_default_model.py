"""The embedded default model: loads offline from the package, makes non-silent, non-clipping audio."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import lmdm
from lmdm import checkpoints
from lmdm.errors import CheckpointError


@pytest.fixture(scope="module")
def model():
    return lmdm.load("default")


def test_shipped_weights_are_small_bf16_and_documented(model):
    folder = checkpoints.DEFAULT_MODEL_DIR
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    assert size < 50 * 2 ** 20
    assert all(p.dtype == torch.bfloat16 for p in checkpoints.from_pretrained(folder).parameters())
    assert next(model.parameters()).dtype == checkpoints.resolve_dtype("auto")   # computes in the CPU's fast dtype
    c = model.config
    assert c.pattern.pattern == "block-causal" and c.text.kind == "minilm"
    assert {"context", "sketch", "accompaniment", "beat"} <= set(c.dit.input_groups)
    assert (folder / "MODEL_CARD.md").is_file()


def test_default_model_streams_music_with_a_prompt_change(model):
    seconds = 6.0
    audio = model.generate([(0, "funky bass groove with drums, 110 bpm"), (3, "ambient pads, slow")], seconds, seed=1)
    assert audio.shape == (model.autoencoder.config.audio_channels, round(seconds * model.sample_rate))
    assert torch.isfinite(audio).all()
    rms = audio.square().mean().sqrt()
    assert rms > 1e-3 and audio.abs().max() < 1.0


def test_generate_without_model_uses_the_default(tmp_path):
    out = tmp_path / "out.wav"
    run = subprocess.run([sys.executable, "-m", "lmdm", "generate", "lo-fi hip hop, 80 bpm", "--seconds", "3",
                          "-o", str(out), "--block", "10"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "rtf=" in run.stderr   # the progress bar shows the real-time factor
    audio, rate = sf.read(out, always_2d=True)
    assert rate == 22050 and audio.shape[0] == 3 * rate
    assert np.abs(audio).max() > 1e-3


def test_missing_default_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "DEFAULT_MODEL_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="embedded default model is missing"):
        lmdm.load("default")


def test_load_takes_dtype_names():
    assert next(lmdm.load("default", dtype="fp32").parameters()).dtype == torch.float32
    with pytest.raises(lmdm.errors.ConfigError):
        lmdm.load("default", dtype="fp16")


def test_default_model_keeps_the_tempo_its_beat_clock_asks(model):
    """v0.7's beat clock (`lmdm.engine.beat`): one caption and seed at three tempi, heard at each by the
    evaluation's beat tracker (measured 79.8 / 99.7 / 126.5 BPM on an AVX2-only machine in fp32, v0.11.1;
    6 % is room for other CPUs' bf16 arithmetic, far from the octave errors the clock fixes). Not every
    caption is this clean: "funky bass groove with drums" at 130 is heard at 65.6, the lower octave (model
    card, v0.7). Without prompt guidance (v0.9's): a tempo forced by `bpm=` far from the style's own can
    lose to it (this caption at 80 with v0.10's guidance: 117.4 BPM; model card, limitations)."""
    from lmdm.data.tempo import beat_steadiness, estimate_tempo
    assert model.config.dit.input_groups["beat"] == 3
    for bpm in (80, 100, 130):
        stream = model.stream("house groove with piano chords", seed=0, bpm=bpm, prompt_guidance=0)
        audio = torch.cat([stream.next_block()[0] for _ in range(8)], -1).float().numpy()
        assert estimate_tempo(audio, model.sample_rate) == pytest.approx(bpm, rel=0.06), bpm
        # and the beat is held at that tempo all through (steadiness measured 0.49 / 0.57 / 0.66 at it,
        # at most 0.13 at 10 % either side, fp32 and bf16 alike)
        held = beat_steadiness(audio, model.sample_rate, bpm)
        off = max(beat_steadiness(audio, model.sample_rate, r * bpm) for r in (0.9, 1.1))
        assert held > 0.2 and held > 3 * off, (bpm, held, off)


def test_default_model_guides_its_blocks_towards_the_prompt(model):
    """v0.9's prompt guidance (`lmdm.engine.prompt_guidance`) is on by default and moves what the model plays
    towards the prompt in its probe's space (the model card measures what the evaluation's tagger hears)."""
    assert model.prompt_probe is not None and model.config.prompt_guidance > 0
    assert 0.3 < float(model.prompt_probe.target_similarity) < 1

    def similarity(stream):
        blocks = torch.cat([stream.next_latents() for _ in range(4)])
        with torch.no_grad():
            emb = model.prompt_probe.embed_latents(blocks.to(next(model.prompt_probe.parameters()).dtype))
        return float((emb.float() @ stream._prompt_embedding[0, :model.prompt_probe.dim]).mean())
    for prompt in ("chiptune, square-wave lead melody, 150 BPM", "funk, slap bass, clavinet, brass section"):
        guided, plain = model.stream(prompt, seed=2), model.stream(prompt, seed=2, prompt_guidance=0)
        assert guided.prompt_guidance.active and not plain.prompt_guidance.active
        assert similarity(guided) > similarity(plain) + 0.02, prompt
