"""Prompt guidance: the text prompt enforced at sampling time through a small latent-text model.

A DiT that learned its caption only loosely (the default model: see its model card) can be pushed
towards it while it samples, as control guidance pushes towards a sketch: at chosen denoising steps
the clean estimate x0 of the block (read together with the clean context just before it, so a short
block is judged in its setting) takes `iterations` Adam-style steps of fixed RMS that raise the
cosine similarity between a latent embedding of it and the embedding of the stream's prompt; the
sampler then re-noises the corrected estimate, so the following model call builds on it (classifier
guidance on the clean estimate, as in CLIP/CLAP-guided diffusion, per block so it streams).

The embeddings come from a `PromptProbe`: a latent-side conv encoder (about one second of receptive
field, mean-pooled) and a text-side projection of the mean-pooled conditioning tokens (the same
MiniLM tokens the DiT cross-attends to, so a weighted blend of prompts is guided towards its blend),
trained contrastively (CLIP's symmetric InfoNCE) on the training latents and their captions
(`lmdm.train.prompt_probe.fit_prompt_probe`, a few minutes on a CPU). It works in latent space, never through the decoder,
so a guidance iteration costs a tiny conv net's forward and backward, not a decoder pass.

Guidance stops pushing a block once it matches its prompt as well as the median training crop matches
its own caption (`PromptProbe.target_similarity`, a hinge): on the default model, pushing every block
further also pushed the styles the model already played right away from them (model card, v0.9).

A probe can also carry instrument heads (`instruments=17`: the General MIDI families plus drums of
`lmdm.data.labels.INSTRUMENTS`, read from the corpus metadata): one on the latent features, one on the
pooled text. The contrastive space is dominated by style, so guiding by it alone traded instruments
for style (v0.9); with heads, guidance also pushes each instrument family towards the side the prompt
puts it on (named: present, not named: absent), with a hinge at a margin, so families already
heard right are left alone.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .control_guidance import adam_guidance_steps

PROBE_FRAMES = 48   # the probe reads a block with clean context before it up to this many frames (~2.2 s)
INSTRUMENT_MARGIN = 2.0   # instrument guidance stops once a family's logit is this far on the prompt's side

def pool_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Conditioning tokens (batch, N, dim), padding rows all zero -> their mean over the non-zero rows
    (batch, dim): the sentence embedding MiniLM was trained to give. A null prompt pools to zeros."""
    real = (tokens.abs().sum(-1, keepdim=True) > 0).to(tokens.dtype)
    return (tokens * real).sum(1) / real.sum(1).clamp_min(1.0)


class PromptProbe(nn.Module):
    """Latents (batch, io, frames) and pooled text (batch, text_dim) -> unit embeddings (batch, dim)
    in one space, where a block and the prompt it follows are close."""

    def __init__(self, io_channels: int, text_dim: int, width: int = 128, dim: int = 128, instruments: int = 0):
        super().__init__()
        self.dim, self.instruments = dim, instruments
        self.latent_net = nn.Sequential(nn.Conv1d(io_channels, width, 5, padding=2), nn.GELU(),
                                        nn.Conv1d(width, width, 5, padding=4, dilation=2), nn.GELU(),
                                        nn.Conv1d(width, width, 5, padding=8, dilation=4), nn.GELU())
        self.latent_proj = nn.Linear(width, dim)
        self.text_proj = nn.Sequential(nn.Linear(text_dim, width), nn.GELU(), nn.Linear(width, dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if instruments:   # multi-label instrument-family logits from each side
            self.latent_instruments = nn.Linear(width, instruments)
            self.text_instruments = nn.Sequential(nn.Linear(text_dim, width), nn.GELU(), nn.Linear(width, instruments))
        # guidance stops pushing a block once it matches its prompt this well (`fit_prompt_probe` sets it to
        # how well training latents match their own captions); 1 = always push
        self.register_buffer("target_similarity", torch.tensor(1.0))

    def embed_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.read_latents(latents)[0]

    def read_latents(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (unit embedding, instrument logits or None)."""
        h = self.latent_net(latents).mean(-1)
        return F.normalize(self.latent_proj(h), dim=-1), (self.latent_instruments(h) if self.instruments else None)

    def embed_text(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(pooled), dim=-1)

    def text_target(self, pooled: torch.Tensor) -> torch.Tensor:
        """What guidance aims at for a prompt: (batch, dim + instruments), the unit text embedding then,
        with instrument heads, each family's probability that the prompt names it."""
        emb = self.embed_text(pooled)
        return torch.cat((emb, self.text_instruments(pooled).sigmoid()), -1) if self.instruments else emb


def guide_to_prompt(x0: torch.Tensor, context: torch.Tensor, probe: PromptProbe, target: torch.Tensor,
                    guidance) -> torch.Tensor:
    """x0 (batch, io, B) after `guidance.iterations` Adam-style steps that raise the cosine similarity
    between `probe.embed_latents([context | x0])` and the prompt's `probe.text_target` (batch, dim [+
    instruments]) up to the probe's target similarity and, with instrument heads, move each family's
    logit to the prompt's side by `INSTRUMENT_MARGIN` (the two terms' gradients balanced: see
    `adam_guidance_steps`, `instrument_weight` their ratio); `context` (batch, io, k >= 0) are the clean
    frames just before the block (not moved)."""
    dtype = next(probe.parameters()).dtype
    ctx, target = context.to(dtype), target.to(dtype)
    text, named = target[..., :probe.dim], target[..., probe.dim:]
    side = (named > 0.5).to(dtype) * 2 - 1   # +1: the prompt names the family, -1: it does not

    def loss_of(z):
        emb, inst = probe.read_latents(torch.cat((ctx, z.to(dtype)), -1))
        similarity = (probe.target_similarity - (emb * text).sum(-1)).clamp_min(0).sum()
        if inst is None or guidance.instrument_weight == 0:
            return similarity
        # balanced: each term's gradient at unit RMS, so the weight is the instrument term's share of the step
        return [(1.0, similarity), (guidance.instrument_weight, (INSTRUMENT_MARGIN - side * inst).clamp_min(0).sum())]
    return adam_guidance_steps(x0.float(), loss_of, guidance.strength, guidance.iterations)
