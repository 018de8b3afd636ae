"""Stage-1 fine-tuning (SPEC §3): turn a DiT into an LMDM with the context-router objective.

A window of C + B latent frames is cropped from a clip. The first C frames are context, given to
the model only through the router's `context` group [mask | clean latents] (mask 1 on real context
frames); the last B are the target, noised by rectified flow x_t = (1 − t)·x0 + t·ε, and the loss
is the MSE between the predicted and the true velocity v = ε − x0 on the target frames only.
Per item, the context is dropped entirely with p_uncond, or its first k block-size chunks are
zeroed with p_partial (so the model learns to start a stream and to run with a short history),
and the caption is replaced by "" (the null condition) with p_text_drop for classifier-free
guidance. Every draw is a function of (seed, global item index): see `lmdm.train.loop`.

Optional time-aligned input groups (SPEC §4, `lmdm.engine.sketch`), built per item over the whole window
and passed only when the model has them; an item that does not use one gets an all-zero group
(mask 0), which is what the stream feeds when that mode is off:
- `sketch` (p_sketch): the mix's stored controls, normalised, median-filtered with a random odd
  kernel up to sketch_max_kernel, then `control_dropout`. Never on an accompaniment item: its
  target is the pair's rest, which the mix's controls do not describe.
  `control_loss_weight` > 0 adds the control loss of `control_probe` on items with a sketch.
- `accompaniment` (p_accompaniment, items with an accompaniment pair): the model's latents (context
  and target) become the pair's `rest` and the group is the `given` stem's latents, with
  `accompaniment_dropout` and every frame at or after (target start − cutoff) zeroed.
- `beat` (p_beat, items whose record has metadata.tempo): the beat clock at the piece's BPM
  (`lmdm.engine.beat`), phases counted from the piece's first frame (the corpus starts on a beat).
  `add_input_groups` adds zero-initialised groups (e.g. {"beat": 3}) to a loaded model first.
  `beat_loss_weight` > 0 adds the control loss on clock items too: the velocity MSE barely rewards
  following the clock (as for the sketch), the loudness it makes predictable (where the beats fall)
  is what it is for. ARC-Forcing applies both to its rollouts (model card, v0.7).
- `tag_loss_weight` > 0 adds the tag loss of `tag_probe` (style, instruments, tempo class read back
  from the clean estimate of the target frames) on items that keep their caption and are not
  accompaniment items.
- `block_frames_choices`: each optimizer step draws its block size B; the window is the last
  C_B + B frames of the crop with C_B = (C // B)·B (block-causal) or C (enc-dec).
- `distill_cfg` = w > 0: guidance distillation (Meng et al., 2023). A frozen copy of the initial
  model gives, at the same noised window, context and groups, its CFG velocity v_u + w·(v_c − v_u)
  (v_u: the null prompt, as the stream's CFG branch), and that replaces ε − x0 as the target: the
  model learns to stream as if under CFG w at the cost of one pass instead of two.
"""
from __future__ import annotations

import copy
import fnmatch
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..engine.beat import BEAT_CHANNELS, beat_group, grid_phase
from ..config import ModelConfig, preset
from ..errors import ConfigError, DataError
from ..engine.model import LiveMusicModel
from ..engine.sketch import SKETCH_CHANNELS, accompaniment_group, median_filter, sketch_from_controls, sketch_group
from .group_dropout import accompaniment_dropout, apply_cutoff, control_dropout, random_kernel
from .config import TrainConfig
from .loop import Objective, Phase, Trainer, init_distributed, item_generator, with_ema
from .lora import add_lora, merge_lora


