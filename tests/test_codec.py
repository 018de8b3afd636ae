"""The spectral codec (lmdm.models.codec): config and factory, shapes, streaming == offline in both
directions (and across a saved stream state), a LiveMusicModel that streams with it, and its
training (a few GAN steps, resume == uninterrupted)."""
import json

import pytest
import torch

from lmdm.errors import ConfigError, ShapeError
from lmdm.models.autoencoder import Autoencoder
from lmdm.models.codec import CodecConfig, SpectralCodec, build_autoencoder
from streaming_pieces import stream_in_pieces

TINY = dict(n_fft=64, hop=16, frames_per_latent=2, latent_dim=4, channels=16, encoder_frame_blocks=1,
            encoder_latent_blocks=1, decoder_latent_blocks=1, decoder_frame_blocks=2)


def tiny(seed: int = 0, dtype=torch.float32, **overrides) -> SpectralCodec:
    torch.manual_seed(seed)
    model = SpectralCodec(CodecConfig(**{**TINY, **overrides})).to(dtype).eval()
    with torch.no_grad():   # layer scales of 1, so every block changes the output
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    return model


def test_config_round_trip_validation_and_factory():
    c = CodecConfig(**TINY)
    assert CodecConfig.from_dict(c.to_dict()) == c and c.to_dict()["kind"] == "spectral"
    assert (c.downsampling_ratio, c.decoder_delay_samples, c.decoder_lookahead_frames, c.encoder_lookahead_samples) \
        == (32, 48, 2, 0)
    big = CodecConfig()
    assert (big.downsampling_ratio, big.decoder_delay_samples, big.decoder_lookahead_frames) == (2048, 1536, 1)
    for bad in ({"hop": 48}, {"n_fft": 63}, {"hop": 64}, {"latent_dim": 0}, {"decoder_frame_blocks": -1},
                {"kind": "oobleck"}, {"channels": 1.5}, {"whatever": 1}, {"phase_advance": 1}):
        with pytest.raises(ConfigError):
            CodecConfig.from_dict({**c.to_dict(), **bad})
    assert isinstance(build_autoencoder(c.to_dict()), SpectralCodec)
    oobleck = {"audio_channels": 1, "channels": 4, "c_mults": [1, 2], "strides": [2, 4], "latent_dim": 4}
    assert isinstance(build_autoencoder(oobleck), Autoencoder)                  # configs without a kind: Oobleck
    assert isinstance(build_autoencoder({**oobleck, "kind": "oobleck"}), Autoencoder)
    with pytest.raises(ConfigError, match="kind"):
        build_autoencoder({**oobleck, "kind": "dac"})


def test_encode_decode_shapes_padding_and_bad_input():
    model = tiny()
    audio = torch.randn(2, 2, 100)
    with torch.no_grad():
        z = model.encode(audio)
        assert z.shape == (2, 4, 4)                     # ceil(100 / 32), the end zero-padded
        padded = torch.nn.functional.pad(audio, (0, 28))
        torch.testing.assert_close(model.encode(padded), z)
        y = model.decode(z)
        assert y.shape == (2, 2, 128) and y.dtype == torch.float32
        rec, kl = model(audio, generator=torch.Generator().manual_seed(0))
        assert rec.shape == (2, 2, 128) and kl.ndim == 0 and kl > 0
        sampled = model.encode(audio, sample=True, generator=torch.Generator().manual_seed(1))
        assert not torch.equal(sampled, z)
    for call, x in [(model.decode, torch.randn(1, 3, 10)), (model.decode, torch.randn(1, 4, 0)),
                    (model.encode, torch.randn(1, 1, 64)), (model.encode, torch.full((1, 2, 8), float("nan")))]:
        with pytest.raises(ShapeError):
            call(x)


@pytest.mark.parametrize("dtype, tol, advance", [(torch.float32, 1e-5, False), (torch.float64, 1e-12, False),
                                                 (torch.float32, 1e-5, True)])
