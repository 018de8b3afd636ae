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
    assert (merged.cfg_scale, merged.steps, merged.prompt_guidance) == (3.0, 3, 0.5)
    assert merged.guidance_steps == {"beat_cfg": 1}
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


def test_the_toy_guidance_is_a_cli_flag_that_reaches_the_stream(toy, tmp_path, monkeypatch):
    """`--toy-shift` exists because the toy is registered (no CLI edit), its value reaches the stream
    through the SamplingConfig the command builds, and the file it writes differs from one without it."""
    from lmdm.cli import build_parser, main
    from lmdm.engine.stream import Stream
    from lmdm.live.testmodel import save_tiny_live_model
    model_dir = save_tiny_live_model(tmp_path / "model", steps=2)
    seen = []
    next_block = Stream.next_block

    def spy(self, *args, **kwargs):   # the real next_block; only notes the setting it runs with
        seen.append(self.guidance_settings["toy_shift"].strength)
        return next_block(self, *args, **kwargs)
    monkeypatch.setattr(Stream, "next_block", spy)
    common = ["--model", str(model_dir), "--seconds", "0.2", "--seed", "1", "--quiet", "--dtype", "fp32"]
    assert main(["generate", "piano", *common, "-o", str(tmp_path / "plain.wav")]) == 0
    assert set(seen) == {0.0}
    seen.clear()
    assert main(["generate", "piano", *common, "--toy-shift", "0.5", "-o", str(tmp_path / "toy.wav")]) == 0
    assert set(seen) == {0.5}
    assert (tmp_path / "plain.wav").read_bytes() != (tmp_path / "toy.wav").read_bytes()
    seen.clear()   # a headless live session takes it too (as a `guidance` control before its start)
    assert main(["live", "--test-model", "--headless", "--script", "piano", "--seconds", "0.1", "--toy-shift", "0.5",
                 "--out", str(tmp_path / "live.wav")]) == 0
    assert seen and set(seen) == {0.5}
    # every render command has the flag; out of range is the usual one-line error, exit code 2
    for argv in (["accompany", "s.wav", "--prompt", "p"], ["live"], ["bench"]):
        assert build_parser().parse_args([*argv, "--toy-shift", "0.25"]).toy_shift == 0.25
    assert main(["generate", "piano", *common, "--toy-shift", "2", "-o", str(tmp_path / "x.wav")]) == 2
    guidance.unregister("toy_shift")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "piano", "--toy-shift", "0.5"])


def test_the_toy_guidance_is_a_live_message(toy):
    """A real server on loopback: hello lists the toy; {"type": "guidance", "name": "toy_shift", ...}
    is acked, the session's stream carries the setting and its audio differs from a session without it;
    an unknown name or an out-of-range strength is an error and the server plays on. OSC's
    /lmdm/guidance makes the same message."""
    import asyncio

    import numpy as np
    pytest.importorskip("fastapi")
    pytest.importorskip("websockets")
    from lmdm.live.client import Block, Client
    from lmdm.live.engine import Engine
    from lmdm.live.osc import _message
    from lmdm.live.server import LiveServer
    from lmdm.live.testmodel import tiny_live_model

    async def first_block(srv, toy_strength):
        async with Client(srv.ws_url) as c:
            listed = {g["name"]: g for g in c.info["guidance"]}
            assert listed["toy_shift"] == {"name": "toy_shift", "label": "toy shift", "min": 0, "max": 1, "off": 0.0,
                                           "default": 0.0, "steps": None}
            assert listed["cfg_scale"]["max"] == 20 and listed["control_guidance"]["default"] == 0.0
            if toy_strength is not None:
                ack = await c.wait_for("ack", await c.set_guidance("toy_shift", toy_strength))
                assert ack["cmd"] == "guidance"
            for bad, reason in ((("nope", 0.5), "unknown guidance 'nope'"), (("toy_shift", 2.0), "toy_shift must be")):
                await c.set_guidance(*bad)
                while not any(reason in e["message"] for e in c.errors):
                    await c.recv()
            await c.start([("piano", 1.0)], pace="none", ahead=1, seed=4)
            while True:
                item = await c.recv()
                if isinstance(item, Block):
                    session = srv.engine.sessions[-1]
                    assert session.stream.guidance_settings["toy_shift"].strength == (toy_strength or 0.0)
                    return item.audio

    with LiveServer(Engine(tiny_live_model(steps=2), threads=1)) as srv:
        plain = asyncio.run(asyncio.wait_for(first_block(srv, None), 120))
        shifted = asyncio.run(asyncio.wait_for(first_block(srv, 0.5), 120))
    assert not np.array_equal(plain, shifted)
    msg = _message("guidance", ("toy_shift", 0.5))
    assert (msg.type, msg.name, msg.strength) == ("guidance", "toy_shift", 0.5)


def test_the_bench_times_the_toy_guidance_beside_rows_without_it(toy, capsys):
    """`lmdm bench --toy-shift 0.5`: the timed streams carry it, and since it is on, each pattern also
    runs without it (row "<pattern> (toy shift off)", `toy_shift_cost` on the guided row)."""
    import json

    from lmdm.cli import main
    assert main(["bench", "--preset", "tiny", "--blocks", "1", "--warmup", "1", "--patterns", "block-causal",
                 "--toy-shift", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["guidance"]["toy_shift"] == 0.5
    assert list(report["patterns"]) == ["block-causal", "block-causal (toy shift off)"]
    assert report["patterns"]["block-causal"]["toy_shift_cost"] > 0
    main(["bench", "--preset", "tiny", "--blocks", "1", "--warmup", "1", "--patterns", "block-causal", "--json"])
    assert list(json.loads(capsys.readouterr().out)["patterns"]) == ["block-causal"]   # off: no extra row
