import pytest
import torch

from lmdm.errors import ConfigError
from lmdm.engine.sampling import guide, sample, sao_schedule


def test_sao_schedule_matches_published_values():
    published = [1, .9933, .9820, .9526, .8808, .7311, .5, .2689, 0]
    assert sao_schedule(8) == pytest.approx(published, abs=1e-4)


def test_perfect_denoiser_recovers_x0():
    x0 = torch.randn(1, 4, 6)
    noise = [torch.randn(1, 4, 6) for _ in range(8)]
    state = {}

    def denoise(x, t, i):  # v = ε - x0 where x = (1-t)x0 + tε
        eps = (x - (1 - t) * x0) / t
        state[i] = t
        return eps - x0, None

    for sampler in ("pingpong", "euler"):
        assert torch.allclose(sample(denoise, noise, sampler), x0, atol=1e-5)


def test_cfg_plus_plus_differs_from_cfg_only_for_euler():
    torch.manual_seed(0)
    noise = [torch.randn(1, 4, 6) for _ in range(6)]
    a, b = torch.randn(1, 4, 6), torch.randn(1, 4, 6)

    def denoise(x, t, i):
        v_c, v_u = x * 0.5 + a, x * 0.2 + b
        return guide(v_c, v_u, 3.0), v_u

    for sampler, same in (("pingpong", True), ("euler", False)):
        plain = sample(denoise, noise, sampler, "cfg")
        plus = sample(denoise, noise, sampler, "cfg++")
        assert torch.equal(plain, plus) == same


def test_guide_formula():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert guide(c, u, 1.0) == c and guide(c, u, 0.0) == u and guide(c, u, 3.0) == 4.0


def test_bad_sampler_arguments():
    with pytest.raises(ConfigError):
        sample(lambda x, t, i: (x, None), [torch.zeros(1)], "heun")
    with pytest.raises(ConfigError):
        sample(lambda x, t, i: (x, None), [torch.zeros(1)], "euler", "cfg+")
    with pytest.raises(ConfigError):
        sao_schedule(0)
