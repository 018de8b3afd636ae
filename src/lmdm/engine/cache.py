"""KV caches that let an LMDM reuse context keys/values across denoising steps and blocks.

Rotary positions are fixed to the window: context occupies 1..C, the target C+1..C+B, and the
timestep token T position 0, exactly as in training. Positions therefore never grow, however
long the stream runs (hours), so fp32 angles keep their precision. The block-causal cache slides
by re-rotating its keys by -B once per block; rotations compose, and a key is rotated at most
w-1 times before it leaves the cache, so the error stays at a few ulps. (Growing absolute
positions would lose angle precision after ~10^6 frames, about 13 hours.)

EncDecCache (rebuilt every block):
    prefill(context)   one pass over the C context frames (context sees only context)
    step(target + T)   B+1 query tokens over [cache | target | T], no mask needed

BlockCausalCache (carried across blocks; holds the w-1 most recent finished chunks):
    bootstrap(context) one masked pass over the w context chunks (first block, prompt change)
    fused_step(...)    the just-finished chunk (clean) + the new noisy target + T in one pass;
                       the finished chunk's K/V enter the cache, the oldest chunk leaves
    step(target + T)   B+1 query tokens over [cache | target | T], no mask needed
Per block the block-causal cache processes (N+1)·B+N tokens instead of N·(C+B+1).
"""
from __future__ import annotations

import torch

from ..errors import StateError
from ..models.dit import DiT, Conditioning
from ..models.patterns import banded, fused_step_mask
from ..nn.attention import KV, apply_rotary


def _arange(a: int, b: int, device) -> torch.Tensor:
    return torch.arange(a, b, device=device)


def _target_positions(context_frames: int, block_frames: int, device) -> torch.Tensor:
    """Target frames at C+1..C+B, then T at 0."""
    return torch.cat((_arange(context_frames + 1, context_frames + block_frames + 1, device),
                      torch.zeros(1, dtype=torch.long, device=device)))


def _leading_rows(kv: list[KV] | None, cond: Conditioning, rows: int | None):
    """The cache's and the conditioning's first `rows` rows of the model batch (all for None; a
    conditioning shared by the batch, one row, stays whole)."""
    if rows is None:
        return kv, cond
    take = lambda x: x if x is None or x.shape[0] == 1 else x[:rows]
    return ([(k[:rows], v[:rows]) for k, v in kv] if kv is not None else None,
            Conditioning([(take(k), take(v)) for k, v in cond.kv], take(cond.global_embed)))


class _Cache:
    kv: list[KV] | None = None
    C: int
    B: int

    def reset(self) -> None:
        self.kv = None

    @property
    def ready(self) -> bool:
        return self.kv is not None

    def step(self, dit: DiT, tokens: torch.Tensor, cond: Conditioning, rows: int | None = None) -> torch.Tensor:
        """tokens = [target (B) | T] of the model batch's first `rows` rows (None: all); returns their
        hidden states. A guidance branch whose result a step does not use is left out this way."""
        past, cond = _leading_rows(self.kv, cond, rows)
        h, _ = dit.run(tokens, _target_positions(self.C, self.B, tokens.device), cond, past=past,
                       mask=self._step_mask(tokens))
        return h

    def _step_mask(self, tokens: torch.Tensor) -> torch.Tensor | None:
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.kv is None:
            return {}
        return {"cache.k": torch.stack([k for k, _ in self.kv]), "cache.v": torch.stack([v for _, v in self.kv])}

    def load_state_dict(self, state: dict[str, torch.Tensor], depth: int) -> None:
        if "cache.k" not in state:
            self.kv = None
            return
        k, v = state["cache.k"], state["cache.v"]
        if k.shape[0] != depth or k.shape != v.shape:
            raise StateError(f"cache has {k.shape[0]} layers of shape {tuple(k.shape[1:])}, model has {depth} layers")
        self.kv = [(k[i].clone(), v[i].clone()) for i in range(depth)]


class EncDecCache(_Cache):
    def __init__(self, context_frames: int, block_frames: int):
        self.C, self.B = context_frames, block_frames

    def prefill(self, dit: DiT, context_tokens: torch.Tensor, cond: Conditioning) -> None:
        if self.C == 0:
            self.kv = None
            return
        _, self.kv = dit.run(context_tokens, _arange(1, self.C + 1, context_tokens.device), cond)


