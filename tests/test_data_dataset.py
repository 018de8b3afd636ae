"""Manifests, pre-encoding and the latent Dataset, with a tiny stand-in autoencoder."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from lmdm.data.dataset import (LatentDataset, build_manifest, collate_latents, encode_audio, encode_dataset,
                               read_manifest, write_manifest)
from lmdm.errors import DataError

SR = 44100


class ConvAE(torch.nn.Module):
    """One strided conv: 512 samples per frame, receptive field ±1 frame, so chunking with an
    overlap of at least one frame is exact."""
    sample_rate, downsampling_ratio, audio_channels = SR, 512, 2

    def __init__(self, dim=8):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(2, dim, kernel_size=3 * 512, stride=512, padding=512)

    def encode(self, audio):
        assert audio.shape[1] == 2 and audio.shape[-1] % 512 == 0
        return self.conv(audio)


def tone(seconds, freq=220.0, sr=SR, channels=2):
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * freq * t)] * channels, axis=1).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "music"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", tone(1.0), SR)
    (d / "a.txt").write_text("warm piano\n\nsoft piano, 90 BPM\n")
    sf.write(d / "sub" / "b.flac", tone(0.6, 330, sr=22050, channels=1), 22050)
    (d / "sub" / "b.json").write_text(json.dumps({"captions": ["a flute"], "metadata": {"tempo": 90}}))
    sf.write(d / "c.wav", tone(0.2), SR)                        # shorter than the crop used below
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (d / "empty.flac").write_bytes(b"")
    (d / "notes.md").write_text("not audio")
    return d


def test_build_manifest_skips_and_reports_unreadable_audio(folder):
    report = build_manifest(folder)
    assert report.manifest == folder / "manifest.jsonl"
    assert sorted(e["path"] for e in report.entries) == ["a.wav", "c.wav", "sub/b.flac"]
    assert len(report.skipped) == 2 and {p.split("/")[-1] for p, _ in report.skipped} == {"broken.wav", "empty.flac"}
    entries = {e["path"]: e for e in read_manifest(report.manifest)}
    assert entries["a.wav"]["captions"] == ["warm piano", "soft piano, 90 BPM"]
    assert entries["a.wav"]["duration"] == pytest.approx(1.0) and entries["a.wav"]["channels"] == 2
    assert entries["sub/b.flac"] == {"path": "sub/b.flac", "duration": pytest.approx(0.6), "sample_rate": 22050,
                                     "channels": 1, "captions": ["a flute"], "metadata": {"tempo": 90}}
    assert entries["c.wav"]["captions"] == []


def test_manifest_errors_name_the_problem(folder, tmp_path):
    report = build_manifest(folder)
    (folder / "a.wav").unlink()
    with pytest.raises(DataError, match=r"1 missing file.*a\.wav"):
        read_manifest(report.manifest)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"path": "x.wav", "duration": 1.0}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: field 'sample_rate'"):
        read_manifest(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no audio files"):
        build_manifest(empty)


def test_chunked_encoding_equals_whole():
    ae = ConvAE()
    audio = tone(2.0).T.copy()
    whole = encode_audio(ae, audio)
    chunked = encode_audio(ae, audio, chunk_frames=40, overlap_frames=2)
    assert whole.shape == (8, int(np.ceil(2.0 * SR / 512)))
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


@pytest.fixture
def encoded(folder, tmp_path):
    report = build_manifest(folder)
    # give clip a.wav two stems that sum to it
    sf.write(folder / "a_low.wav", tone(1.0) * 0.5, SR)
    sf.write(folder / "a_high.wav", tone(1.0) * 0.5, SR)
    entries = read_manifest(report.manifest)
    for e in entries:
        if e["path"] == "a.wav":
            e["stems"] = {"low": "a_low.wav", "high": "a_high.wav"}
    write_manifest(entries, report.manifest)
    out = encode_dataset(report.manifest, ConvAE(), tmp_path / "latents", chunk_seconds=0.3, shard_mb=1e-4,
                         progress=False)
    return out.parent


def test_encode_dataset_writes_shards_and_manifest(encoded):
    info = json.loads((encoded / "latents.json").read_text())
    assert info["latent_dim"] == 8 and info["downsampling_ratio"] == 512 and info["clips"] == 3
    records = [json.loads(line) for line in (encoded / "latents.jsonl").read_text().splitlines()]
    assert len({r["shard"] for r in records}) == 3            # tiny shard size: one clip per shard
    by_path = {r["path"]: r for r in records}
    assert by_path["a.wav"]["frames"] == int(np.ceil(SR / 512))
    assert by_path["sub/b.flac"]["frames"] == int(np.ceil(0.6 * SR / 512))   # resampled 22.05 -> 44.1 kHz
    assert set(by_path["a.wav"]["stems"]) == {"low", "high"}


def test_latent_dataset_crops(encoded):
    with pytest.warns(UserWarning, match="1 of 3 clips are shorter"):
        ds = LatentDataset(encoded, crop_frames=32, stems=True, controls=True, seed=0)
    assert len(ds) == 2 and ds.skipped == ["c.wav"]
    item = ds[[r["path"] for r in ds.records].index("a.wav")]
    assert item["latents"].shape == (8, 32) and item["controls"].shape == (4, 32)
    assert item["caption"] in ("warm piano", "soft piano, 90 BPM")
    assert set(item["stems"]) == {"low", "high"} and item["stems"]["low"].shape == (8, 32)
    again = ds[[r["path"] for r in ds.records].index("a.wav")]
    assert again["start"] == item["start"]                    # seeded: same epoch, same crop
    batch = collate_latents([ds[0], ds[1]])
    assert batch["latents"].shape == (2, 8, 32) and batch["controls"].shape == (2, 4, 32)
    assert batch["stems"]["low"].shape == (2, 8, 32) and batch["stem_mask"]["low"].sum() == 1
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_latents)
    assert next(iter(loader))["latents"].shape == (2, 8, 32)
    with pytest.raises(DataError, match=r"1 clip\(s\) shorter than the crop of 32 frames: c\.wav"):
        LatentDataset(encoded, crop_frames=32, short="error")
    with pytest.raises(DataError, match="no clip"), pytest.warns(UserWarning):
        LatentDataset(encoded, crop_frames=10_000)


def test_nan_latents_are_rejected_with_the_clip(encoded, folder, tmp_path):
    from safetensors.torch import load_file, save_file
    record = json.loads((encoded / "latents.jsonl").read_text().splitlines()[0])
    shard = encoded / record["shard"]
    tensors = load_file(str(shard))
    tensors[record["latents"]][0, 3] = float("nan")
    save_file(tensors, str(shard))
    with pytest.raises(DataError, match=f"non-finite latents for clip {record['path']}"):
        LatentDataset(encoded, crop_frames=8)

    class NaNAE(ConvAE):
        def encode(self, audio):
            return super().encode(audio) * float("nan")
    with pytest.raises(DataError, match=r"a\.wav: the autoencoder produced non-finite latents"):
        encode_dataset(folder / "manifest.jsonl", NaNAE(), tmp_path / "nan", progress=False)


def test_cli_manifest_and_encode_without_autoencoder(folder, tmp_path, capsys):
    from lmdm.checkpoints import save_pretrained
    from lmdm.cli import main
    assert main(["data", "manifest", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "indexed 3 clips" in out and "skipped 2 unreadable file(s)" in out and "broken.wav" in out
    import lmdm
    model = lmdm.LiveMusicModel(lmdm.preset("tiny"))
    assert model.autoencoder is None
    save_pretrained(model, tmp_path / "model")
    assert main(["data", "encode", str(folder / "manifest.jsonl"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "z"), "--quiet"]) == 2
    assert "has no autoencoder" in capsys.readouterr().err


def test_cli_encode_with_a_model_autoencoder(folder, tmp_path, capsys):
    import lmdm
    from lmdm.checkpoints import save_pretrained
    from lmdm.cli import main
    build_manifest(folder)
    cfg = lmdm.preset("tiny")
    cfg.autoencoder = {"channels": 4, "c_mults": [1, 2], "strides": [4, 8], "latent_dim": cfg.dit.io_channels}
    save_pretrained(lmdm.LiveMusicModel(cfg), tmp_path / "model")
    assert main(["data", "encode", str(folder / "manifest.jsonl"), "--model", str(tmp_path / "model"), "--out",
                 str(tmp_path / "z"), "--quiet", "--chunk-seconds", "0.5"]) == 0
    info = json.loads((tmp_path / "z" / "latents.json").read_text())
    assert info["downsampling_ratio"] == 32 and info["latent_dim"] == cfg.dit.io_channels and info["clips"] == 3
    ds = LatentDataset(tmp_path / "z", crop_frames=64, controls=True)
    assert ds[0]["latents"].shape == (cfg.dit.io_channels, 64) and ds[0]["controls"].shape == (4, 64)
