"""Analytic FLOP counts: lmdm's streaming DiT per pattern, and Magenta RealTime v1 for comparison.

Counted as 2 FLOPs per multiply-add of every matmul (projections, feed-forward, attention scores
and values); norms, activations and softmax are left out (a few % at these widths). The numbers
are per second of generated audio, so models with different frame rates and chunk sizes compare.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import DiTConfig


def _dit_layer_flops(cfg: DiTConfig, queries: int, keys: int, cond_tokens: int) -> float:
    """One transformer block over `queries` tokens attending to `keys` tokens (cached cond K/V)."""
    d, f = cfg.width, cfg.ff_mult * cfg.width
    proj = queries * (3 * d * d + d * d)                  # fused qkv + self-attn out
    proj += queries * (d * d + d * d)                     # cross-attn q + out
    proj += queries * (d * 2 * f + f * d)                 # SwiGLU in (value+gate) and out
    attn = queries * keys * d * 2 + queries * cond_tokens * d * 2  # scores + weighted values
    return 2.0 * (proj + attn)


def dit_flops_per_block(cfg: DiTConfig, pattern: str, context_frames: int, block_frames: int, steps: int,
                        cond_tokens: int = 65) -> float:
    """FLOPs of the DiT for one block in steady state (cross-attention K/V cached per prompt)."""
    C, B, N, L = context_frames, block_frames, steps, cfg.depth
    if pattern == "bidirectional":
        n = C + B + 1
        return L * N * _dit_layer_flops(cfg, n, n, cond_tokens)
    if pattern == "enc-dec":
        return L * (_dit_layer_flops(cfg, C, C, cond_tokens) + N * _dit_layer_flops(cfg, B + 1, C + B + 1, cond_tokens))
    cached = C - B  # w-1 chunks
    fused = _dit_layer_flops(cfg, 2 * B + 1, cached + 2 * B + 1, cond_tokens)
    return L * (fused + (N - 1) * _dit_layer_flops(cfg, B + 1, cached + B + 1, cond_tokens))


@dataclass
class MagentaRT:
    """Magenta RealTime v1 as published (SPEC §5): a T5 v1.1-Large-shaped encoder-decoder
    (d_model 1024, 24+24 layers, gated FF 2816; ~0.8 B parameters with embeddings) over
    SpectroStream tokens: 2 s chunks, encoder 1006 tokens (250 frames x 4 RVQ + 6 style), decoder
    800 tokens per chunk (50 frames x 16 RVQ levels) one at a time, CFG as a batch of 2. The
    codec (SpectroStream decoder) and the style model are not counted."""

    d_model: int = 1024
    layers: int = 24
    d_ff: int = 2816
    encoder_tokens: int = 1006
    decoder_tokens: int = 800
    cfg_batch: int = 2
    chunk_seconds: float = 2.0

    def flops_per_chunk(self) -> float:
        d, f = self.d_model, self.d_ff
        enc_layer = 4 * d * d + 3 * d * f
        dec_layer = 8 * d * d + 3 * d * f
        enc = self.encoder_tokens * (enc_layer + 2 * self.encoder_tokens * d)
        # token i of the decoder attends to i previous tokens and to the encoder output
        dec_attn = 2 * d * (self.decoder_tokens * (self.decoder_tokens + 1) / 2 + self.decoder_tokens * self.encoder_tokens)
        dec = self.cfg_batch * (self.decoder_tokens * dec_layer + dec_attn)
        return 2.0 * self.layers * (enc + dec)

    def flops_per_audio_second(self) -> float:
        return self.flops_per_chunk() / self.chunk_seconds


def comparison(cfg: DiTConfig, context_frames: int, block_frames: int, steps: int, frame_seconds: float,
               patterns=("bidirectional", "enc-dec", "block-causal")) -> dict:
    """GFLOPs per second of audio for each lmdm pattern and for Magenta RT v1."""
    block_seconds = block_frames * frame_seconds
    out = {p: round(dit_flops_per_block(cfg, p, context_frames, block_frames, steps) / block_seconds / 1e9, 2)
           for p in patterns}
    out["magenta-rt-v1"] = round(MagentaRT().flops_per_audio_second() / 1e9, 2)
    return out
