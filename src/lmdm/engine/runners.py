"""How one block is denoised under each attention pattern, as functions of the stream `s`: its
window, cache, conditioning and inputs go in, the block's clean latents (batch, io, B) come out.

- block-causal (`block_causal`): the finished chunk enters the cache at the first step of the next
  block (a fused step), the target attends to the cached chunks; a bootstrap fills the cache from the
  window when the stream starts or its prompt, branches or block size change;
- enc-dec (`enc_dec`): the context is prefilled into the cache every block, each step runs the target;
- `cache="none"` (`window`): every step one masked forward over the whole window;
- bidirectional (`outpaint`): the baseline, the whole window re-noised and recomputed every step.
Each runs the sampler with the stream's guidance (`Stream._denoise_fn`, `Stream._refine_fn`)."""
from __future__ import annotations

import torch

from .sampling import sample


def denoise_block(s, noise) -> torch.Tensor:
    pattern = s.pcfg.pattern
    if pattern == "bidirectional":
        return outpaint(s, noise)
    if s.pcfg.cache == "none":
        return window(s, noise)
    return enc_dec(s, noise) if pattern == "enc-dec" else block_causal(s, noise)


def block_causal(s, noise: list[torch.Tensor]):
    dit, cache = s.dit, s.cache
    if s.needs_bootstrap or not cache.ready:
        cache.bootstrap(dit, s._context_tokens(s.history, s.history_mask, s.frame - s.C),
                        s.cond)
        s.pending, s.needs_bootstrap = None, False
    pending = s.pending

    def run(x, t, i):
        tokens = s._target_tokens(x, t)
        if i == 0 and pending is not None:   # every row: the finished chunk enters each branch's cache
            finished = s._context_tokens(pending, torch.ones(s.batch, 1, s.B), s.frame - s.B)
            h = cache.fused_step(dit, finished, tokens, s.cond)
        else:
            rows = s.active_rows(i)
            h = cache.step(dit, tokens[:rows], s.cond, rows)
        return dit.unembed(h[:, : s.B])

    x0 = sample(s._denoise_fn(run), noise, s.sampler, s.guidance, refine=s._refine_fn())
    s.pending = x0
    return x0


def enc_dec(s, noise: list[torch.Tensor]):
    dit, cache = s.dit, s.cache
    cache.prefill(dit, s._context_tokens(s.history, s.history_mask, s.frame - s.C), s.cond)
    s.needs_bootstrap = False

    def run(x, t, i):
        rows = s.active_rows(i)
        return dit.unembed(cache.step(dit, s._target_tokens(x, t)[:rows], s.cond, rows)[:, : s.B])

    return sample(s._denoise_fn(run), noise, s.sampler, s.guidance, refine=s._refine_fn())


def window(s, noise: list[torch.Tensor]):
    """`cache="none"`: every step one masked forward over the whole window, context from the router
    only (its noisy input is zeroed), as the authors' cache-free sampler and training do."""
    groups = {"context": torch.cat((torch.cat((s.history_mask, torch.zeros(s.batch, 1, s.B)), -1),
                                    torch.nn.functional.pad(s.history, (0, s.B))), 1)}
    groups = {k: s._per_branch(v) for k, v in groups.items()}
    groups.update(s._window_groups(s.frame - s.C, s.C + s.B))
    p = s.pcfg

    def run(x, t, i):
        xw = torch.nn.functional.pad(x, (s.C, 0))
        v = s.dit(s._dev(xw), s._dev(t), s.cond, s._dev(groups), pattern=p.pattern,
                     context_frames=s.C, block_frames=s.B, context_chunks=p.context_chunks)
        return v[..., s.C:]

    s.needs_bootstrap = False
    return sample(s._denoise_fn(run), noise, s.sampler, s.guidance, refine=s._refine_fn())


def outpaint(s, noise: tuple):
    """The baseline: the whole window is re-noised and recomputed at every step."""
    target_noise, context_noise = noise
    known, clean = s.history_mask, s.history
    window_noise = [torch.cat((c, n), -1) for c, n in zip(context_noise, target_noise)]
    groups = s._window_groups(s.frame - s.C, s.C + s.B) or None

    def run(x, t, i):
        ctx, tt = x[..., : s.C], float(t[0])
        renoised = (1 - tt) * s._per_branch(clean) + tt * s._per_branch(context_noise[i])
        m = s._per_branch(known)
        x = torch.cat((m * renoised + (1 - m) * ctx, x[..., s.C:]), -1)
        return s.dit(s._dev(x), s._dev(t), s.cond, None if groups is None else s._dev(groups))

    x0 = sample(s._denoise_fn(run), window_noise, s.sampler, s.guidance)
    return x0[..., s.C:]
