"""`lmdm generate --sketch` and `lmdm accompany`: a tiny model with sketch and accompaniment groups and
a small real autoencoder, saved and loaded back through the CLI."""
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

import lmdm
from conftest import randomized, stream_audio_by_hand
from lmdm.engine import sketch as sk
from lmdm.engine.accompany import accompany, encode_song, load_song, mix
from lmdm.checkpoints import from_pretrained, save_pretrained
from lmdm.cli import main
from lmdm.engine.generate import load_sketch
from lmdm.models.autoencoder import AutoencoderConfig

SR, HOP = 8000, 4  # the toy autoencoder: one stride of 4
Q = 2.0 / 32768    # PCM_16 round trip


def make_model(pattern="block-causal", groups=("sketch", "accompaniment"), autoencoder=True, seed=0):
    torch.manual_seed(seed)
    cfg = lmdm.preset("tiny", pattern)
    io = cfg.dit.io_channels
    sizes = {"sketch": sk.SKETCH_CHANNELS, "accompaniment": io + 1}
    cfg.dit.input_groups = {"context": io + 1, **{g: sizes[g] for g in groups}}
    if autoencoder:
        cfg.autoencoder = AutoencoderConfig(audio_channels=1, channels=4, c_mults=[1], strides=[HOP],
                                            latent_dim=io, sample_rate=SR).to_dict()
        cfg.sample_rate, cfg.downsampling_ratio = SR, HOP
    cfg.validate()
    return randomized(lmdm.LiveMusicModel(cfg).eval(), seed)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_pretrained(make_model(), tmp_path_factory.mktemp("grouped"))


def loaded(folder):
    return from_pretrained(folder, dtype=torch.float32).eval()


