"""Attention patterns as boolean masks (True = may attend), for SDPA.

A window is laid out as [frames 0..n-1 | T], where T is the timestep(+global) token at the end.
T counts as part of the target: it sees what the target sees, and only the target sees it.

- bidirectional: everything sees everything (no mask).
- enc-dec:       kv < C or q >= C. Context sees only context; target and T see all.
- block-causal:  frames are cut into chunks of B; chunk i sees chunks i-w+1 .. i. T belongs to
                 the last chunk. Over a long stream this is a banded mask, the exact reference
                 for the rolling cache in `lmdm.engine.cache`.
"""
from __future__ import annotations

import torch

from ..errors import ShapeError


def window_mask(pattern: str, n_frames: int, context_frames: int, block_frames: int,
                context_chunks: int, device=None) -> torch.Tensor | None:
    """Mask over [n_frames frames | T] for a full (uncached) forward."""
    if pattern == "bidirectional":
        return None
    idx = torch.arange(n_frames + 1, device=device)
    if pattern == "enc-dec":
        is_ctx = idx < context_frames
        return (~is_ctx)[:, None] | is_ctx[None, :]
    if pattern == "block-causal":
        if n_frames % block_frames:
            raise ShapeError(f"block-causal forward needs a whole number of chunks: {n_frames} frames "
                             f"is not a multiple of block_frames={block_frames}")
        chunk = torch.clamp(idx // block_frames, max=n_frames // block_frames - 1)  # T joins the last chunk
        return banded(chunk, chunk, context_chunks)
    raise ShapeError(f"unknown attention pattern {pattern!r}")


def banded(q_chunk: torch.Tensor, k_chunk: torch.Tensor, context_chunks: int) -> torch.Tensor:
    """Chunk i sees chunks i-w+1 .. i (itself and the w-1 before it)."""
    diff = q_chunk[:, None] - k_chunk[None, :]
    return (diff >= 0) & (diff < context_chunks)


def fused_step_mask(cached_chunks: int, block_frames: int, device=None, context_chunks: int | None = None
                    ) -> torch.Tensor:
    """Block-causal fused first step.

    Queries: [finished chunk (B) | new target (B) | T]; keys: [cache (cached_chunks·B) | same three].
    Every chunk sees the w = context_chunks chunks up to itself (default w = cached_chunks + 1, lmdm's
    cache of w-1 chunks): the finished chunk sees the whole cache and itself; the target and T see all
    but the oldest cached chunk, the finished chunk, the target and T. With the authors' cache of w
    chunks (context_chunks = cached_chunks), the two oldest cached chunks are out of the target's band.
    """
    w = cached_chunks + 1 if context_chunks is None else context_chunks
    b = block_frames
    k_chunk = torch.cat((torch.arange(cached_chunks * b, device=device) // b,
                         torch.full((b,), cached_chunks, device=device),
                         torch.full((b + 1,), cached_chunks + 1, device=device)))
    return banded(k_chunk[cached_chunks * b:], k_chunk, w)
