"""A frozen probe from latents to loudness and brightness, for the sketch's control loss.

Why: in a compact codec's latent space the sketch controls explain little of the variance (measured
on the default corpus: a linear map from [loudness, centroid, pitch] explains 4 % of the latents'
variance), so the velocity MSE barely rewards following them and a model trained on it ignores the
sketch (loss with the true sketch within 0.5 % of the loss with a shuffled one). The probe, a small
convolutional net fitted once on the training latents and their stored controls, reads the two
controls back from latents; fine-tuning adds ‖probe(x̂0) − probe(x0)‖² on the target frames of
items that carry a sketch, x̂0 = x_t − t·v̂ the model's clean estimate. That is a loss in the units
the sketch speaks, which the model can only lower by following it.

The probe is fitted deterministically (seeded, fixed steps) and saved next to the run's checkpoints,
so a resumed run reads the same probe.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

PROBE_CONTROLS = ("loudness", "centroid")   # the normalised sketch rows the probe reads back


class ControlProbe(nn.Module):
    """latents (batch, io, frames) -> normalised [loudness, centroid] (batch, 2, frames); a receptive
    field of 9 frames (~0.4 s at 21.5 frames/s)."""

    def __init__(self, io_channels: int, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(io_channels, width, 5, padding=2), nn.GELU(),
                                 nn.Conv1d(width, width, 5, padding=2), nn.GELU(),
                                 nn.Conv1d(width, len(PROBE_CONTROLS), 1))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(latents)


def probe_pairs(dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(latents (io, T), targets (2, T)) per clip of a `LatentDataset` built with controls=True."""
    from ..audio.controls import NAMES
    from ..engine.sketch import sketch_from_controls
    pairs = []
    for r in dataset.records:
        controls = dataset.tensors[r["controls"]].double().numpy()
        target = sketch_from_controls(dict(zip(NAMES, controls)))[: len(PROBE_CONTROLS)]
        pairs.append((dataset.tensors[r["latents"]].float(), target))
    return pairs


def fit_control_probe(pairs, io_channels: int, steps: int = 400, crop: int = 128, batch: int = 32,
                      seed: int = 0, heldout: float = 0.1, progress: bool = True) -> tuple[ControlProbe, list[float]]:
    """Fit on random crops of all but the last `heldout` fraction of clips; returns the probe and its
    R² per control on the held-out clips (whole clips)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):   # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        probe = ControlProbe(io_channels)
    n_held = max(1, int(len(pairs) * heldout)) if len(pairs) > 1 else 0
    train, held = pairs[: len(pairs) - n_held] or pairs, pairs[len(pairs) - n_held:]
    train = [p for p in train if p[0].shape[-1] >= crop] or train
    opt = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in tqdm(range(steps), desc="control probe", disable=not progress):
        xs, ys = [], []
        for _ in range(batch):
            z, y = train[int(torch.randint(len(train), (1,), generator=g))]
            n = min(crop, z.shape[-1])
            s = int(torch.randint(z.shape[-1] - n + 1, (1,), generator=g))
            xs.append(z[..., s:s + n])
            ys.append(y[..., s:s + n])
        n = min(x.shape[-1] for x in xs)
        loss = F.mse_loss(probe(torch.stack([x[..., :n] for x in xs])), torch.stack([y[..., :n] for y in ys]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    probe.eval().requires_grad_(False)
    return probe, probe_r2(probe, held or train)


@torch.no_grad()
def probe_r2(probe: ControlProbe, pairs) -> list[float]:
    pred = torch.cat([probe(z[None])[0] for z, _ in pairs], -1)
    true = torch.cat([y for _, y in pairs], -1)
    return (1 - ((true - pred) ** 2).sum(-1) / ((true - true.mean(-1, keepdim=True)) ** 2).sum(-1)).tolist()


def load_or_fit_probe(path: Path, dataset, io_channels: int, steps: int, seed: int) -> ControlProbe:
    """The run's probe: read from `path` when a previous (or resumed) run saved it, else fitted and saved."""
    from safetensors.torch import load_file, save_file
    probe = ControlProbe(io_channels)
    if path.is_file():
        probe.load_state_dict(load_file(str(path)))
        return probe.eval().requires_grad_(False)
    probe, r2 = fit_control_probe(probe_pairs(dataset), io_channels, steps, seed=seed)
    print(f"control probe: held-out R² loudness {r2[0]:.3f}, centroid {r2[1]:.3f} -> {path}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, str(path))
    return probe
