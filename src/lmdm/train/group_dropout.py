"""Training-time augmentation of the time-aligned input groups (`lmdm.engine.sketch`): a random
median-filter kernel for the sketch, dropout of sketch controls and of accompaniment, and the cutoff
that hides the accompaniment's most recent frames from the block being written."""
from __future__ import annotations

import torch


def random_kernel(max_kernel: int, generator: torch.Generator | None = None) -> int:
    """Training: an odd kernel drawn uniformly from 1, 3, ..., max_kernel."""
    choices = max(1, (int(max_kernel) + 1) // 2)
    return 2 * int(torch.randint(choices, (1,), generator=generator)) + 1


def control_dropout(group: torch.Tensor, p_all: float = 0.1, p_each: float = 0.2,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Training dropout of a sketch group (batch, 1 + k, frames): per item, everything (mask
    included) is zeroed with p_all; otherwise each control channel is zeroed with p_each."""
    b, ch = group.shape[:2]
    keep_all = (torch.rand(b, 1, 1, generator=generator) >= p_all).to(group.dtype)
    keep_each = (torch.rand(b, ch - 1, 1, generator=generator) >= p_each).to(group.dtype)
    keep = torch.cat((torch.ones(b, 1, 1, dtype=group.dtype), keep_each), 1)
    return group * keep * keep_all


def apply_cutoff(group: torch.Tensor, cutoff: int) -> torch.Tensor:
    """Zero frames >= cutoff (window-relative index) of a [mask | values] group."""
    out = group.clone()
    out[..., max(cutoff, 0):] = 0
    return out


def accompaniment_dropout(group: torch.Tensor, p_all: float = 0.2, p_prefix: float = 0.3,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Training dropout of an accompaniment group (batch, 1 + io, frames): per item, all of it is
    zeroed with p_all, otherwise an old prefix of uniformly random length (1 .. frames) with p_prefix."""
    b, _, n = group.shape
    u = torch.rand(b, generator=generator)
    lengths = torch.randint(1, n + 1, (b,), generator=generator)
    cut = torch.where(u < p_all, torch.full_like(lengths, n),
                      torch.where(u < p_all + p_prefix, lengths, torch.zeros_like(lengths)))
    keep = (torch.arange(n)[None] >= cut[:, None]).to(group.dtype)[:, None]
    return group * keep
