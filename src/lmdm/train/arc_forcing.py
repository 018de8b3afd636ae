"""Stage-2 ARC-Forcing (SPEC §3): adversarial relativistic-contrastive post-training on rollouts.

Per item: real latents of C + K·B frames. The first C frames are the context (with context
dropout, p_uncond / p_partial); the model then rolls out K chunks of B frames autoregressively
through the *inference* code path: the same cache objects `Stream` drives (`BlockCausalCache`
bootstrap / fused_step / step, `EncDecCache` prefill / step), the same DiT pieces
(`embed_frames`, `timestep_token`, `unembed`) and the same sampler (`sampling.sample`, ping-pong,
SAO schedule of S = arc.max_steps steps). Per chunk an exit step k ∈ {1 … S−1} is drawn (one
draw per optimizer step and chunk, a function of (seed, step): the same on every process and for
every item); k−1 steps run without gradient, the k-th with gradient, and its x0 prediction
x − t·v is the chunk. The chunk is detached before it becomes context, and every K/V written into
the cache is detached, so the only graph kept is one denoising step per chunk.

With finetune.p_sketch > 0 (and a model with a `sketch` group) items carry a sketch over the
whole window, drawn as in stage 1, and the rollout sees it as `Stream` would; with
finetune.control_loss_weight > 0 the generator also pays the stage-1 control loss between the
rollout and the real continuation the sketch was read from. Without this, rollouts carry no sketch
and post-training washes out what stage 1b taught (measured: loudness correlation 0.13 -> 0.05).
With finetune.tag_loss_weight > 0 it also pays the tag loss (`train.tag_probe`) of every rollout
chunk against its caption's labels: a direct prompt-adherence signal where the contrastive term
gives none (measured: it stays near ln 2 on the default corpus). With arc.tempo_loss_weight > 0 the
whole rollout also pays `train.tempo_loss` against its caption's BPM (corpus metadata), read through
the control probe's loudness (fitted here if the control loss did not already load it).

The discriminator (`lmdm.models.discriminator`) scores the rollout region only. Real and fake are
re-noised with the SAME noise at the same t (logSNR ~ U[−6, 2], t = sigmoid(−logSNR)). Losses
(relativistic, softplus): generator softplus(D(real) − D(fake)); discriminator
softplus(−(D(real) − D(fake))) + w·softplus(−(D(real, c) − D(real, c′))) with c′ another item's
caption (new tensors; batch size 1 is an error), plus optional approximate R1/R2.

Generator and discriminator are two `Phase`s of the trainer core (alternating 1:1, separate
AdamW optimizers), so checkpoints, exact resume, DDP and logging are the stage-1 ones. The
discriminator phase scores the (detached) rollout made in the generator phase of the same step
rather than rolling out again.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..engine.cache import BlockCausalCache, EncDecCache
from ..config import PatternConfig
from ..errors import ConfigError, DataError, TrainingError
from ..engine.model import LiveMusicModel
from ..models.discriminator import Discriminator
from ..models.dit import Conditioning, DiT
from ..engine.sampling import sao_schedule, sample
from .config import TrainConfig
from .finetune import FinetuneObjective, build_model
from .loop import Phase, Trainer, init_distributed, item_generator

GEN, DISC = "generator", "discriminator"


# -- the rollout ------------------------------------------------------------------------------

def _detach_cache(cache) -> None:
    if cache.kv is not None:
        cache.kv = [(k.detach(), v.detach()) for k, v in cache.kv]


def rollout(dit: DiT, pattern: PatternConfig, context: torch.Tensor, mask: torch.Tensor, cond: Conditioning,
            noise: list[list[torch.Tensor]], exits: list[int], trace: list | None = None,
            groups: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Generate len(noise) chunks autoregressively as `Stream` does (no CFG); returns (b, io, K·B).

    context (b, io, C) and mask (b, 1, C): the clean window and which frames are real.
    noise[j] is chunk j's list of S ping-pong noises (b, io, B) (S = the schedule length);
    exits[j] ∈ 1..S is its exit step: steps 1..k−1 run under no_grad, step k with gradient (when
    gradient is enabled at all) and its x0 prediction is the chunk. exits[j] = S reproduces the
    full sampler, i.e. `Stream.next_latents()` with the same noise.
    trace, if a list, receives {"chunk", "step", "grad"} per denoising call.
    groups: time-aligned input groups (b, channels, C + K·B) over the whole window (context, then
    the chunks), e.g. a sketch; each frame's tokens get its slice, as `Stream._window_groups` gives."""
    kind, C, B = pattern.pattern, pattern.context_frames, pattern.block_frames
    if kind not in ("enc-dec", "block-causal"):
        raise ConfigError(f"ARC-Forcing rolls out enc-dec or block-causal models, not {kind!r}")
    if len(exits) != len(noise):
        raise ConfigError(f"{len(noise)} chunks of noise but {len(exits)} exit steps")
    b, grad_on = context.shape[0], torch.is_grad_enabled()
    cache = EncDecCache(C, B) if kind == "enc-dec" else BlockCausalCache(B, pattern.context_chunks)
    history, hmask = (context * mask).detach(), mask.detach()
    ones = torch.ones(b, 1, B, device=context.device, dtype=mask.dtype)

    groups = groups or {}

    def at(start, n):
        return {name: g[..., start:start + n] for name, g in groups.items()}

    def context_tokens(latents, m, start):
        return dit.embed_frames(None, {"context": torch.cat((m, latents), 1), **at(start, latents.shape[-1])})

    if kind == "block-causal":
        with torch.no_grad():
            cache.bootstrap(dit, context_tokens(history, hmask, 0), cond)
    pending, chunks = None, []
    for j, steps in enumerate(noise):
        S, k = len(steps), exits[j]
        if not 1 <= k <= S:
            raise ConfigError(f"exit step {k} of chunk {j} is outside 1..{S}")
        if kind == "enc-dec":
            with torch.no_grad():
                cache.prefill(dit, context_tokens(history, hmask, j * B), cond)
        out = {}

        def denoise(x, t, i, j=j, k=k, pending=pending):
            grad = grad_on and i == k - 1
            with torch.set_grad_enabled(grad):
                tokens = torch.cat((dit.embed_frames(x, at(C + j * B, B)), dit.timestep_token(
                    torch.full((b,), t, dtype=torch.float32, device=x.device), cond)), 1)
                if kind == "block-causal" and i == 0 and pending is not None:
                    h = cache.fused_step(dit, context_tokens(pending, ones, C + (j - 1) * B), tokens, cond)
                else:
                    h = cache.step(dit, tokens, cond)
                _detach_cache(cache)   # later chunks read the cache, never backpropagate into it
                v = dit.unembed(h[:, :B]).float()
                if i == k - 1:
                    out["x0"] = x - t * v   # the sampler's own x0 prediction at the exit step
            if trace is not None:
                trace.append({"chunk": j, "step": i, "grad": grad})
            return (v if grad else v.detach()), None

        schedule = sao_schedule(S)[: k + 1]
        sample(denoise, steps, "pingpong", "cfg", schedule=schedule)
        chunk = out["x0"]
        chunks.append(chunk)
        pending = chunk.detach()
        history = torch.cat((history, pending), -1)[..., B:]   # slide the window by one chunk
        hmask = torch.cat((hmask, ones), -1)[..., B:]
    return torch.cat(chunks, -1)