def test_streaming_decoder_equals_offline(dtype, tol, advance):
    model = tiny(dtype=dtype, phase_advance=advance)
    z = torch.randn(2, 4, 50, dtype=dtype)
    with torch.no_grad():
        ref = model.decode(z)
    assert ref.abs().max() > 0.05
    sd = model.streaming_decoder()
    assert sd.delay_samples == 48 and sd.lookahead_frames == 2 and sd.delay_ms == pytest.approx(48 / 44.1)
    for sizes in ([1], [7], [50], [0, 3, 1, 13, 2]):
        pieces = []
        for out, frames_in in stream_in_pieces(sd, z, sizes):
            pieces.append(out)
            if frames_in is not None:   # every sample whose frames all exist, no more
                assert sd.produced == max(0, frames_in * 32 - 48)
        y = torch.cat(pieces, -1)
        assert y.shape == ref.shape and y.dtype == dtype and sd.produced == 0
        assert (y - ref).abs().max().item() < tol


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_streaming_encoder_equals_offline(dtype, tol):
    model = tiny(dtype=dtype)
    audio = torch.randn(2, 2, 1001, dtype=dtype)
    with torch.no_grad():
        ref = model.encode(audio)
    se = model.streaming_encoder()
    assert se.lookahead_samples == 0
    for sizes in ([1, 2, 0, 5], [37], [500], [4096]):
        pieces = []
        for out, samples_in in stream_in_pieces(se, audio, sizes):
            pieces.append(out)
            if samples_in is not None:   # a latent frame as soon as its own span is in
                assert se.produced == samples_in // 32
        y = torch.cat(pieces, -1)
        assert y.shape == ref.shape == (2, 4, 32)
        assert (y - ref).abs().max().item() < tol


def test_stream_state_round_trip_continues_exactly():
    model = tiny(seed=2, phase_advance=True)
    z, audio = torch.randn(1, 4, 30), torch.randn(1, 2, 700)
    for make, x, cut in ((model.streaming_decoder, z, 11), (model.streaming_encoder, audio, 333)):
        a = make()
        whole = torch.cat((a.push(x), a.flush()), -1)
        b = make()
        first = b.push(x[..., :cut])
        c = make()
        c.load_state_dict({k: v.clone() for k, v in b.state_dict().items()})
        rest = torch.cat((c.push(x[..., cut:]), c.flush()), -1)
        torch.testing.assert_close(torch.cat((first, rest), -1), whole, atol=1e-6, rtol=1e-5)


def test_bfloat16_rescaling_and_reset():
    model = tiny(seed=1)
    audio = torch.randn(1, 2, 320)
    with torch.no_grad():
        z = model.encode(audio)
        y = model.decode(z)
        model.rescale_latents(3.0)
        torch.testing.assert_close(model.encode(audio), 3 * z, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.decode(3 * z), y, atol=1e-5, rtol=1e-4)
        half = tiny(seed=1).to(torch.bfloat16)
        yb = half.decode(z.to(torch.bfloat16))
        assert yb.dtype == torch.bfloat16 and yb.shape == y.shape and torch.isfinite(yb.float()).all()
    sd = model.streaming_decoder()
    sd.push(torch.randn(2, 4, 5))
    with pytest.raises(ShapeError, match="batch"):
        sd.push(torch.randn(1, 4, 3))
    sd.reset()
    assert sd.flush().shape[-1] == 0


