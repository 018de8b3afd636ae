"""Dynamics augmentation (`lmdm.data.augment`): the curves it reports are the curves in the audio,
`encode_dataset(augment_copies=)` stores the copies with their own controls, and training always
gives an augmented item its sketch."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from lmdm.data.augment import _lowpass_stft, augment_dynamics
from lmdm.audio.controls import extract_controls
from lmdm.audio.io import load_audio
from lmdm.data.dataset import LatentDataset, encode_audio, encode_dataset, write_manifest
from lmdm.errors import DataError

SR, HOP = 22050, 1024


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal((1, int(seconds * SR)))


def test_lowpass_with_an_infinite_cutoff_is_the_identity():
    x = noise(2.0)
    assert np.abs(_lowpass_stft(x, SR, lambda s: 1e12) - x).max() < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_reported_curves_are_the_ones_heard(seed):
    x = noise(10.0, seed)
    quiet, curves = augment_dynamics(x, SR, np.random.default_rng(seed), p_filter=0.0)
    assert "lowpass_hz" not in curves and np.abs(quiet).max() <= np.abs(x).max() + 1e-6   # gain only attenuates
    c = extract_controls(quiet, SR, HOP)
    times = np.arange(len(c["loudness"])) * HOP / SR
    expected_db = np.interp(times, *np.array(curves["gain_db"]).T)
    assert np.corrcoef(np.clip(c["loudness"], -80, 0), expected_db)[0, 1] > 0.98
    swept, curves = augment_dynamics(x, SR, np.random.default_rng(seed), p_filter=1.0)
    t, hz = np.array(curves["lowpass_hz"]).T
    c = extract_controls(swept, SR, HOP)
    assert np.corrcoef(c["centroid"], np.interp(times, t, np.log(hz)))[0, 1] > 0.95
    again, same = augment_dynamics(x, SR, np.random.default_rng(seed), p_filter=1.0)
    assert same == curves and np.array_equal(again, swept)   # seeded


class StrideAE(torch.nn.Module):
    """Mean of each hop of samples: latents that follow the audio's level."""
    sample_rate, downsampling_ratio, audio_channels = SR, HOP, 1

    def encode(self, audio):
        frames = audio.shape[-1] // HOP
        return audio[..., : frames * HOP].reshape(*audio.shape[:2], frames, HOP).abs().mean(-1).repeat(1, 2, 1)


def test_encode_dataset_augment_copies(tmp_path):
    entries = []
    for i in range(2):
        sf.write(tmp_path / f"c{i}.wav", noise(3.0, i)[0].astype(np.float32), SR)
        entries.append({"path": f"c{i}.wav", "duration": 3.0, "sample_rate": SR, "channels": 1,
                        "captions": [f"clip {i}"], "metadata": {}})
    write_manifest(entries, tmp_path / "m.jsonl")
    with pytest.raises(DataError, match="controls"):
        encode_dataset(tmp_path / "m.jsonl", StrideAE(), tmp_path / "bad", controls=False, augment_copies=1,
                       progress=False)
    out = encode_dataset(tmp_path / "m.jsonl", StrideAE(), tmp_path / "lat", progress=False, augment_copies=2,
                         augment_seed=7)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["000000", "000000-aug0", "000000-aug1", "000001", "000001-aug0", "000001-aug1"]
    assert ["augment" in r for r in records] == [False, True, True] * 2
    data = LatentDataset(tmp_path / "lat", 20, controls=True, seed=0)
    # a copy is the clip under exactly the curves its record names, with controls of that audio
    r = records[4]
    audio = load_audio(tmp_path / "c1.wav", SR, 1)
    expected, curves = augment_dynamics(audio, SR, np.random.default_rng([7, 1, 0]))
    assert curves == r["augment"]
    assert torch.allclose(data.tensors[r["latents"]], encode_audio(StrideAE(), expected, None), atol=1e-6)
    assert np.allclose(data.tensors[r["controls"]][0].numpy(), extract_controls(expected, SR, HOP)["loudness"],
                       atol=1e-4)
    assert not torch.allclose(data.tensors[r["latents"]], data.tensors[records[3]["latents"]], atol=1e-3)
    assert [data[i]["augmented"] for i in range(6)] == [False, True, True] * 2
