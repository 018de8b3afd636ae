"""Stage-1 fine-tuning (SPEC §3): turn a DiT into an LMDM with the context-router objective.

A window of C + B latent frames is cropped from a clip. The first C frames are context, given to
the model only through the router's `context` group [mask | clean latents] (mask 1 on real context
frames); the last B are the target, noised by rectified flow x_t = (1 − t)·x0 + t·ε, and the loss
is the MSE between the predicted and the true velocity v = ε − x0 on the target frames only.
Per item, the context is dropped entirely with p_uncond, or its first k block-size chunks are
zeroed with p_partial (so the model learns to start a stream and to run with a short history),
and the caption is replaced by "" (the null condition) with p_text_drop for classifier-free
guidance. Every draw is a function of (seed, global item index): see `lmdm.train.loop`.
"""
from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import ModelConfig, preset
from ..errors import ConfigError, DataError
from ..model import LiveMusicModel
from .config import TrainConfig
from .loop import Objective, Phase, Trainer, init_distributed, item_generator, with_ema
from .lora import add_lora, merge_lora


def build_model(cfg: TrainConfig) -> LiveMusicModel:
    """The starting model: a ModelConfig dict, a preset, or an lmdm / SAO directory. fp32 master weights."""
    f = cfg.finetune
    torch.manual_seed(cfg.run.seed)
    if f.model is not None:
        model = LiveMusicModel(ModelConfig.from_dict(f.model))
    elif f.init.startswith("preset:"):
        model = LiveMusicModel(preset(f.init.split(":", 1)[1], f.pattern or "block-causal"))
    else:
        if f.pattern:
            raise ConfigError("finetune.pattern applies to presets only; a directory keeps its own pattern "
                              "(set it when converting: lmdm convert --pattern ...)")
        from ..checkpoints import from_pretrained
        model = from_pretrained(f.init)
    if model.config.pattern.pattern not in ("enc-dec", "block-causal"):
        raise ConfigError(f"stage-1 fine-tuning needs an enc-dec or block-causal model, {f.init or 'model'} is "
                          f"{model.config.pattern.pattern!r}; convert it first: lmdm convert SAO_DIR OUT_DIR")
    return model.float()


def select_trainable(model: LiveMusicModel, patterns: list[str], lora_rank: int, lora_alpha: float) -> list[str]:
    """Freeze everything, unfreeze names matching `patterns`, then add LoRA adapters (trained, base frozen).
    The autoencoder is never trained here."""
    for name, p in model.named_parameters():
        p.requires_grad_(any(fnmatch.fnmatch(name, pat) for pat in patterns) and not name.startswith("autoencoder."))
    if lora_rank:
        add_lora(model.dit, lora_rank, lora_alpha)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ConfigError(f"finetune.trainable {patterns} matches no parameter (names look like "
                          f"'dit.transformer.layers.0.self_attn.to_qkv.weight')")
    return names