def song(n, seed=0, amp=0.5):
    return (amp * torch.randn(1, n, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def write_wav(path, audio, sr=SR):
    sf.write(str(path), audio.T.numpy(), sr, subtype="FLOAT")
    return path


def read(path):
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(audio.T.copy()), sr


def run_cli(*argv):
    return main([*map(str, argv), "--quiet", "--dtype", "fp32", "--steps", "2"])


def by_hand(model, total, **stream_kwargs):
    """`generate`'s loop driven by hand: blocks until the request is covered, then the decoder's tail."""
    stream_kwargs.setdefault("steps", 2)
    return stream_audio_by_hand(model.stream("x", seed=0, **stream_kwargs), total)


# -- generate --sketch ---------------------------------------------------------------------------

def test_generate_with_a_wav_and_a_json_sketch_writes_the_requested_length(model_dir, tmp_path, capsys):
    wav = write_wav(tmp_path / "sketch.wav", song(100, amp=0.3))  # 100 samples: shorter than the request
    curves = tmp_path / "curves.json"
    curves.write_text(json.dumps({"loudness": [[0, -40], [0.02, 0]], "pitch": [[0, 220], [0.02, 440]]}))
    for sketch in (wav, curves):
        out = tmp_path / f"{sketch.stem}.wav"
        assert run_cli("generate", "x", "--model", model_dir, "--seconds", 0.03, "--sketch", sketch,
                       "--sketch-strength", 0.5, "-o", out) == 0
        audio, sr = read(out)
        assert sr == SR and audio.shape == (1, 240)
        assert f"sketch {sketch}" in capsys.readouterr().out


def test_the_sketch_reaches_the_dit_and_equals_a_stream_driven_by_hand(model_dir, tmp_path):
    model = loaded(model_dir)
    wav = write_wav(tmp_path / "s.wav", song(160, seed=1))
    controls = load_sketch(model, wav, 0.03, strength=0.5)
    raw = sk.controls_from_audio(song(160, seed=1).numpy(), SR, HOP)
    assert controls.shape == (3, 40)
    assert torch.equal(controls, sk.median_filter(raw, sk.strength_to_kernel(0.5)))  # 0.5 -> kernel 15
    assert torch.equal(load_sketch(model, wav, 0.03, strength=1.0), raw)            # 1 = the sketch as is
    total = 240
    got = model.generate("x", 0.03, sketch=controls, steps=2)
    assert got.shape == (1, total)
    assert torch.equal(got, by_hand(model, total, sketch=controls))
    assert not torch.equal(got, model.generate("x", 0.03, steps=2))
    # the CLI writes the same
    out = tmp_path / "cli.wav"
    assert run_cli("generate", "x", "--model", model_dir, "--seconds", 0.03, "--sketch", wav,
                   "--sketch-strength", 0.5, "-o", out) == 0
    assert torch.allclose(read(out)[0], got.clamp(-1, 1), atol=Q)
    # sketch guidance: the CLI's --sketch-cfg is the stream's sketch_cfg
    guided = by_hand(model, total, sketch=controls, sketch_cfg=3.0)
    assert not torch.allclose(guided, got, atol=1e-3)
    assert run_cli("generate", "x", "--model", model_dir, "--seconds", 0.03, "--sketch", wav,
                   "--sketch-strength", 0.5, "--sketch-cfg", 3, "-o", out) == 0
    assert torch.allclose(read(out)[0], guided.clamp(-1, 1), atol=Q)


def test_audio_sketch_is_taken_at_the_models_latent_frame_rate(tmp_path):
    """A 22050 Hz / 1024 model and a 44.1 kHz sketch: controls one per latent frame (21.5 /s), as
    `lmdm data encode` computes them from audio resampled to the model's rate."""
    model = make_model(autoencoder=False)
    model.config.sample_rate, model.config.downsampling_ratio = 22050, 1024
    t = np.arange(44100) / 44100
    audio = (np.sin(2 * np.pi * 440 * t) * np.where(t < 0.5, 0.01, 0.5)).astype(np.float32)
    wav = tmp_path / "step.wav"
    sf.write(str(wav), audio, 44100, subtype="FLOAT")
    c = load_sketch(model, wav, 1.0)
    assert c.shape == (3, 22)  # ceil(22050 / 1024)
    loud = c[0].numpy()
    jump = int(np.argmax(np.diff(loud))) + 1
    assert abs(jump - 0.5 * 22050 / 1024) <= 1.5, loud  # the gain step at 0.5 s lands near frame 10.8
    assert abs(c[2, 3:8].mean().item() - sk.normalise_pitch([440.0])[0]) < 0.02  # 440 Hz found
    curves = tmp_path / "c.csv"
    curves.write_text("time,loudness\n0,-40\n1,0\n")
    assert load_sketch(model, curves, 2.0).shape == (3, 44)  # curves cover the whole request


# -- accompany -----------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["block-causal", "enc-dec"])
def test_accompaniment_is_time_aligned_and_blind_after_the_cutoff(pattern):
    """Song sample s first influences the output where the alignment says: block j (target frames
    [jB, (j+1)B)) sees song frames before jB - cutoff, i.e. samples before (jB - cutoff) * hop +
    the encoder's look-ahead, and the output's sample 0 is the first sample of frame 0."""
    model = make_model(pattern)
    B = model.config.pattern.block_frames
    cutoff = 0 if pattern == "block-causal" else B  # the defaults
    look = model.autoencoder.config.encoder_lookahead_samples
    delay = model.autoencoder.config.decoder_delay_samples
    n, j = 40 * HOP, 4
    base = song(n, seed=2)
    out = accompany(model, base, "x", seed=0, steps=2)
    assert out.shape == (1, n)
    # equals a stream driven by hand with the song's latents; no offset: the offline decode of its latents
    latents = encode_song(model, base)
    assert torch.allclose(latents, model.autoencoder.encode(base[None])[0], atol=1e-5)
    assert torch.equal(out, by_hand(model, n, accompaniment=latents, cutoff_frames=cutoff, steps=2))
    s = model.stream("x", seed=0, accompaniment=latents, cutoff_frames=cutoff, steps=2)
    blocks = -(-(n + delay) // (B * HOP))  # generate's loop stops once the decoder has given n samples
    z = torch.cat([s.next_latents() for _ in range(blocks)], -1)
    assert torch.allclose(out, model.autoencoder.decode(z)[0, :, :n], atol=1e-5)
    assert not torch.equal(out, accompany(model, torch.zeros_like(base), "x", seed=0, steps=2))  # the song matters

    first = (j * B - cutoff) * HOP + look  # the first song sample block j may not see
    ready = (j + 1) * B * HOP - delay      # output samples that depend on blocks <= j only
    prev = j * B * HOP - delay             # ... on blocks < j only
    assert 0 < prev < ready < n and first < n
    later = base.clone()
    later[:, first:] = song(n - first, seed=5)  # "silent" or not after the cutoff: block j cannot tell
    assert torch.equal(accompany(model, later, "x", seed=0, steps=2)[:, :ready], out[:, :ready])
    earlier = base.clone()
    earlier[:, first - 1] += 0.5
    changed = accompany(model, earlier, "x", seed=0, steps=2)
    assert torch.equal(changed[:, :prev], out[:, :prev])
    assert not torch.equal(changed[:, prev:ready], out[:, prev:ready])


def test_accompany_cli_writes_an_aligned_part_and_mix_sums(model_dir, tmp_path, capsys):
    n = 37 * HOP + 3
    dry = song(n, seed=3, amp=0.9)
    wav = write_wav(tmp_path / "song.wav", dry)
    out, mixed = tmp_path / "part.wav", tmp_path / "mix.wav"
    assert run_cli("accompany", wav, "--prompt", "x", "--model", model_dir, "-o", out) == 0
    assert "sample-aligned" in capsys.readouterr().out
    assert run_cli("accompany", wav, "--prompt", "x", "--model", model_dir, "-o", mixed, "--mix") == 0
    said = capsys.readouterr().out
    model = loaded(model_dir)
    expected = accompany(model, load_song(model, wav), "x", steps=2)
    part, sr = read(out)
    assert sr == SR and part.shape == (1, n)  # same length as the input
    assert torch.allclose(part, expected.clamp(-1, 1), atol=Q)
    want, peak = mix(dry, expected)
    assert torch.allclose(read(mixed)[0], want, atol=Q)
    assert ("peak-normalised" in said) == (peak > 1)
    # --seconds: longer than the song plays on without it, the mix pads the song with silence
    assert run_cli("accompany", wav, "--prompt", "x", "--model", model_dir, "-o", out, "--seconds", 0.05) == 0
    assert read(out)[0].shape == (1, 400)
    loud, gen = torch.full((1, 8), 0.8), torch.full((1, 10), 0.6)
    m, p = mix(loud, gen)
    assert p == pytest.approx(1.4) and torch.allclose(m[:, :8], torch.full((1, 8), 1.0))
    assert torch.allclose(m[:, 8:], torch.full((1, 2), 0.6 / 1.4))
    m, p = mix(loud * 0.1, gen * 0.1)
    assert torch.allclose(m, torch.cat((torch.full((1, 8), 0.14), torch.full((1, 2), 0.06)), -1))  # not scaled


# -- errors --------------------------------------------------------------------------------------

def test_clear_errors(model_dir, tmp_path, capsys):
    plain = save_pretrained(make_model(groups=()), tmp_path / "plain")
    latent_only = save_pretrained(make_model(autoencoder=False), tmp_path / "latent")
    wav = write_wav(tmp_path / "song.wav", song(64))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(200)))
    badjson = tmp_path / "bad.json"
    badjson.write_text("{not json")
    cases = [
        (("generate", "x", "--model", plain, "--sketch", wav), "no 'sketch' input group"),
        (("accompany", wav, "--prompt", "x", "--model", plain), "no 'accompaniment' input group"),
        (("accompany", wav, "--prompt", "x", "--model", latent_only), "no autoencoder"),
        (("generate", "x", "--model", model_dir, "--sketch", tmp_path / "nope.wav"), "does not exist"),
        (("accompany", tmp_path / "nope.wav", "--prompt", "x", "--model", model_dir), "does not exist"),
        (("generate", "x", "--model", model_dir, "--sketch", bad), "cannot read audio"),
        (("accompany", bad, "--prompt", "x", "--model", model_dir), "cannot read audio"),
        (("generate", "x", "--model", model_dir, "--sketch", badjson), "cannot read control curves"),
        (("generate", "x", "--model", model_dir, "--sketch", wav, "--sketch-strength", 1.5), "in \\[0, 1\\]"),
        (("accompany", wav, "--prompt", "x", "--model", model_dir, "--cutoff", 4), "below 4"),
    ]
    for argv, message in cases:
        assert run_cli(*argv, "-o", tmp_path / "o.wav") == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("lmdm: error:") and re.search(message, err), (argv, err)
