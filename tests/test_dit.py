"""The DiT's module tree matches Stable Audio Open Small's checkpoint names and shapes."""
import pytest
import torch

import lmdm
from lmdm.config import ModelConfig, PatternConfig
from lmdm.errors import ConfigError, ShapeError
from lmdm.models.dit import DiT
from conftest import tiny_model


def sao_small_expected_shapes() -> dict[str, tuple]:
    """Written from SPEC §1 and stable-audio-tools' DiffusionTransformer, independently of our code."""
    d, ff = 1024, 4096
    shapes = {"timestep_features.weight": (128, 1), "to_timestep_embed.0.weight": (d, 256),
              "to_timestep_embed.0.bias": (d,), "to_timestep_embed.2.weight": (d, d), "to_timestep_embed.2.bias": (d,),
              "to_cond_embed.0.weight": (d, 768), "to_cond_embed.2.weight": (d, d),
              "to_global_embed.0.weight": (d, 768), "to_global_embed.2.weight": (d, d),
              "preprocess_conv.weight": (64, 64, 1), "postprocess_conv.weight": (64, 64, 1),
              "transformer.project_in.weight": (d, 64), "transformer.project_out.weight": (64, d),
              "transformer.rotary_pos_emb.inv_freq": (32,)}
    for i in range(16):
        p = f"transformer.layers.{i}."
        for norm in ("pre_norm", "cross_attend_norm", "ff_norm"):
            shapes[p + norm + ".gamma"] = shapes[p + norm + ".beta"] = (d,)
        for attn in ("self_attn", "cross_attn"):
            for n in ("q_norm", "k_norm"):
                shapes[f"{p}{attn}.{n}.weight"] = shapes[f"{p}{attn}.{n}.bias"] = (128,)
            shapes[f"{p}{attn}.to_out.weight"] = (d, d)
        shapes[p + "self_attn.to_qkv.weight"] = (3 * d, d)
        shapes[p + "cross_attn.to_q.weight"] = (d, d)
        shapes[p + "cross_attn.to_kv.weight"] = (2 * d, d)
        shapes[p + "ff.ff.0.proj.weight"], shapes[p + "ff.ff.0.proj.bias"] = (2 * ff, d), (2 * ff,)
        shapes[p + "ff.ff.2.weight"], shapes[p + "ff.ff.2.bias"] = (d, ff), (d,)
    return shapes


def test_sao_small_names_and_shapes_map_one_to_one():
    cfg = lmdm.preset("sao-small")
    with torch.device("meta"):
        dit = DiT(cfg.dit)
    ours = {k: tuple(v.shape) for k, v in dit.state_dict().items()}
    router = {k: ours.pop(k) for k in list(ours) if k.startswith("input_groups.")}
    assert ours == sao_small_expected_shapes()
    assert router == {"input_groups.context.weight": (1024, 65)}
    n = sum(p.numel() for p in dit.parameters())
    assert 335e6 < n < 345e6  # "about 341 M parameters"


def test_plain_sao_config_has_no_router():
    cfg = lmdm.preset("sao-small", "bidirectional")
    cfg.dit.input_groups = {}
    cfg.validate()
    with torch.device("meta"):
        keys = DiT(cfg.dit).state_dict().keys()
    assert not any(k.startswith("input_groups") for k in keys)
    cfg.pattern = PatternConfig("block-causal")
    with pytest.raises(ConfigError, match="context router"):
        cfg.validate()


def test_fresh_lmdm_reproduces_the_base_model_with_zero_router():
    """The router is zero-initialised: before fine-tuning, context channels change nothing."""
    model = tiny_model("bidirectional")
    dit = model.dit
    with torch.no_grad():
        dit.input_groups["context"].weight.zero_()
        cond = dit.condition(torch.randn(1, 3, 32))
        x, t = torch.randn(1, 8, 16), torch.tensor([0.7])
        base = dit(x, t, cond)
        routed = dit(x, t, cond, {"context": torch.randn(1, 9, 16)})
    assert torch.equal(base, routed)


def test_bad_shapes_are_named():
    dit = tiny_model().dit
    cond = dit.condition(torch.randn(1, 3, 32))
    with pytest.raises(ShapeError, match="latents must be"):
        dit.embed_frames(torch.randn(1, 7, 4))
    with pytest.raises(ShapeError, match="input group 'context'"):
        dit.embed_frames(torch.randn(1, 8, 4), {"context": torch.randn(1, 8, 4)})
    with pytest.raises(ShapeError, match="unknown input group"):
        dit.embed_frames(torch.randn(1, 8, 4), {"accompaniment": torch.randn(1, 9, 4)})
    with pytest.raises(ShapeError, match="conditioning tokens"):
        dit.condition(torch.randn(1, 3, 31))
    with pytest.raises(ShapeError, match="whole number of chunks"):
        dit(torch.randn(1, 8, 10), torch.tensor([0.5]), cond, pattern="block-causal", context_frames=8,
            block_frames=4, context_chunks=2)


def test_config_validation_and_json_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="whole number of chunks"):
        PatternConfig("block-causal", block_frames=48, context_frames=200).validate()
    with pytest.raises(ConfigError, match="pattern must be"):
        PatternConfig("causal").validate()
    cfg = lmdm.preset("tiny")
    cfg.save(tmp_path / "c.json")
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match="unknown config field"):
        ModelConfig.from_dict({"dit": {"widht": 3}})
    with pytest.raises(ConfigError, match="must be int"):
        ModelConfig.from_dict({"dit": {"width": "wide"}})
