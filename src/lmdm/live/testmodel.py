"""A small random model for tests and demos of `lmdm live` (there is no trained default model yet).

Tiny DiT (width 64, block-causal) with a toy stereo autoencoder at 44.1 kHz: 32 samples per latent
frame, so a block of 128 frames is 4096 samples = 93 ms, and the context is 3 blocks. On one CPU
core it generates ~2x faster than real time at 8 steps, ~4x at 4 steps. It sounds like noise.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch


def tiny_live_model(block_frames: int = 128, context_blocks: int = 3, steps: int = 8, seed: int = 0,
                    groups: bool = False, sample_rate: int = 44100, strides: tuple[int, ...] = (4, 8),
                    pattern: str = "block-causal"):
    """`groups=True`: with the `sketch`, `accompaniment` and `beat` input groups (every mode and control of `lmdm live`),
    and the DiT's zero-initialised weights given random values so the input changes the output.
    `sample_rate` / `strides`: a toy autoencoder at another rate / latent hop (e.g. 22050 Hz, (4, 8, 32))."""
    import lmdm
    from lmdm.models.autoencoder import AutoencoderConfig
    cfg = lmdm.preset("tiny", pattern)
    mults = [1, 2, 2, 2][:len(strides)]
    cfg.autoencoder = AutoencoderConfig(channels=8, c_mults=mults, strides=list(strides), latent_dim=8,
                                        sample_rate=sample_rate).to_dict()
    cfg.downsampling_ratio, cfg.sample_rate = math.prod(strides), sample_rate
    cfg.pattern.block_frames, cfg.pattern.context_frames = block_frames, context_blocks * block_frames
    if groups:
        cfg.dit.input_groups = {"context": 9, "sketch": 4, "accompaniment": 9}
    cfg.steps = steps
    cfg.validate()
    torch.manual_seed(seed)
    model = lmdm.LiveMusicModel(cfg).eval()
    if groups:  # the beat clock is added after construction, so every other weight is what it was before it
        from lmdm.train.finetune import add_input_groups
        add_input_groups(model, {"beat": 3})
        # every zero-initialised weight (router, output projections) random, so inputs matter
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.dit.parameters():
                if p.dim() > 0 and not p.any():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def save_tiny_live_model(folder: str | Path, **kwargs) -> Path:
    """Write the test model as an lmdm directory, for `lmdm live --model DIR`."""
    from lmdm.checkpoints import save_pretrained
    return save_pretrained(tiny_live_model(**kwargs), folder)
