"""Autoencoder training: a few GAN steps on sine clips; held-out metrics; bad manifests reported."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from lmdm.errors import DataError
from lmdm.train.autoencoder import mrstft_loss, si_sdr, train_autoencoder
from lmdm.train.config import TrainConfig

SR = 8000


def make_manifest(folder, seconds=(0.5, 0.5, 0.5, 0.5)):
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * SR)) / SR
        sf.write(str(folder / f"sine{i}.wav"), (0.5 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32), SR)
        lines.append({"path": f"sine{i}.wav", "duration": s, "sample_rate": SR, "channels": 1,
                      "captions": [], "metadata": {}})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder / "manifest.jsonl"


def cfg_for(tmp, manifest, **ae):
    return TrainConfig.from_dict({
        "run": {"out_dir": str(tmp / "run"), "steps": 3, "batch_size": 2, "progress": False, "log_every": 1,
                "eval_every": 3, "demo_every": 3, "checkpoint_every": 3},
        "optim": {"lr": 1e-3},
        "autoencoder": {"model": {"audio_channels": 1, "channels": 4, "c_mults": [1, 2], "strides": [2, 4],
                                  "latent_dim": 4, "sample_rate": SR},
                        "manifest": str(manifest), "heldout_clips": 1, "crop_seconds": 0.1, "adv_start": 1,
                        "disc_channels": 4, "fft_sizes": [128, 64, 32], **ae}})


def test_autoencoder_gan_steps_metrics_and_export(tmp_path):
    last = train_autoencoder(cfg_for(tmp_path, make_manifest(tmp_path / "audio")))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "generator_loss" in x]
    assert len(train) == 3 and "adv" not in train[0] and {"adv", "fm", "stft", "kl"} <= train[1].keys()
    assert all(np.isfinite(x["generator_loss"]) and np.isfinite(x["discriminator_loss"]) for x in train)
    evals = [x for x in lines if "heldout_si_sdr_db" in x]
    assert len(evals) == 1 and np.isfinite(evals[0]["heldout_mrstft"])
    assert (tmp_path / "run" / "demos" / "step-00000003-recon.wav").is_file()
    assert (tmp_path / "run" / "model" / "autoencoder.safetensors").is_file() and last["step"] == 3


def test_reconstruction_metrics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4000, generator=g)
    assert (si_sdr(3 * x, x) > 100).all()              # scale-invariant
    assert float(mrstft_loss(x, x, [64, 32])) == 0.0
    assert float(si_sdr(x + 0.1 * torch.randn(2, 1, 4000, generator=g), x).mean()) == pytest.approx(20, abs=1)


def test_bad_manifests(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="lists no clips"):
        train_autoencoder(cfg_for(tmp_path, empty))
    short = make_manifest(tmp_path / "short", seconds=(0.5, 0.05, 0.5))
    with pytest.raises(DataError, match=r"sine1.wav \(0.05 s\)"):
        train_autoencoder(cfg_for(tmp_path, short))


def test_unit_latents_export_and_loading_it_into_a_model(tmp_path):
    from lmdm.config import ModelConfig, preset
    from lmdm.checkpoints import load_autoencoder_dir
    from lmdm.errors import ConfigError
    from lmdm.engine.model import LiveMusicModel
    from lmdm.train.autoencoder import latent_std
    from lmdm.train.finetune import load_autoencoder_weights
    cfg = cfg_for(tmp_path, make_manifest(tmp_path / "audio"), noise_scale=0.0, unit_latents=True, adv_weight=0.0,
                  wave_weight=1.0)
    train_autoencoder(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(x["wave"]) for x in lines if "loss" in x and "wave" in x)
    assert any("wave" in x for x in lines)
    export = tmp_path / "run" / "model"
    ae = load_autoencoder_dir(export)
    clips = [(None, torch.from_numpy(sf.read(str(tmp_path / "audio" / f"sine{i}.wav"), dtype="float32")[0][None]))
             for i in range(3)]   # the training clips (the last one is held out)
    assert latent_std(ae, clips) == pytest.approx(1.0, rel=1e-3)
    assert json.loads((export / "latent_scale.json").read_text())["rescaled_by"] > 0

    config = preset("tiny").to_dict()
    config["autoencoder"] = json.loads((export / "autoencoder.json").read_text())
    config["sample_rate"] = config["autoencoder"]["sample_rate"]   # a model plays at its codec's rate
    config["dit"]["io_channels"], config["dit"]["input_groups"] = 4, {"context": 5}
    model = LiveMusicModel(ModelConfig.from_dict(config))
    load_autoencoder_weights(model, str(export))
    for key, value in ae.state_dict().items():
        assert torch.equal(model.autoencoder.state_dict()[key], value)
    config["autoencoder"]["channels"] = 8
    with pytest.raises(ConfigError, match="does not match"):
        load_autoencoder_weights(LiveMusicModel(ModelConfig.from_dict(config)), str(export))


def test_rescaling_latents_is_exact_for_the_decoder():
    from lmdm.models.autoencoder import Autoencoder, AutoencoderConfig
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(audio_channels=1, channels=4, c_mults=[1, 2], strides=[2, 4], latent_dim=4,
                                       sample_rate=SR)).eval()
    x = torch.randn(1, 1, 800)
    with torch.no_grad():
        z, y = ae.encode(x), ae.decode(ae.encode(x))
        ae.rescale_latents(2.5)
        assert torch.allclose(ae.encode(x), 2.5 * z, atol=1e-5)
        assert torch.allclose(ae.decode(ae.encode(x)), y, atol=1e-5)


def test_decoder_only_training_keeps_the_latent_space(tmp_path):
    from safetensors.torch import load_file, save_file
    from lmdm.errors import ConfigError
    manifest = make_manifest(tmp_path / "audio")
    train_autoencoder(cfg_for(tmp_path / "a", manifest, adv_weight=0.0))
    first = load_file(str(tmp_path / "a" / "run" / "model" / "autoencoder.safetensors"))
    save_file(first, str(tmp_path / "init.safetensors"))
    cfg = cfg_for(tmp_path / "b", manifest, init=str(tmp_path / "init.safetensors"), trainable=["decoder.*"])
    with pytest.raises(ConfigError, match="unit_latents"):
        train_autoencoder(TrainConfig.from_dict({**cfg.to_dict(), "autoencoder": {
            **cfg.to_dict()["autoencoder"], "unit_latents": True}}))
    last = train_autoencoder(cfg)
    second = load_file(str(tmp_path / "b" / "run" / "model" / "autoencoder.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first if k.startswith("encoder."))
    assert any(not torch.equal(first[k], second[k]) for k in first if k.startswith("decoder."))
    assert last["step"] == 3
    with pytest.raises(ConfigError, match="matches no parameter"):
        train_autoencoder(cfg_for(tmp_path / "c", manifest, trainable=["nothing.*"]))
    with pytest.raises(ConfigError, match="latent_noise"):
        train_autoencoder(cfg_for(tmp_path / "d", manifest, latent_noise=0.1))
    # noisy latents: a different decoder from the same start, the same encoder
    train_autoencoder(cfg_for(tmp_path / "e", manifest, init=str(tmp_path / "init.safetensors"),
                              trainable=["decoder.*"], latent_noise=0.5))
    noisy = load_file(str(tmp_path / "e" / "run" / "model" / "autoencoder.safetensors"))
    assert all(torch.equal(first[k], noisy[k]) for k in first if k.startswith("encoder."))
    assert any(not torch.equal(second[k], noisy[k]) for k in first if k.startswith("decoder."))
