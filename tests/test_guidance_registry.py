"""The guidance registry (`lmdm.engine.guidance`) and the one SamplingConfig: a guidance added in one
file reaches the stream through its strength keyword, `SamplingConfig`, `set_guidance` and a saved
state; the built-in guidance keep their order and names; the knobs fold into one SamplingConfig."""
import subprocess
import sys

import pytest
import torch

from conftest import tiny_model
from lmdm.config import KNOBS, SamplingConfig
from lmdm.engine import guidance
from lmdm.errors import ConfigError


@pytest.fixture
def toy():
    import toy_guidance
    if "toy_shift" not in guidance.REGISTRY:   # a second test in the same process registers it again
        guidance.register(toy_guidance.TOY)
    yield toy_guidance.TOY
    guidance.unregister("toy_shift")


def test_the_built_in_guidance_in_order():
    assert list(guidance.REGISTRY) == ["cfg_scale", "sketch_cfg", "beat_cfg", "prompt_guidance", "control_guidance"]
    assert [b.row for b in guidance.branches()] == ["no_text", "no_sketch", "no_beat"]
    assert [g.name for g in guidance.refiners()] == ["prompt_guidance", "control_guidance"]


def test_the_registry_imports_no_torch():
    code = "import sys, lmdm.engine.guidance, lmdm.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_toy_guidance_in_one_file_reaches_the_stream(toy, tmp_path):
    model = tiny_model()
    plain = model.stream("piano", seed=1).next_latents()
    assert torch.equal(model.stream("piano", seed=1, toy_shift=0.5).next_latents(), plain + 0.5)
    s = model.stream("piano", seed=1, sampling=SamplingConfig(toy_shift=0.25))
    assert s.guidance_settings["toy_shift"].strength == 0.25
    assert torch.equal(s.next_latents(), plain + 0.25)
    s.set_guidance("toy_shift", 0.75)
    s.save(tmp_path / "s.safetensors")
    want = s.next_latents()
    fresh = model.stream("x")
    fresh.restore(tmp_path / "s.safetensors")
    assert fresh.guidance_settings["toy_shift"].strength == 0.75 and torch.equal(fresh.next_latents(), want)
    assert KNOBS["toy_shift"].hi == 1
    with pytest.raises(ConfigError, match="toy_shift"):
        SamplingConfig(toy_shift=2.0).validate()
    guidance.unregister("toy_shift")
    with pytest.raises(ConfigError, match="unknown sampling option"):
        SamplingConfig(toy_shift=0.5)


def test_set_guidance_is_the_one_setter():
    model = tiny_model()
    s = model.stream("piano", seed=1)
    s.set_guidance("cfg_scale", 2.0)
    assert s.cfg_scale == 2.0 and s.branches == ("cond", "no_text")
    s.set_cfg(1.0)
    assert s.branches == ("cond",)
    with pytest.raises(ConfigError, match="unknown guidance"):
        s.set_guidance("cfg", 2.0)
    with pytest.raises(ConfigError, match="cfg_scale"):
        s.set_guidance("cfg_scale", 50.0)
    with pytest.raises(ConfigError, match="takes no steps"):
        s.set_guidance("control_guidance", 0.1, steps=2)


def test_one_sampling_config_carries_the_knobs():
    knobs = SamplingConfig(seed=2, steps=3, cfg_scale=2.0, beat_cfg=1.5, guidance_steps={"beat_cfg": 2})
    assert (knobs.cfg_scale, knobs.beat_cfg, knobs.sketch_cfg) == (2.0, 1.5, None)
    assert knobs.guidance == {"cfg_scale": 2.0, "beat_cfg": 1.5}
    merged = knobs.merged(cfg_scale=3.0, steps=None, beat_cfg_steps=1, prompt_guidance=0.5)
    assert (merged.cfg_scale, merged.steps, merged.guidance_steps, merged.prompt_guidance) == (3.0, 3, {"beat_cfg": 1}, 0.5)
    assert knobs.cfg_scale == 2.0   # merged is a copy
    with pytest.raises(ConfigError, match="--cfg"):
        SamplingConfig(cfg_scale=30.0).validate({"cfg_scale": "--cfg"})
    with pytest.raises(ConfigError, match="unknown sampling option"):
        SamplingConfig(cfg=2.0)
    model = tiny_model()
    by_keywords = model.stream("piano", seed=2, steps=3, cfg_scale=2.0)
    by_config = model.stream("piano", sampling=SamplingConfig(seed=2, steps=3, cfg_scale=2.0, block_frames=4))
    assert torch.equal(by_keywords.next_latents(), by_config.next_latents())
    overridden = model.stream("piano", sampling=SamplingConfig(seed=5, steps=3, cfg_scale=2.0), seed=2)
    assert overridden.seed == 2
    assert model.stream("piano").cfg_scale == model.config.cfg_scale   # unset: the model's default