def test_live_music_model_streams_and_saves_with_the_codec(tmp_path):
    import lmdm
    from lmdm.checkpoints import from_pretrained, save_pretrained
    cfg = lmdm.preset("tiny", "block-causal")
    cfg.autoencoder = CodecConfig(**{**TINY, "latent_dim": cfg.dit.io_channels}).to_dict()
    cfg.downsampling_ratio, cfg.sample_rate = 32, 44100
    cfg.pattern.block_frames, cfg.pattern.context_frames = 8, 24
    cfg.dit.input_groups = {"context": cfg.dit.io_channels + 1, "accompaniment": cfg.dit.io_channels + 1}
    cfg.steps = 2
    torch.manual_seed(0)
    model = lmdm.LiveMusicModel(cfg.validate()).eval()
    assert isinstance(model.autoencoder, SpectralCodec)
    stream = model.stream("warm piano", seed=3)
    blocks = [stream.next_block() for _ in range(3)]
    assert blocks[0].shape == (1, 2, 8 * 32 - 48) and all(b.shape == (1, 2, 8 * 32) for b in blocks[1:])
    assert all(torch.isfinite(b).all() for b in blocks)
    stream.push_input(torch.randn(1, 2, 100))   # live input goes through the streaming encoder
    folder = save_pretrained(model, tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["autoencoder"]["kind"] == "spectral"
    again = from_pretrained(folder)
    for k, v in model.autoencoder.state_dict().items():
        assert torch.equal(again.autoencoder.state_dict()[k], v)


def test_mel_filterbank_covers_the_spectrum():
    from lmdm.train.codec import mel_filterbank
    fb = mel_filterbank(2048, 128, 44100)
    assert fb.shape == (128, 1025) and (fb >= 0).all()
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[0] < 5 and peaks[-1] > 900   # low to high, in order


def _sine_manifest(folder, sr=8000, pieces=3, seconds=0.6):
    import numpy as np
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(pieces):
        left, right = np.sin(2 * np.pi * (220 + 110 * i) * t), np.sin(2 * np.pi * (330 + 55 * i) * t)
        sf.write(str(folder / f"s{i}.wav"), (0.4 * np.stack((left, right), 1)).astype(np.float32), sr)
        lines.append({"path": f"s{i}.wav", "duration": seconds, "sample_rate": sr, "channels": 2,
                      "captions": [], "metadata": {}})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder / "manifest.jsonl"


def _train_cfg(out, manifest):
    from lmdm.train.config import TrainConfig
    return TrainConfig.from_dict({
        "run": {"out_dir": str(out), "steps": 4, "batch_size": 2, "progress": False, "log_every": 1,
                "eval_every": 4, "checkpoint_every": 2, "ema_decay": 0.9},
        "optim": {"lr": 1e-3},
        "autoencoder": {"model": {**CodecConfig(**TINY, phase_advance=True).to_dict(), "sample_rate": 8000},
                        "manifest": str(manifest), "heldout_clips": 1, "crop_seconds": 0.2, "adv_start": 2,
                        "disc_channels": 4, "disc_fft_sizes": [128, 64], "disc_crop_seconds": 0.1,
                        "fft_sizes": [512, 256, 128, 64], "mel_weight": 1.0, "spectral_weight": 1.0,
                        "phase_weight": 1.0, "unit_latents": True}})


def test_training_gan_steps_export_and_exact_resume(tmp_path):
    from lmdm.checkpoints import load_autoencoder_dir
    from lmdm.train.codec import train_codec
    from lmdm.train.loop import list_checkpoints, read_checkpoint
    manifest = _sine_manifest(tmp_path / "audio")
    last = train_codec(_train_cfg(tmp_path / "a", manifest))
    assert last["step"] == 4 and {"stft", "mel", "spectral", "phase", "kl", "adv", "fm"} <= last.keys()
    metrics = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "generator_loss" in m]
    assert "adv" not in steps[0] and "adv" in steps[-1]                       # the GAN starts at adv_start
    assert {"heldout_si_sdr_db", "heldout_mel"} <= set().union(*metrics)
    codec = load_autoencoder_dir(tmp_path / "a" / "model")                    # the export loads as a codec
    assert isinstance(codec, SpectralCodec) and (tmp_path / "a" / "model" / "latent_scale.json").is_file()

    train_codec(_train_cfg(tmp_path / "b", manifest), stop_at=2)
    train_codec(_train_cfg(tmp_path / "b", manifest), resume=True)            # a fresh process, as after a crash
    a, b = (read_checkpoint(list_checkpoints(tmp_path / d)[-1]) for d in ("a", "b"))
    assert a["step"] == b["step"] == 4
    for name in ("autoencoder", "discriminator"):
        for k, v in a["modules"][name].items():
            assert torch.equal(v, b["modules"][name][k]), (name, k)
    assert all(torch.equal(v, b["ema"][k]) for k, v in a["ema"].items())


def test_synthesis_inverts_the_codec_stft():
    """The head's overlap-add is the exact inverse of `stft` in the codec's framing, so spectra equal
    to the input's give the input back (all but the last n_fft - hop samples, which later frames complete)."""
    from lmdm.models.codec import stft
    model = tiny(dtype=torch.float64)
    x = torch.randn(2, 2, 640, dtype=torch.float64)
    y = model.decoder[-1].synthesize(stft(x, 64, 16))
    torch.testing.assert_close(y[..., :640 - 48], x[..., :640 - 48], atol=1e-10, rtol=1e-10)


def test_phase_losses_vanish_on_the_target_and_see_a_shift():
    from lmdm.train.codec import phase_losses
    x = torch.randn(1, 2, 20, 33, dtype=torch.complex64)
    assert phase_losses(x, x).item() < 1e-5
    assert phase_losses(x * torch.exp(torch.tensor(2j * 3.14159)), x).item() < 1e-3   # a whole turn: no loss
    assert phase_losses(x * 1j, x).item() > 1.0                                        # a quarter turn: the IP term