def exit_steps(seed: int, step: int, chunks: int, max_steps: int) -> list[int]:
    """Exit step per chunk, k ~ U{1 … S−1}: a function of (seed, optimizer step) only, so every
    process and every item of the step uses the same k."""
    g = item_generator(seed, step, salt=0xA2C)
    return [int(k) for k in torch.randint(1, max_steps, (chunks,), generator=g)]


# -- losses -------------------------------------------------------------------------------------

def generator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic: softplus(D(real) − D(fake)), mean over items."""
    return F.softplus(d_real - d_fake).mean()


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic: softplus(−(D(real) − D(fake))), mean over items."""
    return F.softplus(-(d_real - d_fake)).mean()


def contrastive_loss(d_matched: torch.Tensor, d_mismatched: torch.Tensor) -> torch.Tensor:
    """The real audio with its own prompt must beat it with another's: softplus(−(D(real, c) − D(real, c′)))."""
    return F.softplus(-(d_matched - d_mismatched)).mean()


def mismatched_indices(captions: list[str]) -> list[int]:
    """For each item, another item whose caption is used as c′: the next item (cyclically) whose
    caption differs from its own, else simply the next item. Never the item itself."""
    n = len(captions)
    if n < 2:
        raise TrainingError("ARC-Forcing's contrastive term needs at least 2 items per micro-batch (another item's "
                            f"caption is the mismatched prompt), got {n}: raise run.batch_size or lower "
                            "run.accumulate / the process count")
    out = []
    for j in range(n):
        others = [(j + s) % n for s in range(1, n)]
        out.append(next((o for o in others if captions[o] != captions[j]), others[0]))
    return out


