"""The latent diffusion transformer: Stable Audio Open's DiT plus the LMDM context router.

Parameter names match stable-audio-tools' `DiffusionTransformer` (checkpoint prefix
`model.model.`), so SAO-small's weights map one-to-one. The router adds `input_groups.<name>`,
bias-free zero-initialised projections of extra input channels ([mask | clean context], later
accompaniment and sketch controls), so a converted SAO model starts as the base model.

Token layout: every latent frame is one token, embedded independently of the others (the pre-conv
is 1x1), which is what makes caching possible. The timestep(+global) token T always takes rotary
position 0 and latents positions 1..n. In the SAO-exact bidirectional path T is placed first, as
in the reference; in the LMDM patterns it is placed last and only the target sees it, so context
hidden states depend on neither t nor the noise.

The module exposes the pieces the caches need (`condition`, `embed_frames`, `timestep_token`,
`run`, `unembed`) and `forward`, the full masked window used for training and as the reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import DiTConfig
from ..errors import ShapeError
from ..nn.attention import KV, RotaryEmbedding, TransformerBlock
from .patterns import window_mask


class FourierFeatures(nn.Module):
    def __init__(self, in_features: int, out_features: int, std: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features // 2, in_features) * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x @ self.weight.T
        return torch.cat((f.cos(), f.sin()), dim=-1)


class ContinuousTransformer(nn.Module):
    """Holds the blocks and the in/out projections under SAO's names."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.project_in = nn.Linear(cfg.io_channels, cfg.width, bias=False)
        self.project_out = nn.Linear(cfg.width, cfg.io_channels, bias=False)
        self.rotary_pos_emb = RotaryEmbedding(cfg.rotary_dim)
        self.layers = nn.ModuleList(
            TransformerBlock(cfg.width, cfg.head_dim, cfg.cond_embed_dim, cfg.ff_mult) for _ in range(cfg.depth))


