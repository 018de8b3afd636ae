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