def build_model(cfg: TrainConfig) -> LiveMusicModel:
    """The starting model: a ModelConfig dict, a preset, or an lmdm / SAO directory. fp32 master weights."""
    f = cfg.finetune
    torch.manual_seed(cfg.run.seed)
    if f.model is not None:
        model = LiveMusicModel(ModelConfig.from_dict(f.model))
        if f.autoencoder_init:
            load_autoencoder_weights(model, f.autoencoder_init)
    elif f.init.startswith("preset:"):
        model = LiveMusicModel(preset(f.init.split(":", 1)[1], f.pattern or "block-causal"))
    else:
        if f.pattern:
            raise ConfigError("finetune.pattern applies to presets only; a directory keeps its own pattern "
                              "(set it when converting: lmdm convert --pattern ...)")
        from ..checkpoints import from_pretrained
        model = from_pretrained(f.init)
    add_input_groups(model, f.add_input_groups)
    if model.config.pattern.pattern not in ("enc-dec", "block-causal"):
        raise ConfigError(f"stage-1 fine-tuning needs an enc-dec or block-causal model, {f.init or 'model'} is "
                          f"{model.config.pattern.pattern!r}; convert it first: lmdm convert SAO_DIR OUT_DIR")
    return model.float()


def add_input_groups(model: LiveMusicModel, groups: dict[str, int]) -> None:
    """Give the router new zero-initialised input groups: the model computes exactly what it did
    until training moves them. A group it already has must have the same width."""
    have = model.config.dit.input_groups
    for name, channels in groups.items():
        if name in have:
            if have[name] != channels:
                raise ConfigError(f"finetune.add_input_groups: {name!r} has {have[name]} channels in this model, "
                                  f"not {channels}")
            continue
        proj = torch.nn.Linear(channels, model.config.dit.width, bias=False)
        torch.nn.init.zeros_(proj.weight)
        model.dit.input_groups[name] = proj.to(model.dit.dtype)
        have[name] = channels


