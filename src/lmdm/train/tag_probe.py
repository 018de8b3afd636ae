"""A frozen latent tagger for the tag loss: style, instruments and tempo class read from latents.

Why: the default model barely used its caption. On 32 training windows without context, the
stage-1 loss at t = 1 with the item's own caption was 0.937 and with another item's 0.941 (0.3 %
apart), and ARC-Forcing's contrastive term, the paper's source of prompt adherence, never learned
here (it stayed near ln 2). What separates styles is a small share of the latents' variance, so the
velocity MSE hardly rewards it. The probe, fitted once on the training latents and the corpus's own
metadata (the labels `lmdm.eval.tagger` uses: the generator's style, the General-MIDI families of its
stems, slow / medium / fast), reads those labels from one block of latents; post-training adds its
cross-entropy on the model's rollouts, a loss that only following the prompt lowers. It is not the
evaluation's tagger, which hears decoded audio and was trained separately.

Fitted deterministically (seeded, fixed steps) and saved next to the run's checkpoints, so a resumed
run reads the same probe.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import DataError
from ..data.labels import INSTRUMENTS, TEMPO_CLASSES, instruments_of, tempo_class


class TagProbe(nn.Module):
    """latents (batch, io, frames) -> logits {"style": (batch, styles), "instruments": (batch, 17),
    "tempo": (batch, 3)}, averaged over frames (a receptive field of ~1 s, then mean pooling)."""

    def __init__(self, io_channels: int, styles: list[str], width: int = 128):
        super().__init__()
        self.styles = list(styles)
        self.net = nn.Sequential(nn.Conv1d(io_channels, width, 5, padding=2), nn.GELU(),
                                 nn.Conv1d(width, width, 5, padding=4, dilation=2), nn.GELU(),
                                 nn.Conv1d(width, width, 5, padding=8, dilation=4), nn.GELU())
        self.heads = nn.ModuleDict({"style": nn.Linear(width, len(self.styles)),
                                    "instruments": nn.Linear(width, len(INSTRUMENTS)),
                                    "tempo": nn.Linear(width, len(TEMPO_CLASSES))})

    def forward(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.net(latents).mean(-1)
        return {k: head(h) for k, head in self.heads.items()}


def record_labels(record: dict, styles: list[str]) -> dict[str, torch.Tensor]:
    """A latent-manifest record's labels: style index, instrument multi-hot, tempo class."""
    meta = record.get("metadata") or {}
    if meta.get("style") not in styles or "tempo" not in meta:
        raise DataError(f"clip {record.get('path')} has no style / tempo metadata: the tag loss needs the "
                        f"built-in corpus's metadata (lmdm data synth)")
    inst = torch.zeros(len(INSTRUMENTS))
    for name in instruments_of(meta):
        inst[INSTRUMENTS.index(name)] = 1
    return {"style": torch.tensor(styles.index(meta["style"])), "instruments": inst,
            "tempo": torch.tensor(tempo_class(float(meta["tempo"])))}


def corpus_styles(records: list[dict]) -> list[str]:
    return sorted({(r.get("metadata") or {}).get("style") for r in records} - {None})


def tag_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Style and tempo cross-entropy plus instrument binary cross-entropy, per item (batch,)."""
    return (F.cross_entropy(logits["style"], labels["style"], reduction="none")
            + F.binary_cross_entropy_with_logits(logits["instruments"], labels["instruments"],
                                                 reduction="none").mean(-1)
            + F.cross_entropy(logits["tempo"], labels["tempo"], reduction="none"))


def stack_labels(labels: list[dict[str, torch.Tensor]], device=None) -> dict[str, torch.Tensor]:
    return {k: torch.stack([lab[k] for lab in labels]).to(device) for k in labels[0]}


def fit_tag_probe(dataset, io_channels: int, steps: int = 1500, crop: int = 48, batch: int = 32, seed: int = 0,
                  heldout: float = 0.1, progress: bool = True) -> tuple[TagProbe, dict[str, float]]:
    """Fit on random `crop`-frame crops of all but the last `heldout` fraction of a `LatentDataset`'s
    clips; returns the probe and its accuracy on crops of the held-out clips (style, tempo: top-1;
    instruments: mean Jaccard at 0.5)."""
    records = dataset.records
    styles = corpus_styles(records)
    pairs = [(dataset.tensors[r["latents"]].float(), record_labels(r, styles)) for r in records]
    n_held = max(1, int(len(pairs) * heldout)) if len(pairs) > 1 else 0
    train, held = pairs[: len(pairs) - n_held] or pairs, pairs[len(pairs) - n_held:] or pairs
    crop = min(crop, *(z.shape[-1] for z, _ in pairs))
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = TagProbe(io_channels, styles)
    opt = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def crops(source, count):
        xs, labs = [], []
        for _ in range(count):
            z, lab = source[int(torch.randint(len(source), (1,), generator=g))]
            s = int(torch.randint(z.shape[-1] - crop + 1, (1,), generator=g))
            xs.append(z[..., s:s + crop])
            labs.append(lab)
        return torch.stack(xs), stack_labels(labs)

    for _ in tqdm(range(steps), desc="tag probe", disable=not progress):
        x, labs = crops(train, batch)
        loss = tag_loss(probe(x), labs).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    probe.eval().requires_grad_(False)
    x, labs = crops(held, 512)
    return probe, probe_accuracy(probe, x, labs)


@torch.no_grad()
def probe_accuracy(probe: TagProbe, latents: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    out = probe(latents)
    pred, true = out["instruments"] > 0, labels["instruments"] > 0.5
    jaccard = (pred & true).sum(-1) / (pred | true).sum(-1).clamp(min=1)
    return {"style": float((out["style"].argmax(-1) == labels["style"]).float().mean()),
            "instruments": float(jaccard.mean()),
            "tempo": float((out["tempo"].argmax(-1) == labels["tempo"]).float().mean())}


def load_or_fit_tag_probe(path: Path, dataset, io_channels: int, steps: int, seed: int, crop: int = 48) -> TagProbe:
    """The run's probe: read from `path` when a previous (or resumed) run saved it, else fitted (on crops of
    `crop` frames, the block size it will read) and saved."""
    import json
    from safetensors.torch import load_file, save_file
    styles = corpus_styles(dataset.records)
    if path.is_file():
        saved = json.loads(path.with_suffix(".json").read_text())["styles"]
        if saved != styles:
            raise DataError(f"{path} was fitted on styles {saved}, this corpus has {styles}")
        probe = TagProbe(io_channels, styles)
        probe.load_state_dict(load_file(str(path)))
        return probe.eval().requires_grad_(False)
    probe, acc = fit_tag_probe(dataset, io_channels, steps, crop, seed=seed)
    print(f"tag probe: held-out accuracy style {acc['style']:.3f}, instruments {acc['instruments']:.3f}, "
          f"tempo {acc['tempo']:.3f} -> {path}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"styles": styles, "heldout_accuracy": acc}, indent=1))
    return probe
