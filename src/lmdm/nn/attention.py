"""Transformer layers in Stable Audio Open's exact structure and parameter names.

Names mirror stable-audio-tools' `ContinuousTransformer` so an SAO checkpoint maps one-to-one:
`pre_norm.{gamma,beta}`, `self_attn.to_qkv`, `self_attn.{q,k}_norm`, `cross_attn.to_q`,
`cross_attn.to_kv`, `ff.ff.0.proj`, `ff.ff.2`, ...

Self-attention returns the keys/values it computed (after q/k-norm and rotary) so that callers
can cache them, and accepts past keys/values plus a boolean mask (True = may attend). The layers
know nothing about context, targets or streaming; that policy lives in `lmdm.models.dit`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]


class LayerNorm(nn.Module):
    """LayerNorm with a learned scale and a fixed zero bias buffer (SAO's `gamma`/`beta`)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], weight=self.gamma, bias=self.beta, eps=self.eps)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over the first `dim` channels of each head (half-split pairs)."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.dim = dim
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables, shape (len(positions), dim), in fp32 whatever the model dtype."""
        angles = positions.to(torch.float32)[:, None] * self.inv_freq.to(torch.float32)[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.shape[-1] channels of x (…, S, head_dim) by the given angles.

    Computed in fp32 and cast back, as the reference does. Rotations compose: applying the
    rotation for position -p to keys rotated at position q gives keys at position q - p.
    """
    rot = cos.shape[-1]
    head, tail = x[..., :rot], x[..., rot:]
    h32 = head.to(torch.float32)
    head = (h32 * cos + _rotate_half(h32) * sin).to(x.dtype)
    return torch.cat((head, tail), dim=-1)


class Attention(nn.Module):
    """Multi-head attention with per-head q/k LayerNorm; self (fused qkv) or cross (q + kv)."""

    def __init__(self, dim: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        self.dim, self.head_dim = dim, head_dim
        self.heads = dim // head_dim
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.kv_heads = context_dim // head_dim
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(context_dim, 2 * context_dim, bias=False)
        else:
            self.kv_heads = self.heads
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.to_out.weight)
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, n, self.head_dim).transpose(1, 2)  # (B, H, S, d)

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        if k.shape[1] != q.shape[1]:  # grouped kv heads (SAO when conditioning is not projected)
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, h, s, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, s, h * d))

    def self_attend(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                    past: KV | None = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KV]:
        """Attend from x to [past | x]. Returns the output and x's own (rotated) keys/values."""
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q = apply_rotary(self.q_norm(self._heads(q, self.heads)), *rope)
        k = apply_rotary(self.k_norm(self._heads(k, self.heads)), *rope)
        v = self._heads(v, self.heads)
        keys, values = (k, v) if past is None else (torch.cat((past[0], k), 2), torch.cat((past[1], v), 2))
        return self._attend(q, keys, values, mask), (k, v)

    def context_kv(self, context: torch.Tensor) -> KV:
        """Keys/values of the conditioning tokens: computed once per prompt, then reused."""
        k, v = self.to_kv(context).chunk(2, dim=-1)
        return self.k_norm(self._heads(k, self.kv_heads)), self._heads(v, self.kv_heads)

    def cross_attend(self, x: torch.Tensor, context_kv: KV) -> torch.Tensor:
        k, v = context_kv
        if k.shape[0] != x.shape[0]:  # one prompt shared by a batch
            k, v = k.expand(x.shape[0], -1, -1, -1), v.expand(x.shape[0], -1, -1, -1)
        q = self.q_norm(self._heads(self.to_q(x), self.heads))
        return self._attend(q, k, v, None)


class GLU(nn.Module):
    """SwiGLU input half: proj → (value, gate), value · SiLU(gate)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.silu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        out = nn.Linear(dim * mult, dim)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        # index 1 is SAO's dropout slot; kept so the checkpoint's `ff.ff.2` lines up
        self.ff = nn.Sequential(GLU(dim, dim * mult), nn.Identity(), out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention to conditioning, SwiGLU feed-forward."""

    def __init__(self, dim: int, head_dim: int, context_dim: int, ff_mult: int = 4):
        super().__init__()
        self.pre_norm = LayerNorm(dim)
        self.self_attn = Attention(dim, head_dim)
        self.cross_attend_norm = LayerNorm(dim)
        self.cross_attn = Attention(dim, head_dim, context_dim=context_dim)
        self.ff_norm = LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor, rope, context_kv: KV, past: KV | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KV]:
        attn, kv = self.self_attn.self_attend(self.pre_norm(x), rope, past, mask)
        x = x + attn
        x = x + self.cross_attn.cross_attend(self.cross_attend_norm(x), context_kv)
        x = x + self.ff(self.ff_norm(x))
        return x, kv
