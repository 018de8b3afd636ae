"""Prompt specs (blends, timed changes) and how `generate` applies them."""
import pytest
import torch

from lmdm.errors import ConfigError, PromptError
from lmdm.engine.generate import block_pattern
from lmdm.engine.prompts import as_schedule, parse_blend, parse_schedule
from conftest import stream_audio_by_hand, tiny_model


def test_blends_and_times_parse():
    assert parse_blend("dub techno") == [("dub techno", 1.0)]
    assert parse_blend("A:0.7|B:.3") == [("A", 0.7), ("B", 0.3)]
    assert parse_blend("ratio 3:4 groove") == [("ratio 3:4 groove", 1.0)]  # ':' inside text is text
    assert parse_schedule(["B@30s", "A@0s"]) == [(0.0, [("A", 1.0)]), (30.0, [("B", 1.0)])]
    assert parse_schedule(["A:2|B:1@12.5s", "C"]) == [(0.0, [("C", 1.0)]), (12.5, [("A", 2.0), ("B", 1.0)])]
    assert parse_schedule("email me@home") == [(0.0, [("email me@home", 1.0)])]  # not a time


@pytest.mark.parametrize("specs, message", [
    (["A@5s"], "start at 0"), (["A", "B"], "same time"), (["A@0s", "B@0"], "same time"),
    (["A:0|B:1"], r"weight '0' .* \(0, 100\]"), (["|B"], "empty prompt"), ([], "no prompt"),
    # a number where a weight or time goes is one, checked: never silently prompt text (issue 34)
    (["a:-1|b:1"], "weight '-1'"), (["a:1e9|b:1"], "weight '1e9'"), (["a:nan"], "weight 'nan'"),
    (["a@0s", "b@-5s"], "time '-5'"), (["a@0s", "b@infs"], "time 'inf'")])
def test_bad_specs_are_named(specs, message):
    with pytest.raises(PromptError, match=message):
        parse_schedule(specs)


def test_as_schedule_accepts_every_prompt_form():
    assert as_schedule("x") == [(0.0, [("x", 1.0)])]
    assert as_schedule([("x", 0.5), ("y", 0.5)]) == [(0.0, [("x", 0.5), ("y", 0.5)])]
    assert as_schedule([(3, [("y", 1.0)]), (0, [("x", 1.0)])]) == [(0.0, [("x", 1.0)]), (3.0, [("y", 1.0)])]


def _with_toy_autoencoder(model):
    from lmdm.models.autoencoder import Autoencoder, AutoencoderConfig
    model.autoencoder = Autoencoder(AutoencoderConfig(audio_channels=1, channels=4, c_mults=[1], strides=[2],
                                                     latent_dim=model.config.dit.io_channels, sample_rate=8000))
    model.config.sample_rate, model.config.downsampling_ratio = 8000, 2
    return model.eval()


def test_timed_change_lands_on_the_first_block_boundary_after_its_time():
    model = _with_toy_autoencoder(tiny_model())
    B = model.config.pattern.block_frames
    block_s = B * model.config.frame_seconds
    changes = []
    got = model.generate([(0, "warm piano"), (2.5 * block_s, "dub techno")], 30 * block_s, seed=3,
                         on_change=lambda t, p: changes.append((t, p)))
    assert changes == [(pytest.approx(3 * block_s), [("dub techno", 1.0)])]
    # the same as driving a Stream by hand (generate's loop: blocks until the request is covered,
    # then the decoder's tail) with the change before block 3
    total = got.shape[-1]

    def by_hand(change_at):
        def change(s):
            if s.block_index == change_at:
                s.set_prompts("dub techno")
        return stream_audio_by_hand(model.stream("warm piano", seed=3), total, change)
    assert torch.equal(got, by_hand(3))
    assert not torch.equal(got, by_hand(2))


def test_block_override_keeps_whole_context_chunks():
    model = tiny_model()  # B=4, C=12
    p = block_pattern(model, 5)
    assert (p.block_frames, p.context_frames) == (5, 10)
    assert block_pattern(model, None) is model.config.pattern
    with pytest.raises(ConfigError, match="at least 2 context chunks"):
        block_pattern(model, 7)
    model = _with_toy_autoencoder(model)
    s = model.stream("x", pattern=p)
    assert s.next_latents().shape[-1] == 5
