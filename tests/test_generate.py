"""End to end: prompts → latents → streamed audio → WAV, for a plain SAO directory and an LMDM."""
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from lmdm.checkpoints import convert_sao, from_pretrained
from lmdm.errors import ConfigError
from conftest import make_sao_dir, make_tiny_t5


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    sao, t5 = make_sao_dir(root / "sao"), make_tiny_t5(root / "t5", d_model=64)
    convert_sao(sao, root / "lmdm", "block-causal", block_frames=4, context_frames=12, t5_path=str(t5))
    return sao, t5, root / "lmdm"


def test_generate_cli_plain_sao_window(dirs, tmp_path):
    sao, t5, _ = dirs
    out = tmp_path / "sao.wav"
    run = subprocess.run([sys.executable, "-m", "lmdm", "generate", "warm piano", "--model", str(sao), "--t5", str(t5),
                          "--seconds", "0.2", "-o", str(out), "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    audio, sr = sf.read(out, always_2d=True)
    assert sr == 44100 and audio.shape == (round(0.2 * 44100), 2)
    assert abs(audio).max() > 0


def test_generate_cli_streams_an_lmdm_to_exact_length(dirs, tmp_path):
    _, _, lmdm_dir = dirs
    out = tmp_path / "lmdm.wav"
    run = subprocess.run([sys.executable, "-m", "lmdm", "generate", "dub techno", "--model", str(lmdm_dir),
                          "--seconds", "0.1", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "generating" in run.stderr  # the progress bar, with the real-time factor
    audio, sr = sf.read(out, always_2d=True)
    assert audio.shape == (round(0.1 * 44100), 2) and abs(audio).max() > 0


def test_streamed_audio_equals_offline_decode_of_the_latents(dirs):
    _, _, lmdm_dir = dirs
    model = from_pretrained(lmdm_dir)
    a, b = model.stream("piano", seed=4), model.stream("piano", seed=4)
    latents = torch.cat([a.next_latents() for _ in range(6)], -1)
    audio = torch.cat([b.next_block() for _ in range(6)] + [b.finish()], -1)
    with torch.no_grad():
        offline = model.autoencoder.decode(latents)
    assert audio.shape == offline.shape
    assert (audio - offline).abs().max() < 1e-4


def test_generate_rejects_bad_requests(dirs):
    sao, t5, _ = dirs
    model = from_pretrained(sao, t5_path=str(t5))
    with pytest.raises(ConfigError, match="one window of at most"):
        model.generate("piano", seconds=60)
    with pytest.raises(ConfigError, match=r"seconds must be a number in \(0, "):
        model.generate("piano", seconds=-1)


def test_restored_audio_stream_continues_bit_exactly(dirs, tmp_path):
    _, _, lmdm_dir = dirs
    model = from_pretrained(lmdm_dir)
    s = model.stream("piano", seed=9)
    for _ in range(5):
        s.next_block()
    s.save(tmp_path / "session.safetensors")
    want = [s.next_block() for _ in range(4)] + [s.finish()]
    again = model.stream("other")
    again.restore(tmp_path / "session.safetensors")
    got = [again.next_block() for _ in range(4)] + [again.finish()]
    for a, b in zip(want, got):
        assert torch.equal(a, b)
