"""Conditioners: text → tokens, numbers → embeddings, and weighted prompt blending.

`ByteTextEncoder` is a small trainable encoder over UTF-8 bytes: it needs no download and suits
models lmdm trains itself at any size. Like SAO's T5 path it always emits `max_tokens` tokens and
padded positions are not masked. `NumberConditioner` is SAO's `seconds_total` conditioner.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import PromptError

Prompts = list[tuple[str, float]]


def check_prompts(prompts) -> Prompts:
    """Validate a weighted prompt list: non-empty, (text, weight>0) pairs."""
    if isinstance(prompts, str):
        prompts = [(prompts, 1.0)]
    try:
        prompts = [(str(text), float(weight)) for text, weight in prompts]
    except (TypeError, ValueError) as e:
        raise PromptError(f"prompts must be a string or (text, weight) pairs, got {prompts!r}") from e
    if not prompts:
        raise PromptError("prompt list is empty")
    bad = [(text, w) for text, w in prompts if not (w > 0 and math.isfinite(w))]
    if bad:
        raise PromptError(f"prompt weights must be positive and finite, got {bad}")
    return prompts


def dominant(prompts: Prompts) -> str:
    """The prompt with the largest weight (first one on ties)."""
    return max(prompts, key=lambda p: p[1])[0]


class ByteTextEncoder(nn.Module):
    PAD = 256

    def __init__(self, dim: int, max_tokens: int = 64):
        super().__init__()
        self.max_tokens = max_tokens
        self.embed = nn.Embedding(257, dim)
        self.position = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = torch.full((len(texts), self.max_tokens), self.PAD, dtype=torch.long, device=self.position.device)
        for i, text in enumerate(texts):
            data = list(text.encode("utf-8"))[: self.max_tokens]
            ids[i, : len(data)] = torch.tensor(data, dtype=torch.long)
        return self.embed(ids) + self.position


class LearnedFourier(nn.Module):
    """SAO's LearnedPositionalEmbedding for scalars: [x, sin(2πxw), cos(2πxw)]."""

    def __init__(self, dim: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None]
        freqs = x * self.weights[None, :] * 2 * math.pi
        return torch.cat((x, freqs.sin(), freqs.cos()), dim=-1)


class NumberEmbedder(nn.Module):
    def __init__(self, features: int, dim: int = 256):
        super().__init__()
        self.embedding = nn.Sequential(LearnedFourier(dim), nn.Linear(dim + 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x)


class NumberConditioner(nn.Module):
    """SAO's number conditioner: clamp to [min, max], normalise to [0, 1], embed → (B, 1, dim)."""

    def __init__(self, output_dim: int, min_val: float = 0.0, max_val: float = 256.0):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val
        self.embedder = NumberEmbedder(output_dim)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        values = values.to(self.embedder.embedding[1].weight.dtype).clamp(self.min_val, self.max_val)
        normalised = (values - self.min_val) / (self.max_val - self.min_val)
        return self.embedder(normalised)[:, None, :]


def blend(embeddings: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Weighted average of per-prompt embeddings (P, …) → (1, …), weights normalised to sum 1."""
    w = torch.tensor(weights, dtype=embeddings.dtype, device=embeddings.device)
    w = (w / w.sum()).view(-1, *([1] * (embeddings.dim() - 1)))
    return (embeddings * w).sum(0, keepdim=True)
