"""Pluggable FD embedders: the registry, clear errors for missing local weights, VGGish built here and
loaded strictly from a torchvggish-layout state dict, a tiny random CLAP through transformers offline."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from lmdm.errors import CheckpointError, ConfigError
from lmdm.eval.embedders import (EMBEDDERS, VGGish, load_embedder, vggish_examples, vggish_mel_matrix)
from lmdm.eval.metrics import frechet_distance
from lmdm.eval.tagger import Tagger, TaggerConfig

TORCHVGGISH_KEYS = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 11, 13) for p in ("weight", "bias")} | {
    f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}


def _clips(n=3, seconds=1.5, sr=22050, channels=2, seed=0):
    return np.random.default_rng(seed).normal(scale=0.1, size=(n, channels, int(seconds * sr))).astype(np.float32)


@pytest.fixture(scope="module")
def vggish_pth(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vggish") / "vggish.pth"
    torch.save(VGGish().state_dict(), path)
    return path


def test_registry_names_and_unknown_or_pathless_specs_fail_clearly():
    assert set(EMBEDDERS) == {"lmdm", "vggish", "clap", "openl3"}
    with pytest.raises(ConfigError, match="unknown embedder 'fad'"):
        load_embedder("fad")
    with pytest.raises(ConfigError, match="vggish:/path/to/vggish.pth"):
        load_embedder("vggish")
    with pytest.raises(ConfigError, match="clap:/path/to/clap_dir"):
        load_embedder("clap")


def test_missing_local_weights_name_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match=r"no VGGish weights at .*--embedder vggish:"):
        load_embedder(f"vggish:{tmp_path / 'none.pth'}")
    with pytest.raises(CheckpointError, match=r"no CLAP model at .*--embedder clap:"):
        load_embedder(f"clap:{tmp_path}")
    with pytest.raises(CheckpointError, match="train one"):
        load_embedder(f"lmdm:{tmp_path / 'none.safetensors'}")


def test_openl3_is_optional():
    try:
        import openl3  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install openl3"):
            load_embedder("openl3")


def test_vggish_network_and_front_end_shapes(vggish_pth):
    net = VGGish()
    assert set(net.state_dict()) == TORCHVGGISH_KEYS
    assert net(torch.randn(2, 1, 96, 64)).shape == (2, 128)
    fb = vggish_mel_matrix()
    assert fb.shape == (257, 64) and (fb[0] == 0).all() and (fb.sum(1)[5:235] > 0).all()
    ex = vggish_examples(np.random.default_rng(0).normal(size=16000 * 2) * 0.1)
    assert ex.shape == (2, 96, 64) and np.isfinite(ex).all()   # 0.96 s examples, tail dropped
    assert vggish_examples(np.zeros(3000)).shape == (1, 96, 64)  # shorter than one example


def test_vggish_loads_strictly_and_embeds_any_rate_and_channel_count(vggish_pth, tmp_path):
    embed = load_embedder(f"vggish:{vggish_pth}")
    assert embed.name == "vggish"
    clips = _clips()
    out = embed(clips, 22050)
    assert out.shape == (3, 128) and np.isfinite(out).all()
    assert np.allclose(embed(clips[:, :1], 22050), embed(np.repeat(clips[:, :1], 2, 1), 22050), atol=1e-5)
    state = torch.load(vggish_pth)
    del state["features.6.weight"]
    state["head.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \['features.6.weight'\].*unexpected keys \['head.weight'\]"):
        load_embedder(f"vggish:{tmp_path / 'broken.pth'}")


def test_frechet_distance_through_a_non_default_embedder(vggish_pth):
    embed = load_embedder(f"vggish:{vggish_pth}")
    a, b = embed(_clips(6, seed=1), 44100), embed(_clips(6, seed=2), 44100)
    louder = embed(_clips(6, seed=3) * 8, 44100)
    assert frechet_distance(a, a) < 1e-6
    assert frechet_distance(a, louder) > frechet_distance(a, b) >= 0


def test_default_embedder_is_the_tagger():
    torch.manual_seed(0)
    tagger = Tagger(TaggerConfig(styles=["a", "b"]))
    embed = load_embedder(None, tagger)
    clips = _clips(2)
    assert embed.name == "lmdm" and np.allclose(embed(clips, 22050), tagger.embed_audio(torch.from_numpy(clips), 22050))


def test_clap_from_a_local_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    audio = dict(depths=[1, 1], num_attention_heads=[1, 2], hidden_size=16, patch_embeds_hidden_size=8, window_size=4,
                 spec_size=128, num_mel_bins=16, projection_dim=8, enable_fusion=False, patch_stride=[4, 4],
                 patch_size=4)
    text = dict(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
                projection_dim=8, max_position_embeddings=40)
    torch.manual_seed(0)
    model = transformers.ClapModel(transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=8))
    model.save_pretrained(tmp_path / "clap")
    transformers.ClapFeatureExtractor(feature_size=16).save_pretrained(tmp_path / "clap")
    embed = load_embedder(f"clap:{tmp_path / 'clap'}")
    assert embed.name == "clap"
    out = embed(_clips(2, seconds=2.0), 22050)
    assert out.shape == (2, 8) and np.isfinite(out).all()
    again = embed(_clips(2, seconds=2.0), 22050)
    assert np.allclose(out, again, atol=1e-5)


def test_cli_rejects_a_missing_embedder_path_before_generating(tmp_path):
    run = subprocess.run([sys.executable, "-m", "lmdm", "eval", "--model", str(tmp_path / "m"), "--reference",
                          str(tmp_path / "manifest.jsonl"), "--embedder", f"vggish:{tmp_path / 'v.pth'}",
                          "--no-baseline", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert run.returncode == 2 and "--embedder vggish:" in run.stderr