def renoise(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = t[:, None, None]
    return (1 - tt) * x + tt * noise


# -- the objective ----------------------------------------------------------------------------

class ArcForcingObjective(FinetuneObjective):
    def __init__(self, model: LiveMusicModel, dataset, cfg: TrainConfig, disc: Discriminator | None = None):
        a = cfg.arc
        if disc is None:   # the generator's own DiT, copied before any LoRA is added
            disc = Discriminator(model.dit, a.disc_layers, a.head_channels, a.head_strides, a.head_mults,
                                 a.head_blocks)
        super().__init__(model, dataset, cfg)
        self.disc, self.K, self.S = disc.float(), a.chunks, a.max_steps
        self.pcfg = model.config.pattern
        disc.train()
        self.modules = {"model": model, "disc": disc}
        gen = self.phases[0]
        self.phases = [Phase(GEN, gen.params, lr_mults=gen.lr_mults),
                       Phase(DISC, [(n, p) for n, p in disc.named_parameters() if p.requires_grad],
                             lr=a.disc_lr, betas=tuple(a.disc_betas), weight_decay=a.disc_weight_decay)]
        self.frames_per_item = self.C + self.K * self.B
        self.loudness_probe = self.probe
        if a.tempo_loss_weight > 0 and self.loudness_probe is None:
            from .control_probe import load_or_fit_probe
            self.loudness_probe = load_or_fit_probe(Path(cfg.run.out_dir) / "control-probe.safetensors", dataset,
                                                    model.config.dit.io_channels, cfg.finetune.control_probe_steps,
                                                    cfg.run.seed)
        self.seconds_per_item = self.frames_per_item * model.config.frame_seconds

    def load_batch(self, indices, epochs, keys) -> dict:
        a, io, C, B, K, S = self.cfg.arc, self.model.config.dit.io_channels, self.C, self.B, self.K, self.S
        items = []
        for i, e in zip(indices, epochs):
            self.data.set_epoch(e)
            items.append(self.data[i])
        lat = torch.stack([it["latents"] for it in items]).float()
        n, R = len(items), K * B
        noise, dnoise, rnoise, t, keep_from = (torch.empty(n, K, S, io, B), torch.empty(n, io, R),
                                               torch.empty(n, io, R), torch.empty(n), [])
        for j, key in enumerate(keys):
            g = item_generator(self.cfg.run.seed, key, salt=0xA2C)
            noise[j] = torch.randn(K, S, io, B, generator=g)
            dnoise[j] = torch.randn(io, R, generator=g)
            rnoise[j] = torch.randn(io, R, generator=g)
            t[j] = torch.sigmoid(-(-6 + 8 * torch.rand(1, generator=g)))   # logSNR ~ U[-6, 2]
            u, k = float(torch.rand(1, generator=g)), int(torch.randint(1, max(2, self.chunks), (1,), generator=g))
            keep_from.append(C if u < a.p_uncond else min(k * B, C) if u < a.p_uncond + a.p_partial else 0)
        frame = torch.arange(C)
        mask = (frame[None] >= torch.tensor(keep_from)[:, None]).float()[:, None]
        groups = {}
        if "sketch" in self.groups and self.cfg.finetune.p_sketch > 0:   # rollouts learn to follow a sketch too
            groups["sketch"] = torch.stack([self._sketch(it, key, C + R) for it, key in zip(items, keys)])
        if "beat" in self.groups and self.cfg.finetune.p_beat > 0:   # and to keep a beat clock
            groups["beat"] = self.beat_groups(indices, items, keys, [0] * n, C + R)
        batch = {"latents": lat, "noise": noise, "disc_noise": dnoise, "r_noise": rnoise,
                 "t": t.clamp(1e-5, 1 - 1e-5), "mask": mask, "captions": [it["caption"] for it in items],
                 "groups": groups, "paths": [it["path"] for it in items], "start": [it["start"] for it in items]}
        if self.tag_probe is not None:
            batch["tags"] = self.tag_labels(indices)
        if a.tempo_loss_weight > 0:
            batch["bpm"] = torch.tensor([float(self.data.records[i].get("metadata", {}).get("tempo") or 0.0)
                                         for i in indices])
        return batch

    def generate(self, batch: dict, exits: list[int], cond: Conditioning) -> torch.Tensor:
        dev = self.model.dit.transformer.project_in.weight.device
        lat, mask, noise = batch["latents"].to(dev), batch["mask"].to(dev), batch["noise"].to(dev)
        chunk_noise = [[noise[:, j, i] for i in range(noise.shape[2])] for j in range(noise.shape[1])]
        groups = {k: g.to(dev) for k, g in batch.get("groups", {}).items()}
        return rollout(self.model.dit, self.pcfg, lat[..., : self.C], mask, cond, chunk_noise, exits, groups=groups)

    def loss(self, phase: str, batch: dict, step: int):
        a, dev = self.cfg.arc, self.model.dit.transformer.project_in.weight.device
        exits = exit_steps(self.cfg.run.seed, step, self.K, self.S)
        real = batch["latents"].to(dev)[..., self.C: self.C + self.K * self.B]
        t, eps = batch["t"].to(dev), batch["disc_noise"].to(dev)
        captions = batch["captions"]
        mis = mismatched_indices(captions)
        tokens, glob = self.model.text_conditioning(captions)
        d_tokens, d_glob = tokens.detach(), None if glob is None else glob.detach()
        x_real = renoise(real, eps, t)
        if phase == GEN:
            cond = self.model.dit.condition(tokens, glob)
            fake = self.generate(batch, exits, cond)
            batch["_fake"] = (step, fake.detach())
            trainable = [p for p in self.disc.parameters() if p.requires_grad]
            for p in trainable:
                p.requires_grad_(False)
            try:
                d_cond = self.disc.condition(d_tokens, d_glob)
                with torch.no_grad():
                    s_real = self.disc(x_real, t, d_cond)
                s_fake = self.disc(renoise(fake, eps, t), t, d_cond)
            finally:
                for p in trainable:
                    p.requires_grad_(True)
            loss = generator_loss(s_real, s_fake)
            extra = {"d_real": float(s_real.detach().mean()), "d_fake": float(s_fake.detach().mean()),
                     "exit_mean": sum(exits) / len(exits)}
            if self.probe is not None:   # the rollout should show the controls of the real continuation
                window = batch["latents"].to(dev)[..., : self.C + self.K * self.B]
                loss, more = self._with_control_loss(loss, window, torch.cat((window[..., : self.C], fake), -1),
                                                     {k: g.to(dev) for k, g in batch["groups"].items()}, self.C)
                extra.update(more)
            if self.tag_probe is not None:   # every rollout chunk should read as its caption
                b, io = fake.shape[:2]
                chunks = fake.reshape(b, io, self.K, self.B).permute(0, 2, 1, 3).reshape(b * self.K, io, self.B)
                loss, more = self._with_tag_loss(loss, chunks, batch["tags"], torch.ones(b, dtype=torch.bool), self.K)
                extra.update(more)
            if a.tempo_loss_weight > 0:   # the rollout's beat should be the caption's BPM
                loss, more = self._with_tempo_loss(loss, fake, batch["bpm"].to(dev))
                extra.update(more)
            return loss, extra
        if phase != DISC:
            raise TrainingError(f"unknown ARC-Forcing phase {phase!r}")
        cached = batch.get("_fake")
        if cached is not None and cached[0] == step:
            fake = cached[1]
        else:
            with torch.no_grad():
                fake = self.generate(batch, exits, self.model.dit.condition(d_tokens, d_glob))
        d_cond = self.disc.condition(d_tokens, d_glob)
        idx = torch.tensor(mis, device=d_tokens.device)
        d_mis = self.disc.condition(d_tokens[idx], None if d_glob is None else d_glob[idx])
        x_fake = renoise(fake, eps, t)
        s_real, s_fake, s_mis = self.disc(x_real, t, d_cond), self.disc(x_fake, t, d_cond), self.disc(x_real, t, d_mis)
        adv, con = discriminator_loss(s_real, s_fake), contrastive_loss(s_real, s_mis)
        loss = adv + a.contrastive_weight * con
        extra = {"d_adv": float(adv.detach()), "d_contrastive": float(con.detach()),
                 "d_real": float(s_real.detach().mean()), "d_fake": float(s_fake.detach().mean()),
                 "d_mismatched": float(s_mis.detach().mean())}
        r = batch["r_noise"].to(dev) * a.r_sigma
        if a.r1_weight:
            r1 = ((s_real - self.disc(x_real + r, t, d_cond)) ** 2).mean()
            loss, extra["r1"] = loss + a.r1_weight * r1, float(r1.detach())
        if a.r2_weight:
            r2 = ((s_fake - self.disc(x_fake + r, t, d_cond)) ** 2).mean()
            loss, extra["r2"] = loss + a.r2_weight * r2, float(r2.detach())
        return loss, extra

    def _with_tempo_loss(self, loss, rollout: torch.Tensor, bpm: torch.Tensor):
        """+ arc.tempo_loss_weight · the tempo loss of the rollout's probe loudness (dB), averaged over
        the items whose BPM is known."""
        from .tempo_loss import tempo_loss
        self.loudness_probe.to(rollout.device)
        # the probe reads `sketch.normalise_loudness` units, (dB + 40) / 40
        loudness_db = 40.0 * self.loudness_probe(rollout.float())[:, 0] - 40.0
        per_item, hit = tempo_loss(loudness_db, bpm, 1.0 / self.model.config.frame_seconds)
        known = (bpm > 0).float()
        tempo = (per_item * known).sum() / known.sum().clamp(min=1)
        return (loss + self.cfg.arc.tempo_loss_weight * tempo,
                {"tempo_loss": float(tempo.detach()), "tempo_hit": float(hit.float().sum() / known.sum().clamp(min=1))})


def build_discriminator(cfg: TrainConfig, model: LiveMusicModel) -> Discriminator:
    a = cfg.arc
    if a.disc_init:
        from ..checkpoints import from_pretrained
        base = from_pretrained(a.disc_init).float().dit
        d = model.config.dit
        if (base.cfg.io_channels, base.cfg.cond_token_dim) != (d.io_channels, d.cond_token_dim):
            raise ConfigError(f"arc.disc_init {a.disc_init} has io_channels/cond_token_dim "
                              f"{base.cfg.io_channels}/{base.cfg.cond_token_dim}, the generator "
                              f"{d.io_channels}/{d.cond_token_dim}")
    else:
        base = model.dit
    return Discriminator(base, a.disc_layers, a.head_channels, a.head_strides, a.head_mults, a.head_blocks)


def arc_forcing(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict:
    """Run stage-2 ARC-Forcing as configured; returns the last logged metrics."""
    from ..data.dataset import LatentDataset
    f, a = cfg.finetune, cfg.arc
    if not f.latents:
        raise ConfigError("finetune.latents is not set: point it at a directory from `lmdm data encode`")
    model = build_model(cfg)
    p = model.config.pattern
    frames = p.context_frames + a.chunks * p.block_frames
    data = LatentDataset(f.latents, frames, short=f.short_clips, seed=cfg.run.seed, controls=f.p_sketch > 0)
    first = data.tensors[data.records[0]["latents"]]
    if first.shape[0] != model.config.dit.io_channels:
        raise DataError(f"latents in {f.latents} have {first.shape[0]} channels, the model expects "
                        f"dit.io_channels={model.config.dit.io_channels}")
    ddp = init_distributed()
    micro = cfg.run.batch_size // max(1, ddp.world * cfg.run.accumulate)
    if micro < 2:
        raise ConfigError(f"ARC-Forcing needs >= 2 items per micro-batch for the contrastive term; run.batch_size="
                          f"{cfg.run.batch_size} over {ddp.world} process(es) × accumulate {cfg.run.accumulate} "
                          f"gives {micro}")
    disc = build_discriminator(cfg, model)
    model.to(ddp.device)
    disc.to(ddp.device)
    obj = ArcForcingObjective(model, data, cfg, disc)
    return Trainer(obj, cfg, ddp).fit(resume=resume, stop_at=stop_at)
