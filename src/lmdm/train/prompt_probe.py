"""Fitting prompt guidance's latent-text probe (`lmdm.engine.prompt_guidance.PromptProbe`) on a model's
training latents and their captions: CLIP's symmetric InfoNCE between latent crops and the pooled
text tokens of one of their captions, plus instrument-family heads from the corpus metadata.
`add_prompt_probe` writes a model with one (`lmdm train prompt-probe`)."""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.labels import INSTRUMENTS, instruments_of
from ..errors import DataError
from ..engine.prompt_guidance import PromptProbe, pool_tokens


def contrastive_loss(probe: PromptProbe, latents: torch.Tensor, pooled: torch.Tensor,
                     instruments: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: item i's latents and text are the positive pair, the batch's others
    negatives. (Soft targets from the captions' own similarity, so same-style clips are pushed apart
    less, were tried on the built-in corpus and retrieved styles no better.) With instrument heads and
    `instruments` (batch, families) multi-hot labels, plus both heads' binary cross-entropy."""
    emb, inst_logits = probe.read_latents(latents)
    logits = probe.logit_scale.exp().clamp(max=100) * emb @ probe.embed_text(pooled).T
    target = torch.arange(len(logits))
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    if probe.instruments and instruments is not None:
        loss = loss + F.binary_cross_entropy_with_logits(inst_logits, instruments) \
            + F.binary_cross_entropy_with_logits(probe.text_instruments(pooled), instruments)
    return loss


def instrument_labels(metadata: dict | None) -> torch.Tensor:
    """A corpus clip's metadata -> multi-hot over `INSTRUMENTS` (all zero without stems)."""
    present = set(instruments_of(metadata or {}))
    return torch.tensor([float(name in present) for name in INSTRUMENTS])


def fit_prompt_probe(records: list[dict], tensors: dict[str, torch.Tensor], encode_text, io_channels: int,
                     text_dim: int, steps: int = 2000, crop: int = 48, batch: int = 48, seed: int = 0,
                     heldout: float = 0.1, instruments: bool = False,
                     progress: bool = True) -> tuple[PromptProbe, dict[str, float]]:
    """Fit on random `crop`-frame crops of all but the last `heldout` fraction of the clips (a
    `LatentDataset`'s `records` and `tensors`) paired with one of their captions; `encode_text(texts)`
    gives conditioning tokens (the model's text encoder). A batch never holds a clip twice. The probe's
    `target_similarity` becomes the median similarity of training crops to their own captions.
    `instruments`: also fit the instrument heads on the clips' metadata (needs stems in it).
    Returns the probe and, on crops of the held-out clips, caption retrieval: the share whose nearest
    caption among all held-out captions belongs to the same clip (`clip`) and to a clip of the same style
    (`style`); with instruments, the mean Jaccard index of each head's families (p > 0.5) with the
    metadata's (`instruments_latent` per crop, `instruments_text` per caption)."""
    clips = [(tensors[r["latents"]].float(), list(r["captions"]), (r.get("metadata") or {}).get("style"),
              instrument_labels(r.get("metadata"))) for r in records if r.get("captions")]
    if len(clips) < 4:
        raise DataError(f"fitting a prompt probe needs at least 4 captioned clips, got {len(clips)}")
    if instruments and not any(labels.any() for *_, labels in clips):
        raise DataError("instrument heads need clips whose metadata lists their stems (lmdm data synth)")
    crop = min(crop, *(clip[0].shape[-1] for clip in clips))
    texts = sorted({c for _, caps, *_ in clips for c in caps})
    with torch.no_grad():
        pooled = torch.cat([pool_tokens(encode_text(texts[i:i + 64]).float()) for i in range(0, len(texts), 64)])
    text_index = {t: i for i, t in enumerate(texts)}
    n_held = max(1, int(len(clips) * heldout))
    train, held = clips[:-n_held], clips[-n_held:]
    batch = min(batch, len(train))
    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = PromptProbe(io_channels, text_dim, instruments=len(clips[0][3]) if instruments else 0)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def crop_of(z):
        s = rng.randrange(z.shape[-1] - crop + 1)
        return z[:, s:s + crop]

    for _ in tqdm(range(steps), desc="prompt probe", disable=not progress):
        chosen = rng.sample(train, batch)
        x = torch.stack([crop_of(z) for z, *_ in chosen])
        t = pooled[[text_index[rng.choice(caps)] for _, caps, *_ in chosen]]
        loss = contrastive_loss(probe, x, t, torch.stack([labels for *_, labels in chosen]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    probe.eval().requires_grad_(False)
    with torch.no_grad():   # the median similarity of training crops to one of their own captions
        chosen = [rng.choice(train) for _ in range(512)]
        x = torch.stack([crop_of(z) for z, *_ in chosen])
        t = probe.embed_text(pooled[[text_index[rng.choice(caps)] for _, caps, *_ in chosen]])
        probe.target_similarity.fill_(float((probe.embed_latents(x) * t).sum(-1).median()))
    return probe, _heldout_scores(probe, held, pooled, text_index, crop_of)


def add_prompt_probe(model_dir, latents, out, strength: float = 0.0, steps: int = 2000, crop: int = 48,
                     instruments: bool | None = None, seed: int = 0, progress: bool = True, width: int = 128,
                     dim: int = 128) -> dict:
    """Fit a probe on `latents` (a `lmdm data encode` folder with captions) for the model in
    `model_dir` ("default": the embedded one) and write the model with it, and `strength` as its
    default prompt guidance, to `out`. `instruments` None = on where the corpus metadata lists stems.
    Returns the held-out retrieval scores."""
    from ..checkpoints import DEFAULT_MODEL_DIR, from_pretrained, save_pretrained
    from ..data.dataset import LatentDataset
    from ..errors import ConfigError
    if not 0 <= strength <= 2:
        raise ConfigError(f"--strength must be in [0, 2], got {strength}")
    model = from_pretrained(DEFAULT_MODEL_DIR if model_dir == "default" else model_dir)   # in its stored dtype
    stored = next(p.dtype for p in model.parameters() if p.is_floating_point())
    model.float()   # the probe is fitted in fp32 and written in the model's stored dtype
    data = LatentDataset(latents, crop_frames=crop)
    if instruments is None:   # on where the corpus metadata says which instruments play
        instruments = any((r.get("metadata") or {}).get("stems") for r in data.records)
    probe, heldout = fit_prompt_probe(data.records, data.tensors, model.text, model.config.dit.io_channels,
                                      model.config.dit.cond_token_dim, steps=steps, crop=crop,
                                      seed=seed, instruments=instruments, progress=progress)
    model.config.prompt_probe = {"width": width, "dim": dim,
                                 **({"instruments": probe.instruments} if probe.instruments else {})}
    model.config.prompt_guidance = strength
    model.prompt_probe = probe
    save_pretrained(model.to(stored), out)
    return heldout


def _jaccard(logits: torch.Tensor, labels: torch.Tensor) -> float:
    pred, true = logits > 0, labels > 0.5
    return float(((pred & true).sum(-1) / (pred | true).sum(-1).clamp_min(1)).mean())


@torch.no_grad()
def _heldout_scores(probe, held, pooled, text_index, crop_of, crops_per_clip: int = 8) -> dict[str, float]:
    owners = [(k, style, text_index[c]) for k, (_, caps, style, _) in enumerate(held) for c in caps]
    text_emb = probe.embed_text(pooled[[i for _, _, i in owners]])
    hit_clip, hit_style, n, inst_latent = 0, 0, 0, []
    for k, (z, _, style, labels) in enumerate(held):
        emb, inst = probe.read_latents(torch.stack([crop_of(z) for _ in range(crops_per_clip)]))
        for best in (emb @ text_emb.T).argmax(-1).tolist():
            hit_clip += owners[best][0] == k
            hit_style += owners[best][1] == style
            n += 1
        if probe.instruments:
            inst_latent.append(_jaccard(inst, labels.expand_as(inst)))
    scores = {"clip": hit_clip / n, "style": hit_style / n}
    if probe.instruments:
        labels = torch.stack([held[k][3] for k, _, _ in owners])
        scores["instruments_latent"] = sum(inst_latent) / len(inst_latent)
        scores["instruments_text"] = _jaccard(probe.text_instruments(pooled[[i for _, _, i in owners]]), labels)
    return scores
