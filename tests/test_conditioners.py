"""Text encoders (byte, MiniLM from its package, T5 from a local directory), blending, numbers."""
import pytest
import torch

from lmdm.errors import CheckpointError, ConfigError
from conftest import make_tiny_t5
from lmdm.models.conditioners import (ByteTextEncoder, NumberConditioner, PretrainedTextEncoder, blend,
                                      check_prompts, dominant)


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    return make_tiny_t5(tmp_path_factory.mktemp("t5"), d_model=32)


def test_t5_from_local_directory_zeroes_padding_and_keeps_length(tiny_t5_dir):
    enc = PretrainedTextEncoder("t5", str(tiny_t5_dir), dim=32, max_tokens=8)
    out = enc(["warm piano", "dub techno drums bass"])
    assert out.shape == (2, 8, 32)
    assert out[0, :2].abs().sum() > 0 and not out[0, 2:].any()  # 2 words, rest padding zeroed
    assert out[1, :4].abs().sum() > 0
    assert not any(True for _ in enc.parameters())  # frozen weights live outside the checkpoint


def test_wrong_width_and_missing_directory_are_clear(tiny_t5_dir, tmp_path):
    with pytest.raises(ConfigError, match="32-wide but dit.cond_token_dim is 768"):
        PretrainedTextEncoder("t5", str(tiny_t5_dir), dim=768)(["piano"])
    with pytest.raises(CheckpointError, match="never downloads"):
        PretrainedTextEncoder("t5", str(tmp_path / "no-t5"), dim=768)(["piano"])


def test_minilm_from_its_package():
    enc = PretrainedTextEncoder("minilm", "", dim=384, max_tokens=16)
    a, b = enc(["funky bass groove", "ambient pad"]), enc(["funky bass groove", "funky bass groove"])
    assert a.shape == (2, 16, 384)
    assert torch.equal(a[0], b[1]) and not torch.equal(a[0], a[1])


def test_blend_and_dominant():
    e = torch.stack((torch.ones(3, 2), torch.zeros(3, 2)))
    assert torch.allclose(blend(e, [3.0, 1.0]), torch.full((1, 3, 2), 0.75))
    assert dominant([("a", 0.5), ("b", 0.7), ("c", 0.7)]) == "b"
    assert check_prompts("x") == [("x", 1.0)]


def test_byte_encoder_is_deterministic_and_truncates():
    enc = ByteTextEncoder(16, max_tokens=4)
    out = enc(["ab", "abcdefgh", "ab"])
    assert out.shape == (3, 4, 16) and torch.equal(out[0], out[2]) and not torch.equal(out[0], out[1])


def test_number_conditioner_clamps_to_range():
    nc = NumberConditioner(8, 0, 256)
    out = nc(torch.tensor([300.0, 256.0, -5.0, 0.0]))
    assert out.shape == (4, 1, 8)
    assert torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[2], out[3], atol=1e-6)
    assert not torch.allclose(out[1], out[2])
