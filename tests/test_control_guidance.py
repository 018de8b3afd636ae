"""Control guidance (`lmdm.engine.control_guidance`): the differentiable controls equal `audio.controls`, a
guided estimate moves towards the sketch, the sampler honours the refinement, and a stream without
guidance (or without a sketch) computes exactly what it did before."""
import numpy as np
import pytest
import torch

from lmdm.engine.guidance.control import ControlGuidance
from lmdm.engine.control_guidance import (PEAK, clipping_penalty, guide_x0, sketch_loss,
                                   torch_loudness_and_centroid)
from lmdm.audio.controls import SILENCE_DB, loudness_and_centroid
from lmdm.errors import ConfigError
from lmdm.live.testmodel import tiny_live_model
from lmdm.engine.sampling import sample
from lmdm.engine.sketch import controls_from_audio, sketch_group

SR = 16000


def _music(seconds=1.0, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = np.linspace(0.05, 0.8, len(t)) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    tone = np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t * (1 + t))
    audio = env * tone + 0.01 * rng.standard_normal(len(t))
    audio[: sr // 10] = 0.0   # a silent start: the floor and the silence rule
    return audio


@pytest.mark.parametrize("hop", [128, 1024])
def test_torch_controls_equal_the_numpy_extraction(hop):
    audio = _music()
    loud, cent = loudness_and_centroid(audio, SR, hop)
    tl, tc = torch_loudness_and_centroid(torch.from_numpy(audio)[None], SR, hop)
    assert tl.shape == (1, len(loud)) and tl.dtype == torch.float64
    np.testing.assert_allclose(tl[0].numpy(), loud, atol=1e-3)
    sounding = loud > SILENCE_DB
    assert sounding.any() and not sounding.all()
    np.testing.assert_allclose(tc[0].numpy()[sounding], cent[sounding], atol=1e-3)


def test_sketch_loss_is_zero_on_its_own_controls_and_skips_dropped_rows():
    audio = torch.from_numpy(_music())[None]
    hop = 128
    group = sketch_group(controls_from_audio(audio[0].numpy(), SR, hop)[None])
    assert float(sketch_loss(audio, group, 0, SR, hop)) < 1e-6
    louder = sketch_group(controls_from_audio(2 * audio[0].numpy(), SR, hop)[None])
    assert float(sketch_loss(audio, louder, 0, SR, hop)) > 1e-3
    # a dropped (all-zero) loudness row and the silent-centroid frames are not compared
    only_centroid = louder.clone()
    only_centroid[:, 1] = 0
    assert float(sketch_loss(audio, only_centroid, 0, SR, hop)) < 1e-6
    # frames before `first` are not compared: a sketch of the second half against the whole clip
    n = group.shape[-1]
    assert float(sketch_loss(audio, group[..., n // 2:], n // 2, SR, hop)) < 1e-6


def test_guided_estimate_moves_towards_the_sketch():
    model = tiny_live_model(block_frames=16, context_blocks=2, steps=2, groups=True, sample_rate=SR, strides=(4, 8, 4))
    ae, hop = model.autoencoder, model.config.downsampling_ratio
    gen = torch.Generator().manual_seed(0)
    context, x0 = torch.randn(1, 8, 6, generator=gen), torch.randn(1, 8, 16, generator=gen)
    curve = torch.zeros(1, 3, 20)
    curve[:, 0] = torch.linspace(-0.5, 0.5, 20)           # a loudness ramp (normalised: -60 .. -20 dB)
    curve[:, 1] = 0.2 * torch.sin(torch.arange(20.0))      # a wobbling brightness
    target = sketch_group(curve)

    def loss(x):
        with torch.no_grad():
            audio = ae.decode(torch.cat((context, x), -1)).float().mean(1)
        return float(sketch_loss(audio, target, 2, SR, hop))

    losses = [loss(x0)]
    for _ in range(3):
        losses.append(loss(guide_x0(x0, context, target, ae, hop, ControlGuidance(0.3, iterations=len(losses)))))
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0], losses
    # Adam-style: the first step is a sign step, so every latent the loss reaches moves by `strength`,
    # not just the frames with the largest gradient
    moved = (guide_x0(x0, context, target, ae, hop, ControlGuidance(0.3, iterations=1)) - x0).abs()
    reached = moved > 0
    assert reached.float().mean() > 0.9 and torch.allclose(moved[reached], torch.full_like(moved[reached], 0.3),
                                                           atol=0.02)
    with pytest.raises(ConfigError):
        ControlGuidance(5.0).validate()


def test_sampler_outputs_the_refined_estimate():
    noise = [torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(i)) for i in range(4)]

    def denoise(x, t, i):
        return torch.full_like(x, 0.5), None
    plain = sample(denoise, noise)
    assert torch.equal(sample(denoise, noise, refine=lambda x0, i: x0), plain)
    seen = []
    out = sample(denoise, noise, refine=lambda x0, i: seen.append(i) or torch.full_like(x0, 7.0))
    assert seen == [0, 1, 2, 3] and torch.equal(out, torch.full_like(out, 7.0))
    euler = sample(denoise, noise, "euler", refine=lambda x0, i: torch.full_like(x0, 7.0))
    assert torch.allclose(euler, torch.full_like(euler, 7.0), atol=1e-5)


def _blocks(model, n=3, **kw):
    s = model.stream("x", seed=3, **kw)
    return torch.cat([s.next_latents() for _ in range(n)], -1)


def test_stream_guidance_changes_only_sketched_blocks_and_follows_the_sketch():
    model = tiny_live_model(block_frames=16, context_blocks=2, steps=3, groups=True, sample_rate=SR, strides=(4, 8, 4))
    hop = model.config.downsampling_ratio
    frames = 3 * 16
    sketch = torch.zeros(3, frames)
    sketch[0] = torch.linspace(-0.8, 0.6, frames)
    # no sketch: guidance has nothing to do, and strength 0 is the unguided stream bit for bit
    assert torch.equal(_blocks(model, control_guidance=0.5), _blocks(model))
    plain = _blocks(model, sketch=sketch, sketch_cfg=1.0)
    assert torch.equal(_blocks(model, sketch=sketch, sketch_cfg=1.0, control_guidance=0.0), plain)
    guided = _blocks(model, sketch=sketch, sketch_cfg=1.0, control_guidance=0.3)
    assert not torch.equal(guided, plain)

    def error(latents):
        with torch.no_grad():
            audio = model.autoencoder.decode(latents).float().mean(1)
        return float(sketch_loss(audio, sketch_group(sketch[None]), 0, SR, hop))
    assert error(guided) < error(plain)


def test_stream_state_keeps_control_guidance(tmp_path):
    model = tiny_live_model(block_frames=16, context_blocks=2, steps=3, groups=True, sample_rate=SR, strides=(4, 8, 4))
    sketch = torch.zeros(3, 64)
    sketch[0] = torch.linspace(-0.8, 0.6, 64)
    s = model.stream("x", seed=1, sketch=sketch, control_guidance=0.2)
    s.next_block()
    s.save(tmp_path / "state.safetensors")
    expected = s.next_block()
    t = model.stream("x", seed=1)
    t.restore(tmp_path / "state.safetensors")
    assert t.control_guidance == s.control_guidance
    assert torch.equal(t.next_block(), expected)
    t.set_control_guidance(0.0)
    assert not t.control_guidance.active


def test_clipping_penalty_only_beyond_the_peak():
    quiet = torch.linspace(-PEAK, PEAK, 101)[None, None]
    assert float(clipping_penalty(quiet)) == 0.0
    loud = quiet * 2
    assert float(clipping_penalty(loud)) > 0
    assert float(clipping_penalty(loud * 1.5)) > float(clipping_penalty(loud))