@dataclass
class Conditioning:
    """What a prompt contributes, computed once per prompt: cross-attention K/V per layer and
    the projected global vector (or None)."""

    kv: list[KV]
    global_embed: torch.Tensor | None


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        w, ce = cfg.width, cfg.cond_embed_dim
        self.timestep_features = FourierFeatures(1, cfg.timestep_features_dim)
        self.to_timestep_embed = nn.Sequential(nn.Linear(cfg.timestep_features_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.to_cond_embed = nn.Sequential(nn.Linear(cfg.cond_token_dim, ce, bias=False), nn.SiLU(),
                                  nn.Linear(ce, ce, bias=False))
        if cfg.global_cond_dim > 0:
            self.to_global_embed = nn.Sequential(nn.Linear(cfg.global_cond_dim, w, bias=False), nn.SiLU(),
                                        nn.Linear(w, w, bias=False))
        self.preprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)
        nn.init.zeros_(self.preprocess_conv.weight)
        nn.init.zeros_(self.postprocess_conv.weight)
        self.transformer = ContinuousTransformer(cfg)
        self.input_groups = nn.ModuleDict()
        for name, channels in cfg.input_groups.items():
            proj = nn.Linear(channels, w, bias=False)
            nn.init.zeros_(proj.weight)
            self.input_groups[name] = proj

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.project_in.weight.dtype

    # -- pieces -----------------------------------------------------------------------------

    def condition(self, cond_tokens: torch.Tensor, global_cond: torch.Tensor | None = None) -> Conditioning:
        """Project conditioning tokens (B, N, cond_token_dim) and compute every layer's K/V."""
        if cond_tokens.dim() != 3 or cond_tokens.shape[-1] != self.cfg.cond_token_dim:
            raise ShapeError(f"conditioning tokens must be (batch, tokens, {self.cfg.cond_token_dim}), "
                             f"got {tuple(cond_tokens.shape)}")
        ctx = self.to_cond_embed(cond_tokens.to(self.dtype))
        kv = [layer.cross_attn.context_kv(ctx) for layer in self.transformer.layers]
        g = None
        if self.cfg.global_cond_dim > 0:
            if global_cond is None or global_cond.shape[-1] != self.cfg.global_cond_dim:
                raise ShapeError(f"this model needs a global conditioning vector of width "
                                 f"{self.cfg.global_cond_dim}, got "
                                 f"{None if global_cond is None else tuple(global_cond.shape)}")
            g = self.to_global_embed(global_cond.to(self.dtype))
        return Conditioning(kv, g)

    def timestep_token(self, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The T token (B, 1, width): timestep embedding plus the global embedding."""
        emb = self.to_timestep_embed(self.timestep_features(t.to(self.dtype)[:, None]))
        if cond.global_embed is not None:
            emb = emb + cond.global_embed
        return emb[:, None, :]

    def embed_frames(self, x: torch.Tensor | None, groups: dict[str, torch.Tensor] | None = None,
                     n_frames: int | None = None) -> torch.Tensor:
        """One token per latent frame, (B, n, width). x is the noisy latent (B, io, n) or None
        for clean-context frames (zero noisy input); groups are the router's extra channels."""
        cfg, groups = self.cfg, groups or {}
        unknown = set(groups) - set(cfg.input_groups)
        if unknown:
            raise ShapeError(f"unknown input group(s) {sorted(unknown)}; this model has {sorted(cfg.input_groups)}")
        h = None
        if x is not None:
            if x.dim() != 3 or x.shape[1] != cfg.io_channels:
                raise ShapeError(f"latents must be (batch, {cfg.io_channels}, frames), got {tuple(x.shape)}")
            x = x.to(self.dtype)
            h = self.transformer.project_in((self.preprocess_conv(x) + x).transpose(1, 2))
        for name, value in groups.items():
            want = cfg.input_groups[name]
            if value.dim() != 3 or value.shape[1] != want or (h is not None and value.shape[2] != h.shape[1]):
                raise ShapeError(f"input group {name!r} must be (batch, {want}, frames"
                                 f"{'' if h is None else '=' + str(h.shape[1])}), got {tuple(value.shape)}")
            g = self.input_groups[name](value.to(self.dtype).transpose(1, 2))
            h = g if h is None else h + g
        if h is None:
            raise ShapeError("embed_frames needs latents or at least one input group")
        return h

    def rope(self, positions: torch.Tensor):
        return self.transformer.rotary_pos_emb.cos_sin(positions)

    def run(self, h: torch.Tensor, positions: torch.Tensor, cond: Conditioning, past: list[KV] | None = None,
            mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[KV]]:
        """All blocks over tokens h at the given rotary positions, attending to [past | h].
        Returns the final hidden states and each layer's new (rotated) keys/values."""
        rope = self.rope(positions.to(h.device))
        new_kv = []
        for i, layer in enumerate(self.transformer.layers):
            h, kv = layer(h, rope, cond.kv[i], None if past is None else past[i], mask)
            new_kv.append(kv)
        return h, new_kv

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, n, width) → velocity (B, io, n)."""
        out = self.transformer.project_out(h).transpose(1, 2)
        return self.postprocess_conv(out) + out

    # -- the full window --------------------------------------------------------------------

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                groups: dict[str, torch.Tensor] | None = None, pattern: str = "bidirectional",
                context_frames: int = 0, block_frames: int = 1, context_chunks: int = 1,
                first_position: int = 1) -> torch.Tensor:
        """Velocity for a whole window x (B, io, n) at times t (B,), uncached, with the pattern's mask.

        For enc-dec and block-causal the first `context_frames` frames are context: their noisy
        input is zeroed (they carry information only through the router's groups). Latents take
        rotary positions first_position .. first_position+n-1; T takes position 0. A block-causal
        reference over a long stream shifts first_position so the target keeps its window position.
        """
        n = x.shape[-1]
        if pattern != "bidirectional" and context_frames:
            x = x.clone()
            x[..., :context_frames] = 0
        h = self.embed_frames(x, groups)
        tok = self.timestep_token(t, cond)
        pos = torch.arange(first_position, first_position + n, device=x.device)
        zero = torch.zeros(1, dtype=pos.dtype, device=x.device)
        if pattern == "bidirectional":  # SAO-exact: T first, full attention
            h, _ = self.run(torch.cat((tok, h), 1), torch.cat((zero, pos)), cond)
            return self.unembed(h[:, 1:])
        mask = window_mask(pattern, n, context_frames, block_frames, context_chunks, device=x.device)
        h, _ = self.run(torch.cat((h, tok), 1), torch.cat((pos, zero)), cond, mask=mask)
        return self.unembed(h[:, :n])
