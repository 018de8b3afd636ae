"""Strict checkpoint loading: lmdm's format, official SAO directories, conversion, parity."""
import copy
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmdm.checkpoints import convert_sao, from_pretrained, save_pretrained
from lmdm.sao import config_from_sao
from lmdm.errors import CheckpointError, ConfigError
from conftest import SAO_CONFIG, make_sao_dir, tiny_model
import sao_reference

@pytest.fixture
def sao_dir(tmp_path):
    return make_sao_dir(tmp_path / "sao")


def _inputs(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 8, n, generator=g), torch.tensor([0.9, 0.3]), torch.randn(2, 8, 64, generator=g)


def test_sao_directory_matches_independent_reference(sao_dir):
    model = from_pretrained(sao_dir)
    sd = load_file(str(sao_dir / "model.safetensors"))
    x, t, prompt_tokens = _inputs()
    seconds = torch.tensor([11.9, 30.0])
    with torch.no_grad():
        sec = model.seconds_total(seconds)
        ref_sec = sao_reference.number_conditioner(sd, seconds)
        assert (sec - ref_sec).abs().max() < 1e-5
        cross = torch.cat((prompt_tokens, ref_sec), 1)
        ours = model.dit(x, t, model.dit.condition(cross, ref_sec[:, 0]))
        ref = sao_reference.dit_forward(sd, x, t, cross, ref_sec[:, 0], heads=2)
    assert (ours - ref).abs().max() < 1e-4 * ref.abs().max()


def test_lmdm_format_round_trip_preserves_dtype_and_outputs(tmp_path):
    model = tiny_model().to(torch.bfloat16)
    save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.dit.dtype == torch.bfloat16 and loaded.config == model.config
    a, b = model.stream("x", seed=2), loaded.stream("x", seed=2)
    assert torch.equal(a.next_latents(), b.next_latents())


def _rewrite(folder, change):
    sd = load_file(str(folder / "model.safetensors"))
    change(sd)
    save_file(sd, str(folder / "model.safetensors"))


@pytest.mark.parametrize("damage,message", [
    (lambda sd: sd.pop("model.model.transformer.layers.1.ff.ff.2.bias"), "missing keys.*layers.1.ff.ff.2.bias"),
    (lambda sd: sd.__setitem__("model.model.extra.weight", torch.zeros(3)), "unexpected keys.*extra.weight"),
    (lambda sd: sd.__setitem__("model.model.preprocess_conv.weight", torch.zeros(8, 8, 3)),
     r"shape mismatches.*preprocess_conv.weight: file \(8, 8, 3\) vs model \(8, 8, 1\)"),
    (lambda sd: sd["model.model.transformer.project_in.weight"].__setitem__((0, 0), float("nan")),
     "non-finite values in.*project_in"),
    (lambda sd: sd.__setitem__("conditioner.conditioners.prompt.model.shared.weight", torch.zeros(2)),
     "unexpected keys.*conditioner.conditioners.prompt"),
])
def test_damaged_sao_checkpoints_are_named_errors(sao_dir, damage, message):
    _rewrite(sao_dir, damage)
    with pytest.raises(CheckpointError, match=message):
        from_pretrained(sao_dir)


def test_corrupt_and_missing_files(sao_dir, tmp_path):
    data = (sao_dir / "model.safetensors").read_bytes()
    (sao_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        from_pretrained(sao_dir)
    (sao_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        from_pretrained(sao_dir)
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither config.json"):
        from_pretrained(tmp_path / "empty")


def test_ckpt_is_read_weights_only(sao_dir):
    sd = load_file(str(sao_dir / "model.safetensors"))
    torch.save({"state_dict": sd}, sao_dir / "model.ckpt")
    (sao_dir / "model.safetensors").unlink()
    assert from_pretrained(sao_dir).config.dit.width == 128
    torch.save({"state_dict": sd, "hook": print}, sao_dir / "model.ckpt")  # needs pickle code: refused
    with pytest.raises(CheckpointError, match="weights-only"):
        from_pretrained(sao_dir)


def test_unsupported_sao_configs_are_named():
    for path, value, message in ((("model", "diffusion", "config", "attn_kwargs"), {}, "qk_norm"),
                                 (("model", "diffusion", "type"), "adp", "diffusion type"),
                                 (("model_type",), "autoencoder", "model_type")):
        cfg = copy.deepcopy(SAO_CONFIG)
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ConfigError, match=message):
            config_from_sao(cfg)


@pytest.mark.parametrize("pattern", ["block-causal", "enc-dec"])
def test_convert_starts_as_the_base_model(sao_dir, tmp_path, pattern):
    base = from_pretrained(sao_dir)
    out = subprocess.run([sys.executable, "-m", "lmdm", "convert", str(sao_dir), str(tmp_path / "lmdm"),
                          "--pattern", pattern, "--block", "4", "--context", "12"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lm = from_pretrained(tmp_path / "lmdm")
    assert lm.config.pattern.pattern == pattern and "context" in lm.config.dit.input_groups
    assert not lm.dit.input_groups["context"].weight.any()
    x, t, prompt = _inputs(1)
    cond_tokens = torch.cat((prompt, torch.randn(2, 1, 64)), 1)
    glob = torch.randn(2, 64)
    with torch.no_grad():
        want = base.dit(x, t, base.dit.condition(cond_tokens, glob))
        got = lm.dit(x, t, lm.dit.condition(cond_tokens, glob), {"context": torch.randn(2, 9, 16)})
    assert (want - got).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="already an LMDM"):
        convert_sao(tmp_path / "lmdm", tmp_path / "again")


def test_missing_t5_is_a_clear_error_not_a_download(sao_dir):
    model = from_pretrained(sao_dir)
    with pytest.raises(CheckpointError, match="t5 text encoder not found.*--t5 DIR.*never downloads"):
        model.encode_prompts("piano")
