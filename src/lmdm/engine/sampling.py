"""Rectified-flow samplers: SAO's schedule, ping-pong, Euler, and classifier-free guidance.

x_t = (1 - t)·x0 + t·ε and the network predicts v ≈ ε - x0, so x0 = x_t - t·v.

A `denoise(x, t, step)` callable returns (v_guided, v_uncond); v_uncond is None without CFG.
Guidance is applied by the caller (`guide`), so samplers stay pattern- and cache-agnostic.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigError

SAMPLERS = ("pingpong", "euler")
GUIDANCE = ("cfg", "cfg++")

Denoise = Callable[[torch.Tensor, float, int], tuple[torch.Tensor, torch.Tensor | None]]


def sao_schedule(steps: int) -> list[float]:
    """logSNR = linspace(-6, 2, steps+1), t = sigmoid(-logSNR), endpoints pinned to 1 and 0."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    t = torch.sigmoid(-torch.linspace(-6, 2, steps + 1, dtype=torch.float64))
    t[0], t[-1] = 1.0, 0.0
    return t.tolist()


def guide(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return v_uncond + scale * (v_cond - v_uncond)


def sample(denoise: Denoise, noise: list[torch.Tensor], sampler: str = "pingpong",
           guidance: str = "cfg", schedule: list[float] | None = None,
           refine: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Run len(noise) steps from pure noise and return x0.

    noise[0] is the starting point; ping-pong draws noise[i] fresh at step i (so guidance
    variants coincide there: the re-noising never reuses the predicted ε). Euler follows the
    ODE; with guidance="cfg++" it re-noises with the *unconditional* ε estimate, as CFG++ does.
    `refine(x0, step)`, when given, corrects each clean estimate before it is used (control guidance).
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if guidance not in GUIDANCE:
        raise ConfigError(f"guidance must be one of {GUIDANCE}, got {guidance!r}")
    ts = schedule or sao_schedule(len(noise))
    x = noise[0]
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        v, v_uncond = denoise(x, t, i)
        x0 = x - t * v
        if refine is not None:
            refined = refine(x0, i)
            v, x0 = v + (x0 - refined) / t, refined   # the velocity that predicts the refined estimate
        if sampler == "pingpong":
            x = x0 if t_next == 0 else (1 - t_next) * x0 + t_next * noise[i + 1]
        elif guidance == "cfg++" and v_uncond is not None:
            eps_uncond = x + (1 - t) * v_uncond
            x = (1 - t_next) * x0 + t_next * eps_uncond
        else:
            x = x + (t_next - t) * v
    return x
