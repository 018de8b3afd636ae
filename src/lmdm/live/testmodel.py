"""A small random model for tests and demos of `lmdm live` (there is no trained default model yet).

Tiny DiT (width 64, block-causal) with a toy stereo autoencoder at 44.1 kHz: 32 samples per latent
frame, so a block of 128 frames is 4096 samples = 93 ms, and the context is 3 blocks. On one CPU
core it generates ~2x faster than real time at 8 steps, ~4x at 4 steps. It sounds like noise.
"""
from __future__ import annotations

from pathlib import Path

import torch


def tiny_live_model(block_frames: int = 128, context_blocks: int = 3, steps: int = 8, seed: int = 0):
    import lmdm
    from lmdm.models.autoencoder import AutoencoderConfig
    cfg = lmdm.preset("tiny")
    cfg.autoencoder = AutoencoderConfig(channels=8, c_mults=[1, 2], strides=[4, 8], latent_dim=8).to_dict()
    cfg.downsampling_ratio = 32
    cfg.pattern.block_frames, cfg.pattern.context_frames = block_frames, context_blocks * block_frames
    cfg.steps = steps
    cfg.validate()
    torch.manual_seed(seed)
    return lmdm.LiveMusicModel(cfg).eval()


def save_tiny_live_model(folder: str | Path, **kwargs) -> Path:
    """Write the test model as an lmdm directory, for `lmdm live --model DIR`."""
    from lmdm.checkpoints import save_pretrained
    return save_pretrained(tiny_live_model(**kwargs), folder)
