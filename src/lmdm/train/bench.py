"""`bench_training`: stage-1 training throughput on random data, for the preset shapes.

The step measured is the real one (FinetuneObjective.loss under autocast, backward, AdamW), on
random latents and captions, so the numbers are what `lmdm train finetune` sees minus data loading.
"""
from __future__ import annotations

import time

import torch

from ..config import preset as model_preset
from ..engine.model import LiveMusicModel
from .config import TrainConfig
from .finetune import FinetuneObjective

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _RandomLatents:
    def __init__(self, io: int, frames: int, n: int = 8):
        g = torch.Generator().manual_seed(0)
        self.items = [torch.randn(io, frames, generator=g) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def set_epoch(self, epoch):
        pass

    def __getitem__(self, i):
        return {"latents": self.items[i], "caption": "random clip", "path": f"random{i}", "start": 0}


def bench_training(preset: str = "tiny", dtype: str = "bf16", steps: int = 3, batch_size: int = 2,
                   pattern: str = "block-causal", warmup: int = 1) -> dict:
    """Time `steps` optimizer steps (after `warmup`) of stage-1 fine-tuning at batch `batch_size`.
    Returns a JSON-able dict: latent frames/s, audio seconds/s, ms/step and the shapes measured."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    torch.manual_seed(0)
    model = LiveMusicModel(model_preset(preset, pattern)).float()
    cfg = TrainConfig.from_dict({"run": {"batch_size": batch_size, "precision": dtype}})
    p = model.config.pattern
    obj = FinetuneObjective(model, _RandomLatents(model.config.dit.io_channels, p.window_frames), cfg)
    params = [q for _, q in obj.phases[0].params]
    opt = torch.optim.AdamW(params, lr=1e-5)
    cast = torch.autocast("cpu", dtype=DTYPES[dtype]) if DTYPES[dtype] else torch.autocast("cpu", enabled=False)
    times = []
    for step in range(warmup + steps):
        batch = obj.load_batch([i % len(obj.data) for i in range(batch_size)], [0] * batch_size,
                               list(range(step * batch_size, (step + 1) * batch_size)))
        t0 = time.perf_counter()
        with cast:
            loss, _ = obj.loss("model", batch, step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    per_step = sum(times) / len(times)
    frames = batch_size * p.window_frames
    return {"preset": preset, "dtype": dtype, "pattern": pattern, "batch_size": batch_size, "steps": steps,
            "window_frames": p.window_frames, "trainable_params": sum(q.numel() for q in params),
            "ms_per_step": 1000 * per_step, "latent_frames_per_s": frames / per_step,
            "audio_s_per_s": frames * model.config.frame_seconds / per_step, "threads": torch.get_num_threads()}