class FinetuneObjective(Objective):
    def __init__(self, model: LiveMusicModel, dataset, cfg: TrainConfig):
        self.model, self.data, self.cfg, f = model, dataset, cfg, cfg.finetune
        p = model.config.pattern
        self.C, self.B, self.w, self.pattern = p.context_frames, p.block_frames, p.context_chunks, p.pattern
        self.chunks = math.ceil(self.C / self.B)
        names = set(select_trainable(model, f.trainable, f.lora_rank, f.lora_alpha))
        model.dit.train()
        self.modules = {"model": model}
        self.phases = [Phase("model", [(n, p) for n, p in model.named_parameters() if n in names])]
        self.frames_per_item = p.window_frames
        self.seconds_per_item = p.window_frames * model.config.frame_seconds

    def num_items(self) -> int:
        return len(self.data)

    def load_batch(self, indices, epochs, keys) -> dict:
        f, io = self.cfg.finetune, self.model.config.dit.io_channels
        items = []
        for i, e in zip(indices, epochs):
            self.data.set_epoch(e)
            items.append(self.data[i])
        lat = torch.stack([it["latents"] for it in items]).float()
        n, T = len(items), lat.shape[-1]
        noise, t, keep_from, captions = torch.empty(n, io, T), torch.empty(n), [], []
        for j, key in enumerate(keys):
            g = item_generator(self.cfg.run.seed, key)
            noise[j] = torch.randn(io, T, generator=g)
            z = torch.randn(1, generator=g)
            if f.timesteps == "logit-normal":
                t[j] = torch.sigmoid(f.logit_mean + f.logit_std * z)
            else:  # logSNR ~ U[-6, 2]; t = sigmoid(-logSNR)
                t[j] = torch.sigmoid(-(-6 + 8 * torch.rand(1, generator=g)))
            u, k = float(torch.rand(1, generator=g)), int(torch.randint(1, max(2, self.chunks), (1,), generator=g))
            keep_from.append(self.C if u < f.p_uncond else min(k * self.B, self.C) if u < f.p_uncond + f.p_partial
                             else 0)
            drop = float(torch.rand(1, generator=g)) < f.p_text_drop
            captions.append("" if drop else items[j]["caption"])
        frame = torch.arange(T)
        mask = ((frame[None] >= torch.tensor(keep_from)[:, None]) & (frame[None] < self.C)).float()[:, None]
        return {"latents": lat, "noise": noise, "t": t.clamp(1e-5, 1 - 1e-5), "mask": mask, "captions": captions,
                "paths": [it["path"] for it in items], "start": [it["start"] for it in items]}

    def describe(self, batch: dict) -> str:
        return ", ".join(f"{p}@{s}" for p, s in zip(batch["paths"], batch["start"]))

    def loss(self, phase: str, batch: dict, step: int):
        dev = self.model.dit.transformer.project_in.weight.device
        x0, eps, t, mask = (batch[k].to(dev) for k in ("latents", "noise", "t", "mask"))
        tt = t[:, None, None]
        xt = (1 - tt) * x0 + tt * eps
        context = torch.cat((mask, x0 * mask), 1)   # [mask | clean context latents], zeros on the target
        tokens, glob = self.model.text_conditioning(batch["captions"])
        cond = self.model.dit.condition(tokens, glob)
        v = self.model.dit(xt, t, cond, {"context": context}, self.pattern, context_frames=self.C,
                           block_frames=self.B, context_chunks=self.w)
        loss = F.mse_loss(v[..., self.C:].float(), (eps - x0)[..., self.C:].float())
        return loss, {}

    def demo(self, step: int, folder: Path) -> None:
        if self.model.autoencoder is None:
            return   # a latent-only model has nothing to listen to
        import soundfile as sf
        f = self.cfg.finetune
        folder.mkdir(parents=True, exist_ok=True)
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            audio = self.model.generate(f.demo_prompt, f.demo_seconds, seed=step)
        self.model.train(was)
        sf.write(str(folder / f"step-{step:08d}.wav"), audio.float().clamp(-1, 1).T.cpu().numpy(),
                 self.model.sample_rate)

    def export(self, folder: Path, ema: dict[str, torch.Tensor] | None) -> None:
        """An lmdm model directory: EMA weights when EMA is on, LoRA merged (loads with from_pretrained)."""
        from ..checkpoints import save_pretrained
        model = with_ema(self.model, ema)
        save_pretrained(merge_lora(model).eval(), folder)


def finetune(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict:
    """Run stage-1 fine-tuning as configured; returns the last logged metrics."""
    from ..data.dataset import LatentDataset
    f = cfg.finetune
    if not f.latents:
        raise ConfigError("finetune.latents is not set: point it at a directory from `lmdm data encode`")
    model = build_model(cfg)
    data = LatentDataset(f.latents, model.config.pattern.window_frames, short=f.short_clips, seed=cfg.run.seed)
    first = data.tensors[data.records[0]["latents"]]
    if first.shape[0] != model.config.dit.io_channels:
        raise DataError(f"latents in {f.latents} have {first.shape[0]} channels, the model expects "
                        f"dit.io_channels={model.config.dit.io_channels}")
    ddp = init_distributed()
    model.to(ddp.device)
    return Trainer(FinetuneObjective(model, data, cfg), cfg, ddp).fit(resume=resume, stop_at=stop_at)