class BlockCausalCache(_Cache):
    """`mode="exact"`: lmdm's cache, as above. `mode="authors"`: the authors' released sampler
    (generate_diffusion_cond_blockar with use_kv_cache=True, rope_mode="fixed"): the cache keeps all
    w context chunks and `step` attends to all of them (their training mask lets the target see
    w-1), and the fused step places the finished chunk and the target one chunk later (C+1.. and
    C+B+1..) with the cache still at 1..C, re-rotating it by -B afterwards. Only to reproduce what
    their code makes; docs/authors-interop.md."""

    def __init__(self, block_frames: int, context_chunks: int, mode: str = "exact"):
        if mode not in ("exact", "authors"):
            raise StateError(f"block-causal cache mode must be 'exact' or 'authors', got {mode!r}")
        self.B, self.w, self.mode = block_frames, context_chunks, mode
        self.C = block_frames * context_chunks
        self._bootstrap_step = False   # authors: the step right after a bootstrap is their masked full pass

    def bootstrap(self, dit: DiT, context_tokens: torch.Tensor, cond: Conditioning) -> None:
        """Fill the cache from the w context chunks (B·w frames) with the banded mask."""
        dev = context_tokens.device
        chunk = _arange(0, self.C, dev) // self.B
        _, kv = dit.run(context_tokens, _arange(1, self.C + 1, dev), cond, mask=banded(chunk, chunk, self.w))
        keep = 0 if self.mode == "authors" else self.B
        self.kv = [(k[:, :, keep:], v[:, :, keep:]) for k, v in kv]
        self._bootstrap_step = self.mode == "authors"

    def _step_mask(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """authors: their bootstrap runs the block's first step inside the masked full pass, where the
        target does not see the oldest context chunk; their later steps see every cached chunk."""
        if not self._bootstrap_step:
            return None
        self._bootstrap_step = False
        mask = torch.ones(tokens.shape[1], self.C + tokens.shape[1], dtype=torch.bool, device=tokens.device)
        mask[:, : self.B] = False
        return mask

    def fused_step(self, dit: DiT, finished_tokens: torch.Tensor, tokens: torch.Tensor,
                   cond: Conditioning) -> torch.Tensor:
        """Slide the window by one chunk and run the first denoising step of the new block.
        finished_tokens: the just-finished chunk as clean context (B frames); tokens: [target | T]."""
        B, C, dev = self.B, self.C, tokens.device
        if self.mode == "authors":
            return self._authors_fused_step(dit, finished_tokens, tokens, cond)
        cos, sin = dit.rope(torch.tensor([-B], device=dev))
        past = [(apply_rotary(k, cos, sin), v) for k, v in self.kv]  # cached chunks now at 1..C-B
        pos = torch.cat((_arange(C - B + 1, C + 1, dev), _target_positions(C, B, dev)))
        mask = fused_step_mask(self.w - 1, B, device=dev)
        h, kv = dit.run(torch.cat((finished_tokens, tokens), 1), pos, cond, past=past, mask=mask)
        self.kv = [(torch.cat((pk[:, :, B:], k[:, :, :B]), 2), torch.cat((pv[:, :, B:], v[:, :, :B]), 2))
                   for (pk, pv), (k, v) in zip(past, kv)]
        return h[:, B:]

    def _authors_fused_step(self, dit: DiT, finished_tokens: torch.Tensor, tokens: torch.Tensor,
                            cond: Conditioning) -> torch.Tensor:
        B, C, dev = self.B, self.C, tokens.device
        pos = torch.cat((_arange(C + 1, C + 2 * B + 1, dev), torch.zeros(1, dtype=torch.long, device=dev)))
        mask = fused_step_mask(self.w, B, device=dev, context_chunks=self.w)
        h, kv = dit.run(torch.cat((finished_tokens, tokens), 1), pos, cond, past=self.kv, mask=mask)
        cos, sin = dit.rope(torch.tensor([-B], device=dev))
        self.kv = [(apply_rotary(torch.cat((pk[:, :, B:], k[:, :, :B]), 2), cos, sin),
                    torch.cat((pv[:, :, B:], v[:, :, :B]), 2)) for (pk, pv), (k, v) in zip(self.kv, kv)]
        return h[:, B:]