def load_autoencoder_weights(model: LiveMusicModel, source: str) -> None:
    """Strictly load a trained autoencoder (export folder or .safetensors) into `model.autoencoder`."""
    from safetensors.torch import load_file
    from ..checkpoints import load_strict
    if model.autoencoder is None:
        raise ConfigError("finetune.autoencoder_init is set but finetune.model has no autoencoder config")
    path = Path(source)
    if path.is_dir():
        saved = json.loads((path / "autoencoder.json").read_text()) if (path / "autoencoder.json").is_file() else None
        if saved is not None and saved != model.autoencoder.config.to_dict():
            raise ConfigError(f"{path}/autoencoder.json does not match finetune.model.autoencoder: {saved}")
        path = path / "autoencoder.safetensors"
    if not path.is_file():
        raise ConfigError(f"finetune.autoencoder_init: no autoencoder weights at {path}")
    load_strict(model.autoencoder, load_file(str(path)), str(path))


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
        # the teacher is the initial model (loaded weights, before LoRA): a resumed run rebuilds the same one
        self.teacher = copy.deepcopy(model.dit).eval().requires_grad_(False) if f.distill_cfg > 0 else None
        names = set(select_trainable(model, f.trainable, f.lora_rank, f.lora_alpha))
        model.dit.train()
        self.modules = {"model": model}
        # the router's zero-initialised projections grow about lr per step under Adam: at a fine-tuning
        # lr they stay ~35x smaller than project_in after hundreds of steps (measured), too weak to carry
        # a sketch, hence their own multiplier
        mults = {n: f.group_lr_mults.get(n.split(".")[2], f.input_group_lr_mult)
                 for n in names if n.startswith("dit.input_groups.")}
        self.phases = [Phase("model", [(n, p) for n, p in model.named_parameters() if n in names], lr_mults=mults)]
        self.frames_per_item = p.window_frames
        self.seconds_per_item = p.window_frames * model.config.frame_seconds
        groups = model.config.dit.input_groups
        self.groups = [g for g in ("sketch", "accompaniment", "beat") if g in groups]
        for name, prob, field in (("sketch", f.p_sketch, "p_sketch"), ("beat", f.p_beat, "p_beat"),
                                  ("accompaniment", f.p_accompaniment, "p_accompaniment")):
            if prob > 0 and name not in groups:
                raise ConfigError(f"finetune.{field} = {prob} but the model has no {name!r} input group "
                                  f"(dit.input_groups: {sorted(groups)})")
        for b in f.block_frames_choices:
            if self.pattern == "block-causal" and self.C // b < 2:
                raise ConfigError(f"finetune.block_frames_choices: B={b} leaves {self.C // b} context chunk(s) of "
                                  f"the {self.C} context frames; block-causal needs at least 2")
        self.probe = None
        unknown = set(f.group_lr_mults) - set(groups)
        if unknown:
            raise ConfigError(f"finetune.group_lr_mults names {sorted(unknown)}, not groups of this model "
                              f"(dit.input_groups: {sorted(groups)})")
        if f.control_loss_weight > 0 and ("sketch" not in self.groups or f.p_sketch <= 0):
            raise ConfigError("finetune.control_loss_weight > 0 needs p_sketch > 0 and a 'sketch' input group")
        if f.beat_loss_weight > 0 and ("beat" not in self.groups or f.p_beat <= 0):
            raise ConfigError("finetune.beat_loss_weight > 0 needs p_beat > 0 and a 'beat' input group")
        if f.control_loss_weight > 0 or f.beat_loss_weight > 0:
            from .control_probe import load_or_fit_probe
            self.probe = load_or_fit_probe(Path(cfg.run.out_dir) / "control-probe.safetensors", dataset,
                                           model.config.dit.io_channels, f.control_probe_steps, cfg.run.seed)
        self.tag_probe = None
        if f.tag_loss_weight > 0:
            from .tag_probe import load_or_fit_tag_probe
            self.tag_probe = load_or_fit_tag_probe(Path(cfg.run.out_dir) / "tag-probe.safetensors", dataset,
                                                   model.config.dit.io_channels, f.tag_probe_steps, cfg.run.seed,
                                                   crop=self.B)
        # frames each loaded crop must hold: the largest window any block size needs
        self.crop_frames = max(self.window(b)[0] + b for b in [self.B, *f.block_frames_choices])
        crop = getattr(dataset, "crop", self.crop_frames)
        if crop < self.crop_frames:
            raise ConfigError(f"finetune.block_frames_choices need windows of {self.crop_frames} frames, the "
                              f"dataset crops {crop}")

    def window(self, block: int) -> tuple[int, int]:
        """(context frames C_B, context chunks) for block size `block`."""
        if block == self.B:
            return self.C, self.w
        if self.pattern == "enc-dec":
            return self.C, self.w   # enc-dec attention does not depend on the block size
        return (self.C // block) * block, self.C // block

    def step_block(self, keys) -> int:
        """The block size of the optimizer step holding these item keys: one draw from the step's first
        key, so every micro-batch and process of a step agrees."""
        choices = self.cfg.finetune.block_frames_choices
        if not choices:
            return self.B
        first = keys[0] // self.cfg.run.batch_size * self.cfg.run.batch_size
        g = item_generator(self.cfg.run.seed, first, salt=0xB10C)
        return int(choices[int(torch.randint(len(choices), (1,), generator=g))])

    def num_items(self) -> int:
        return len(self.data)

    def load_batch(self, indices, epochs, keys) -> dict:
        f, io = self.cfg.finetune, self.model.config.dit.io_channels
        items = []
        for i, e in zip(indices, epochs):
            self.data.set_epoch(e)
            items.append(self.data[i])
        B = self.step_block(keys)
        C, w = self.window(B)
        T = C + B
        for it in items:
            if it["latents"].shape[-1] < T:
                raise DataError(f"{it['path']}: a crop of {it['latents'].shape[-1]} frames is shorter than the "
                                f"window of {T} frames (block size {B})")
        lat = torch.stack([it["latents"][..., -T:] for it in items]).float()   # the last C_B + B frames
        n, chunks = len(items), math.ceil(C / B)
        width = {"sketch": SKETCH_CHANNELS, "beat": BEAT_CHANNELS, "accompaniment": io + 1}
        groups = {name: torch.zeros(n, width[name], T) for name in self.groups}
        if "beat" in groups and f.p_beat > 0:   # the window is the crop's last T frames
            groups["beat"] = self.beat_groups(indices, items, keys, [it["latents"].shape[-1] - T for it in items], T)
        for j, key in enumerate(keys):
            acc = None
            if "accompaniment" in groups and f.p_accompaniment > 0 and "accompaniment" in items[j]:
                acc = self._accompaniment(items[j], key, C, B)
                if acc is not None:
                    lat[j], groups["accompaniment"][j] = acc
            if "sketch" in groups and f.p_sketch > 0 and acc is None:
                groups["sketch"][j] = self._sketch(items[j], key, T)
        noise, t, keep_from, captions = torch.empty(n, io, T), torch.empty(n), [], []
        for j, key in enumerate(keys):
            g = item_generator(self.cfg.run.seed, key)
            noise[j] = torch.randn(io, T, generator=g)
            z = torch.randn(1, generator=g)
            if f.timesteps == "logit-normal":
                t[j] = torch.sigmoid(f.logit_mean + f.logit_std * z)
            elif f.timesteps == "uniform":   # the authors' stage 1 (a Sobol draw there, i.i.d. here)
                t[j] = torch.rand(1, generator=g)
            else:  # logSNR ~ U[-6, 2]; t = sigmoid(-logSNR)
                t[j] = torch.sigmoid(-(-6 + 8 * torch.rand(1, generator=g)))
            u, k = float(torch.rand(1, generator=g)), int(torch.randint(1, max(2, chunks), (1,), generator=g))
            keep_from.append(C if u < f.p_uncond else min(k * B, C) if u < f.p_uncond + f.p_partial else 0)
            drop = float(torch.rand(1, generator=g)) < f.p_text_drop
            captions.append("" if drop else items[j]["caption"])
        frame = torch.arange(T)
        mask = ((frame[None] >= torch.tensor(keep_from)[:, None]) & (frame[None] < C)).float()[:, None]
        batch = {"latents": lat, "noise": noise, "t": t.clamp(1e-5, 1 - 1e-5), "mask": mask, "captions": captions,
                 "groups": groups, "context_frames": C, "block_frames": B, "context_chunks": w,
                 "paths": [it["path"] for it in items], "start": [it["start"] for it in items]}
        if self.tag_probe is not None:   # accompaniment items generate the rest, not what the caption lists
            acc = groups["accompaniment"][:, 0].amax(-1) > 0 if "accompaniment" in groups else torch.zeros(n, dtype=bool)
            batch["tagged"] = torch.tensor([c != "" for c in captions]) & ~acc
            batch["tags"] = self.tag_labels(indices)
        return batch

    def tag_labels(self, indices) -> dict[str, torch.Tensor]:
        from .tag_probe import record_labels, stack_labels
        return stack_labels([record_labels(self.data.records[i], self.tag_probe.styles) for i in indices])

    def beat_groups(self, indices, items, keys, offsets, T: int) -> torch.Tensor:
        """The beat group (n, 3, T) of windows starting `offsets` frames into their crops: each item's
        own draw (salted, so the base draws stay as they were) gives it the clock with p_beat."""
        groups = torch.zeros(len(items), BEAT_CHANNELS, T)
        for j, (i, item, key, off) in enumerate(zip(indices, items, keys, offsets)):
            g = item_generator(self.cfg.run.seed, key, salt=0xBEA7)
            bpm = self.data.records[i].get("metadata", {}).get("tempo")
            if bpm and float(torch.rand(1, generator=g)) < self.cfg.finetune.p_beat:
                phase = grid_phase(item["start"] + off, T, float(bpm), self.model.config.frame_seconds)
                groups[j] = beat_group(phase)
        return groups

    def _sketch(self, item: dict, key: int, T: int) -> torch.Tensor:
        """The item's sketch group (4, T), all zero unless drawn with p_sketch. Its own generator (salted)
        so the base draws (noise, t, context dropout) do not depend on whether sketches are on.
        A dynamics-augmented item (`data.augment`) always carries its sketch: its swells and sweeps
        are unpredictable without it, and a model should not learn to invent them unasked."""
        f = self.cfg.finetune
        g = item_generator(self.cfg.run.seed, key, salt=0x5CE7)
        augmented = item.get("augmented", False)
        if float(torch.rand(1, generator=g)) >= (1.0 if augmented else f.p_sketch):
            return torch.zeros(SKETCH_CHANNELS, T)
        if "controls" not in item:
            raise DataError(f"{item['path']}: finetune.p_sketch > 0 needs controls (encode with controls)")
        from ..audio.controls import NAMES
        controls = sketch_from_controls(dict(zip(NAMES, item["controls"].double().numpy())))
        # filter the whole crop (as the stream filters the whole sketch), then keep the window
        controls = median_filter(controls, random_kernel(f.sketch_max_kernel, g))[..., -T:]
        drop_all = 0.0 if augmented else f.sketch_drop_all
        return control_dropout(sketch_group(controls[None]), drop_all, f.sketch_drop_each, g)[0]

    def _accompaniment(self, item: dict, key: int, C: int, B: int):
        """(rest latents (io, T), accompaniment group (io + 1, T)) when drawn with p_accompaniment, else None."""
        f = self.cfg.finetune
        g = item_generator(self.cfg.run.seed, key, salt=0xACC)
        if float(torch.rand(1, generator=g)) >= f.p_accompaniment:
            return None
        T = C + B
        given, rest = (item["accompaniment"][k][..., -T:].float() for k in ("given", "rest"))
        group = accompaniment_dropout(accompaniment_group(given[None]), f.accompaniment_drop_all,
                                      f.accompaniment_drop_prefix, g)
        # Stream._window_groups shows the window starting at frame - C only the accompaniment before
        # frame - cutoff_frames (visible = frame - cutoff - (frame - C) = C - cutoff window frames):
        # so frames at or after window index C - cutoff are zero, cutoff defaulting to one block.
        cutoff = B if f.accompaniment_cutoff < 0 else f.accompaniment_cutoff
        return rest, apply_cutoff(group, C - cutoff)[0]

    def describe(self, batch: dict) -> str:
        return ", ".join(f"{p}@{s}" for p, s in zip(batch["paths"], batch["start"]))

    def loss(self, phase: str, batch: dict, step: int):
        dev = self.model.dit.transformer.project_in.weight.device
        x0, eps, t, mask = (batch[k].to(dev) for k in ("latents", "noise", "t", "mask"))
        tt = t[:, None, None]
        xt = (1 - tt) * x0 + tt * eps
        context = torch.cat((mask, x0 * mask), 1)   # [mask | clean context latents], zeros on the target
        groups = {"context": context, **{k: g.to(dev) for k, g in batch.get("groups", {}).items()}}
        tokens, glob = self.model.text_conditioning(batch["captions"])
        cond = self.model.dit.condition(tokens, glob)
        C = batch.get("context_frames", self.C)
        shape = dict(context_frames=C, block_frames=batch.get("block_frames", self.B),
                     context_chunks=batch.get("context_chunks", self.w))
        v = self.model.dit(xt, t, cond, groups, self.pattern, **shape)
        target = eps - x0 if self.teacher is None else self._guided_velocity(xt, t, tokens, glob, groups, shape)
        loss = F.mse_loss(v[..., C:].float(), target[..., C:].float())
        extra = {}
        if self.tag_probe is not None:
            loss, extra = self._with_tag_loss(loss, (xt - tt * v)[..., C:], batch["tags"], batch["tagged"])
        if self.probe is None:
            return loss, extra
        loss, more = self._with_control_loss(loss, x0, xt - tt * v, groups, C)
        return loss, {**extra, **more}

    @torch.no_grad()
    def _guided_velocity(self, xt, t, tokens, glob, groups: dict, shape: dict) -> torch.Tensor:
        """The frozen teacher's CFG velocity v_u + w·(v_c − v_u), both branches in one batch; the null
        prompt is all-zero tokens (same global vector), as in the stream's CFG branch."""
        def both(x):
            return None if x is None else torch.cat((x, x))
        tokens = torch.cat((tokens, torch.zeros_like(tokens)))
        cond = self.teacher.condition(tokens, both(glob))
        v = self.teacher(both(xt), both(t), cond, {k: both(g) for k, g in groups.items()}, self.pattern,
                         **shape).float()
        v_c, v_u = v.chunk(2)
        return v_u + self.cfg.finetune.distill_cfg * (v_c - v_u)

    def _with_tag_loss(self, loss, estimate, labels: dict, tagged: torch.Tensor, chunks: int = 1):
        """+ weight · the tag probe's loss of the clean estimate (n·chunks, io, frames) against its items'
        labels, averaged over the tagged items (n,); each item's chunks are consecutive rows."""
        from .tag_probe import tag_loss
        self.tag_probe.to(estimate.device)
        labels = {k: v.to(estimate.device).repeat_interleave(chunks, 0) for k, v in labels.items()}
        weight = tagged.to(estimate.device).float().repeat_interleave(chunks)
        tag = (tag_loss(self.tag_probe(estimate.float()), labels) * weight).sum() / weight.sum().clamp(min=1)
        return loss + self.cfg.finetune.tag_loss_weight * tag, {"tag_loss": float(tag.detach())}

    def _with_control_loss(self, loss, x0, x0_hat, groups: dict, C: int):
        """+ weight · ‖probe(x̂0) − probe(x0)‖² on the target frames, averaged over the items with a sketch
        (control_loss_weight) and, separately, over those with a beat clock (beat_loss_weight). The
        context frames are the clean x0 in both, as the probe's receptive field reaches into them."""
        f = self.cfg.finetune
        self.probe.to(x0.device)
        estimate = torch.cat((x0[..., :C], x0_hat[..., C:]), -1).float()
        err = ((self.probe(estimate) - self.probe(x0.float())) ** 2)[..., C:].mean((1, 2))
        logs = {}
        for name, weight, key in (("sketch", f.control_loss_weight, "control_loss"),
                                  ("beat", f.beat_loss_weight, "beat_loss")):
            if weight > 0 and name in groups:
                has = (groups[name][:, 0].amax(-1) > 0).float()
                part = (err * has).sum() / has.sum().clamp(min=1)
                loss, logs[key] = loss + weight * part, float(part.detach())
        return loss, logs

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
    p = model.config.pattern
    crop = max(p.window_frames, *(((p.context_frames // b) * b if p.pattern == "block-causal" else p.context_frames)
                                  + b for b in f.block_frames_choices or [p.block_frames]))
    data = LatentDataset(f.latents, crop, short=f.short_clips, seed=cfg.run.seed, controls=f.p_sketch > 0,
                         accompaniment=f.p_accompaniment > 0)
    first = data.tensors[data.records[0]["latents"]]
    if first.shape[0] != model.config.dit.io_channels:
        raise DataError(f"latents in {f.latents} have {first.shape[0]} channels, the model expects "
                        f"dit.io_channels={model.config.dit.io_channels}")
    ddp = init_distributed()
    model.to(ddp.device)
    return Trainer(FinetuneObjective(model, data, cfg), cfg, ddp).fit(resume=resume, stop_at=stop_at)
