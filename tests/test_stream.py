"""Stream behaviour: reproducibility, state save/restore, controls and bad input."""
import pytest
import torch

import lmdm
from lmdm.errors import ConfigError, PromptError, ShapeError, StateError
from conftest import tiny_model

PATTERNS = ["bidirectional", "enc-dec", "block-causal"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_same_seed_same_blocks_other_seed_differs(pattern):
    model = tiny_model(pattern)
    a, b, c = (model.stream("piano", seed=s) for s in (7, 7, 8))
    for _ in range(5):
        xa, xb, xc = a.next_latents(), b.next_latents(), c.next_latents()
        assert torch.equal(xa, xb)
        assert not torch.equal(xa, xc)
        assert torch.isfinite(xa).all()


@pytest.mark.parametrize("pattern,cfg_scale", [(p, 1.0) for p in PATTERNS] + [("block-causal", 2.5)])
def test_restored_stream_continues_bit_exactly(tmp_path, pattern, cfg_scale):
    model = tiny_model(pattern)
    s = model.stream([("piano", 1.0), ("drums", 0.4)], seed=3, cfg_scale=cfg_scale)
    for i in range(6):
        if i == 3:
            s.set_prompts([("piano", 1.0), ("drums", 0.8)])  # stale-context path for block-causal
        s.next_latents()
    s.save(tmp_path / "state.safetensors")
    expected = [s.next_latents() for _ in range(6)]

    fresh = model.stream("something else", seed=99)
    fresh.restore(tmp_path / "state.safetensors")
    assert fresh.block_index == 6 and fresh.prompts == [("piano", 1.0), ("drums", 0.8)]
    for want in expected:
        assert torch.equal(fresh.next_latents(), want)


def test_state_from_another_config_is_rejected():
    s = tiny_model("block-causal").stream("x")
    s.next_latents()
    other = tiny_model("enc-dec").stream("x")
    with pytest.raises(StateError, match="pattern"):
        other.load_state_dict(s.state_dict())
    cfg = lmdm.preset("tiny")
    cfg.dit.depth = 3
    deeper = lmdm.LiveMusicModel(cfg).stream("x")
    with pytest.raises(StateError, match="depth"):
        deeper.load_state_dict(s.state_dict())
    with pytest.raises(StateError):
        other.load_state_dict({"nothing": 1})


def test_corrupt_state_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "state.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(StateError, match="not an lmdm stream state"):
        tiny_model().stream("x").restore(bad)


def test_prompts_are_validated():
    s = tiny_model().stream("x")
    for bad in ([], [("a", 0.0)], [("a", -1.0)], [("a", float("nan"))], [("a",)]):
        with pytest.raises(PromptError):
            s.set_prompts(bad)


def test_dominant_prompt_change_rebootstraps_weight_change_does_not():
    s = tiny_model().stream([("a", 1.0), ("b", 0.5)])
    s.next_latents()
    s.set_prompts([("a", 1.0), ("b", 0.9)])
    assert not s.needs_bootstrap
    s.set_prompts([("a", 0.5), ("b", 1.0)])
    assert s.needs_bootstrap


def test_context_priming_and_bad_context():
    model = tiny_model("enc-dec")
    s = model.stream("x")
    prime = torch.randn(8, 20)
    s.set_context(prime)
    assert torch.equal(s.history[0], prime[:, -12:]) and s.history_mask.all()
    short = model.stream("x", context=torch.randn(8, 5))
    assert short.history_mask[0, 0, :7].sum() == 0 and short.history_mask[0, 0, 7:].all()
    with pytest.raises(ShapeError):
        s.set_context(torch.randn(7, 20))
    with pytest.raises(ShapeError):
        s.set_context(torch.full((8, 20), float("nan")))


def test_priming_changes_the_output():
    model = tiny_model("block-causal")
    a, b = model.stream("x", seed=1), model.stream("x", seed=1, context=torch.randn(8, 12))
    assert not torch.equal(a.next_latents(), b.next_latents())


def test_steps_can_change_per_block():
    s = tiny_model().stream("x")
    s.trace = []
    s.next_latents()
    s.steps = 3
    s.next_latents()
    assert [r["step"] for r in s.trace] == list(range(8)) + list(range(3))


def test_cfg_toggle_rebuilds_batch_and_cache():
    s = tiny_model().stream("x")
    s.next_latents()
    s.set_cfg(3.0)
    assert s.needs_bootstrap and s.cond.kv[0][0].shape[0] == 2
    assert s.next_latents().shape == (1, 8, 4)


def test_batch_of_streams():
    model = tiny_model("block-causal")
    s = model.stream("x", batch=3, seed=0)
    out = s.next_latents()
    assert out.shape == (3, 8, 4)
    assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("pattern", ["enc-dec", "block-causal"])
def test_reblocked_stream_equals_a_fresh_stream_primed_with_its_past(pattern):
    """set_block_frames mid-stream = a new stream of that block size, primed with the latents so far
    (same frame position and block counter, so the same noise): nothing of the old cache leaks."""
    model = tiny_model(pattern)
    s = model.stream("piano", seed=5)
    past = torch.cat([s.next_latents() for _ in range(4)], -1)
    s.set_block_frames(2)
    assert (s.B, s.C) == (2, 12) and s.frame == 16
    got = [s.next_latents() for _ in range(5)]
    assert all(x.shape[-1] == 2 for x in got) and s.frame == 26

    from lmdm.engine.generate import block_pattern
    ref = model.stream("piano", seed=5, pattern=block_pattern(model, 2), context=past)
    ref.block_index, ref._frame = 4, 16
    for want in got:
        assert torch.equal(ref.next_latents(), want)


def test_reblocked_state_restores_into_a_stream_of_the_model_block_size(tmp_path):
    model = tiny_model("block-causal")
    s = model.stream("piano", seed=2)
    s.next_latents()
    s.set_block_frames(3)   # C' = (12 // 3) * 3
    s.next_latents()
    s.save(tmp_path / "state.safetensors")
    expected = [s.next_latents() for _ in range(3)]
    fresh = model.stream("x")
    fresh.restore(tmp_path / "state.safetensors")
    assert (fresh.B, fresh.frame) == (3, 7)
    assert all(torch.equal(fresh.next_latents(), want) for want in expected)
    with pytest.raises(lmdm.errors.ConfigError, match="block size"):
        s.set_block_frames(0)
    assert s.B == 3   # a refused change leaves the stream as it was
    with pytest.raises(lmdm.errors.ConfigError, match="re-block"):
        tiny_model("bidirectional").stream("x").set_block_frames(2)


def test_model_config_sets_the_default_guidance(tmp_path):
    """`cfg_scale` in a model's config is what a stream (and generate, and the CLI) use unless told
    otherwise; it survives save/load and bad values are refused."""
    from lmdm.checkpoints import from_pretrained, save_pretrained
    model = tiny_model("block-causal")
    want = model.stream("piano", seed=2, cfg_scale=2.5).next_latents()
    model.config.cfg_scale = 2.5
    save_pretrained(model, tmp_path / "m")
    again = from_pretrained(tmp_path / "m")
    assert again.config.cfg_scale == 2.5
    s = again.stream("piano", seed=2)
    assert s.guided and torch.allclose(s.next_latents(), want, atol=1e-6)
    assert not again.stream("piano", seed=2, cfg_scale=1.0).guided
    for bad in (-1.0, 21.0, float("nan")):
        cfg = lmdm.preset("tiny")
        cfg.cfg_scale = bad
        with pytest.raises(ConfigError, match="cfg_scale"):
            cfg.validate()
