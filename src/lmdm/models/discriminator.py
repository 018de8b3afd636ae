"""The ARC-Forcing discriminator (SPEC §3, stage 2): a cut DiT trunk plus a 1-D ConvNeXt head.

The trunk is a copy of a base *bidirectional* DiT (a pretrained model before the context router,
or the generator's own DiT) keeping only its first `layers` transformer blocks. It runs the
SAO-exact bidirectional path (timestep token T first at rotary position 0, frames at 1..n, full
attention) over the re-noised rollout region, so it sees the noise level t and the prompt through
cross-attention. Its hidden states (B, n, width) go through a small ConvNeXt over time
(channels 128, strides [1, 2, 2], multipliers [1, 2, 4], 2 blocks per stage) and a mean-pooled
linear read-out: one score per item.

The router's input groups and the output projections of the base model are not used (frames are
embedded from the noisy latents alone), so they are dropped from the copy.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .dit import DiT


class ConvNeXtBlock1d(nn.Module):
    """Depthwise conv (k=7) → LayerNorm over channels → pointwise MLP ×mult with GELU → residual."""

    def __init__(self, channels: int, kernel: int = 7, mult: int = 4):
        super().__init__()
        self.dw = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, mult * channels)
        self.pw2 = nn.Linear(mult * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, C, n)
        h = self.norm(self.dw(x).transpose(1, 2))
        return x + self.pw2(F.gelu(self.pw1(h))).transpose(1, 2)


class ConvNeXtHead(nn.Module):
    """Stages of ConvNeXt blocks; stage s first maps to channels·mults[s] with a conv of stride
    strides[s] (a 1x1 conv for stride 1), then runs `blocks` blocks. Mean over time → one score."""

    def __init__(self, in_channels: int, channels: int = 128, strides=(1, 2, 2), mults=(1, 2, 4), blocks: int = 2):
        super().__init__()
        if len(strides) != len(mults) or not strides:
            raise ConfigError(f"head strides {list(strides)} and multipliers {list(mults)} must be non-empty "
                              f"and of the same length")
        self.stages = nn.ModuleList()
        c_in = in_channels
        for stride, mult in zip(strides, mults):
            c = channels * mult
            down = nn.Conv1d(c_in, c, kernel_size=max(1, stride), stride=stride)
            self.stages.append(nn.Sequential(down, *[ConvNeXtBlock1d(c) for _ in range(blocks)]))
            c_in = c
        self.norm = nn.LayerNorm(c_in)
        self.out = nn.Linear(c_in, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:   # (B, n, width) → (B,)
        x = h.transpose(1, 2)
        for stage in self.stages:
            if x.shape[-1] < stage[0].stride[0]:
                raise ConfigError(f"the rollout region ({h.shape[1]} frames) is too short for the head's strides")
            x = stage(x)
        return self.out(self.norm(x.mean(-1))).squeeze(-1)


class Discriminator(nn.Module):
    def __init__(self, base: DiT, layers: int = 12, channels: int = 128, strides=(1, 2, 2), mults=(1, 2, 4),
                 blocks: int = 2):
        super().__init__()
        depth = len(base.transformer.layers)
        if not 1 <= layers <= depth:
            raise ConfigError(f"discriminator layers must be in 1..{depth} (the base DiT's depth), got {layers}")
        dit = copy.deepcopy(base)
        dit.transformer.layers = nn.ModuleList(list(dit.transformer.layers)[:layers])
        dit.input_groups = nn.ModuleDict()        # the router is not part of the bidirectional base
        del dit.transformer.project_out, dit.postprocess_conv   # no velocity read-out
        for m in dit.modules():                   # undo inference-only packing of the copied Linears
            if getattr(m, "_lmdm_packable", False):
                for attr in ("forward", "_lmdm_packable", "_lmdm_packed", "_lmdm_pack_key"):
                    m.__dict__.pop(attr, None)
        self.dit, self.layers = dit, layers
        self.head = ConvNeXtHead(base.cfg.width, channels, tuple(strides), tuple(mults), blocks)

    def condition(self, tokens: torch.Tensor, global_cond: torch.Tensor | None = None):
        return self.dit.condition(tokens, global_cond)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        """Scores (B,) for re-noised latents x (B, io, n) at times t (B,), bidirectional attention."""
        dit, n = self.dit, x.shape[-1]
        h = dit.embed_frames(x)
        tok = dit.timestep_token(t, cond)
        pos = torch.arange(0, n + 1, device=x.device)
        h, _ = dit.run(torch.cat((tok, h), 1), pos, cond)
        return self.head(h[:, 1:]).float()
