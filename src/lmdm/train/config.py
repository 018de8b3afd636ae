"""Training configuration: dataclasses with every field documented, JSON files, `--set` overrides.

A config file is validated field by field: an unknown name or a value of the wrong type is a
ConfigError naming the dotted field (`optim.lr`), so a typo never trains silently with a default.
`--set key.sub=value` parses value as JSON when it can (numbers, true/false, lists) and as a plain
string otherwise, then goes through the same validation.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    lr: float = 5e-5                 # peak learning rate (after warm-up)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW (beta1, beta2)
    weight_decay: float = 0.0        # AdamW decoupled weight decay
    eps: float = 1e-8                # AdamW epsilon
    schedule: str = "cosine"         # cosine (to min_lr_ratio·lr at run.steps) | inverse | constant
    warmup_steps: int = 0            # linear warm-up from 0 over this many optimizer steps
    min_lr_ratio: float = 0.1        # cosine: final lr as a fraction of lr
    inv_gamma: float = 1e6           # inverse: lr · (1 + step / inv_gamma) ** -inv_power
    inv_power: float = 0.5           # inverse: decay exponent
    grad_clip: float = 1.0           # max global gradient norm; 0 = no clipping


@dataclass
class RunConfig:
    """The loop itself: length, batch, precision, logging, checkpoints."""

    out_dir: str = "runs/train"      # checkpoints, metrics.jsonl, demos/ and the exported model go here
    steps: int = 1000                # optimizer steps in total
    batch_size: int = 8              # GLOBAL batch per optimizer step (all processes, all micro-steps)
    accumulate: int = 1              # micro-steps per optimizer step; batch_size % (world·accumulate) == 0
    precision: str = "fp32"          # fp32 | bf16 | fp16 (autocast; fp16 also uses a gradient scaler)
    seed: int = 0                    # model init, data order, crops, noise and dropout all derive from it
    ema_decay: float = 0.0           # exponential moving average of trained weights; 0 = off
    log_every: int = 10              # metrics.jsonl / TensorBoard interval (optimizer steps)
    checkpoint_every: int = 500      # checkpoint interval; a final checkpoint is always written
    keep_checkpoints: int = 3        # keep the last K checkpoints
    demo_every: int = 0              # audio demo interval; 0 = off (skipped when there is no autoencoder)
    eval_every: int = 0              # held-out evaluation interval (objectives that have one); 0 = off
    progress: bool = True            # tqdm progress bar on rank 0
    threads: int = 0                 # torch threads per process; 0 = leave torch's default
    export: bool = True              # write an lmdm model directory (EMA weights if on, LoRA merged) at the end


@dataclass
class FinetuneConfig:
    """Stage-1 LMDM fine-tuning (SPEC §3): rectified-flow velocity MSE on the target frames."""

    init: str = "preset:tiny"        # an lmdm/SAO directory (e.g. from `lmdm convert`) or preset:<tiny|small|sao-small>
    pattern: str = ""                # presets only: attention pattern (block-causal | enc-dec); "" = preset default
    model: dict | None = None        # a full ModelConfig dict to build from scratch (overrides init)
    autoencoder_init: str = ""       # with `model`: a trained autoencoder (folder from `lmdm train autoencoder`
                                     # or its .safetensors), loaded strictly; its config must match model.autoencoder
    latents: str = ""                # latent directory from `lmdm data encode` (latents.jsonl + shards)
    short_clips: str = "skip"        # clips shorter than the window: skip (counted, warned) | error
    p_uncond: float = 0.2            # per item: drop all context (mask 0, latents 0)
    p_partial: float = 0.3           # per item: zero a random number of leading block-size chunks
    p_text_drop: float = 0.1         # per item: caption -> "" (the null condition) for CFG
    timesteps: str = "logit-normal"  # logit-normal | logsnr-uniform (logSNR ~ U[-6, 2], t = sigmoid(-logSNR))
                                     #   | uniform (t ~ U[0, 1], the authors' stage-1 default)
    logit_mean: float = 0.0          # logit-normal: mean of the normal
    logit_std: float = 1.0           # logit-normal: std of the normal
    trainable: list[str] = field(default_factory=lambda: ["dit.*"])  # fnmatch patterns of trained parameters
    lora_rank: int = 0               # >0: LoRA adapters on attention / feed-forward Linears (base frozen)
    lora_alpha: float = 0.0          # LoRA scale alpha/rank; 0 = alpha = rank
    p_sketch: float = 0.0            # per item: give its sketch controls (needs a "sketch" input group and
                                     #   latents encoded with controls); else the group is all zero
    sketch_max_kernel: int = 31      # sketch items: median filter with an odd kernel ~ U{1, 3, .., this} (Sketch2Sound)
    sketch_drop_all: float = 0.1     # sketch items: drop the whole sketch group (mask included)
    sketch_drop_each: float = 0.2    # sketch items: otherwise drop each control channel independently
    control_loss_weight: float = 0.0  # sketch items: + this x the control probe's loss (`train.control_probe`):
                                     #   loudness / brightness read back from the model's clean estimate
    p_beat: float = 0.0              # per item: give the beat clock at its corpus BPM (needs a "beat" input group
                                     #   and metadata.tempo; pieces start on a beat); else the group is all zero
    add_input_groups: dict[str, int] = field(default_factory=dict)  # new zero-initialised router groups for a
                                     #   loaded model, e.g. {"beat": 3} (`lmdm.engine.beat`); existing ones are kept
    input_group_lr_mult: float = 1.0  # lr multiplier of the router's input-group projections (dit.input_groups.*)
    group_lr_mults: dict[str, float] = field(default_factory=dict)  # per group, overriding that, e.g. {"beat": 300}:
                                     #   a new group's projection must grow from zero while the rest barely moves
    beat_loss_weight: float = 0.0    # beat-clock items: + this x the control probe's loss (as control_loss_weight
                                     #   for sketch items): the loudness the clock makes predictable, i.e. its beats
    control_probe_steps: int = 1500  # steps fitting that probe (once per run, saved in run.out_dir)
    tag_loss_weight: float = 0.0     # captioned items: + this x the tag probe's loss (`train.tag_probe`): the
                                     #   caption's style / instruments / tempo class read back from the model's
                                     #   clean estimate (ARC-Forcing: from each rollout chunk); needs corpus metadata
    tag_probe_steps: int = 1500      # steps fitting that probe (once per run, saved in run.out_dir)
    p_accompaniment: float = 0.0     # per item with an accompaniment pair: train as accompaniment (latents =
                                     #   the pair's rest, group = its given stem); needs an "accompaniment" group
    accompaniment_cutoff: int = -1   # accompaniment frames at/after target start - this are zeroed; -1 = one block
    accompaniment_drop_all: float = 0.2     # accompaniment items: drop the whole group
    accompaniment_drop_prefix: float = 0.3  # accompaniment items: otherwise drop an old prefix of random length
    block_frames_choices: list[int] = field(default_factory=list)  # per optimizer step block size B drawn from
                                     #   this list ([] = the model's); context C_B = (C // B)·B (enc-dec: C), window
                                     #   = the last C_B + B frames of the model-window crop
    distill_cfg: float = 0.0         # >0: guidance distillation. The target velocity is the frozen initial
                                     #   model's CFG velocity v_u + w (v_c - v_u) at this w instead of the data's,
                                     #   so the trained model follows its prompt as under CFG w at cfg 1 (one pass)
    demo_prompt: str = "warm lo-fi piano"  # text for audio demos
    demo_seconds: float = 4.0        # length of each audio demo


@dataclass
class AutoencoderTrainConfig:
    """Oobleck VAE training: multi-resolution STFT + KL + adversarial (STFT discriminator)."""

    model: dict = field(default_factory=dict)  # AutoencoderConfig dict (empty = SAO-small's shape)
    init: str = ""                   # optional autoencoder safetensors to start from
    trainable: list[str] = field(default_factory=lambda: ["*"])  # fnmatch patterns of trained parameters;
                                     #   ["decoder.*"] keeps the encoder, hence the latent space a DiT was
                                     #   trained on, and retrains only how latents sound
    manifest: str = ""               # audio manifest (manifest.jsonl) of training clips
    heldout_clips: int = 2           # the manifest's last N clips are held out for evaluation
    crop_seconds: float = 1.0        # random training crop length
    kl_weight: float = 1e-4          # weight of the VAE KL term
    # scale of the posterior noise in training. 1 = a VAE as SAO trains it. On a budget of ~1k steps
    # the decoder never learns to read latents drowned in unit noise (measured: posterior collapse,
    # latent SNR 0.04 after 600 steps), so the default model trains with 0 (the posterior mean).
    noise_scale: float = 1.0
    latent_noise: float = 0.0        # decoder-only training: Gaussian noise of this std added to the latents
    unit_latents: bool = False       # export: rescale latents to unit std over the training clips (exact)
    stft_weight: float = 1.0         # weight of the multi-resolution STFT loss
    # weight of a waveform L1 term (normalised by the batch's mean |x|). STFT magnitudes alone leave
    # the encoder a weak signal early on; measured overfitting one clip for 120 steps: envelope
    # correlation 0.62 without it, 0.93 with weight 1 (waveform correlation 0.00 -> 0.85)
    wave_weight: float = 0.0
    adv_weight: float = 0.1          # weight of the generator's adversarial loss; 0 = no discriminator
    fm_weight: float = 1.0           # weight of discriminator feature matching (when adv_weight > 0)
    adv_start: int = 0               # optimizer step at which the adversarial terms switch on
    adv_loss: str = "hinge"          # hinge | lsgan
    disc_lr: float = 1e-4            # discriminator learning rate (AdamW, betas 0.5, 0.9)
    disc_channels: int = 32          # STFT discriminator width
    fft_sizes: list[int] = field(default_factory=lambda: [2048, 1024, 512, 256, 128])  # STFT loss / disc scales
    disc_fft_sizes: list[int] = field(default_factory=list)  # discriminator scales; empty = fft_sizes[:3]
    disc_crop_seconds: float = 0.0   # the discriminator sees one window this long of each crop; 0 = all of it
    mel_weight: float = 0.0          # spectral codec: weight of the log-mel L1 loss (at every fft_sizes >= 512)
    spectral_weight: float = 0.0     # spectral codec: L1 of the decoder's log magnitudes against the input's STFT
    phase_weight: float = 0.0        # spectral codec: anti-wrapped phase losses against the input's STFT (APNet)


@dataclass
class ArcConfig:
    """Stage-2 ARC-Forcing (SPEC §3): adversarial relativistic-contrastive post-training on the
    model's own rollouts. The generator is built from the finetune section (init/model/pattern,
    latents, trainable, lora); its optimizer is `optim` (set lr 1e-6, betas [0.9, 0.95], wd 0.01)."""

    chunks: int = 12                 # K: chunks rolled out per item (block-causal 12, enc-dec 4)
    max_steps: int = 6               # S: ping-pong schedule length; exit step k ~ U{1..S-1} per chunk
    p_uncond: float = 0.25           # per item: drop all context
    p_partial: float = 0.1           # per item: zero a random number of leading block-size chunks
    disc_init: str = ""              # base bidirectional model directory for the discriminator; "" = the generator's DiT
    disc_layers: int = 12            # keep the first N transformer blocks of the base DiT
    head_channels: int = 128         # ConvNeXt head width
    head_strides: list[int] = field(default_factory=lambda: [1, 2, 2])   # per-stage time strides
    head_mults: list[int] = field(default_factory=lambda: [1, 2, 4])     # per-stage channel multipliers
    head_blocks: int = 2             # ConvNeXt blocks per stage
    contrastive_weight: float = 2.0  # weight of softplus(-(D(real, c) - D(real, c')))
    tempo_loss_weight: float = 0.0   # weight of the rollout's tempo loss against its caption's BPM (train.tempo_loss)
    r1_weight: float = 0.0           # approximate R1 on real: mean (D(x) - D(x + sigma·eps))^2; 0 = off
    r2_weight: float = 0.0           # approximate R2, the same on fake
    r_sigma: float = 0.01            # perturbation scale of the approximate R1/R2
    disc_lr: float = 1e-6            # discriminator AdamW learning rate
    disc_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # discriminator AdamW betas
    disc_weight_decay: float = 0.01  # discriminator AdamW weight decay


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    autoencoder: AutoencoderTrainConfig = field(default_factory=AutoencoderTrainConfig)
    arc: ArcConfig = field(default_factory=ArcConfig)

    def validate(self) -> "TrainConfig":
        r, o, f, a = self.run, self.optim, self.finetune, self.autoencoder
        checks = [
            (r.steps >= 1, "run.steps must be >= 1"), (r.batch_size >= 1, "run.batch_size must be >= 1"),
            (r.accumulate >= 1, "run.accumulate must be >= 1"),
            (r.precision in ("fp32", "bf16", "fp16"), "run.precision must be fp32, bf16 or fp16"),
            (0 <= r.ema_decay < 1, "run.ema_decay must be in [0, 1)"),
            (r.keep_checkpoints >= 1, "run.keep_checkpoints must be >= 1"),
            (r.checkpoint_every >= 1 and r.log_every >= 1, "run.checkpoint_every and run.log_every must be >= 1"),
            (o.lr > 0, "optim.lr must be > 0"), (len(o.betas) == 2, "optim.betas must have two values"),
            (o.schedule in ("cosine", "inverse", "constant"), "optim.schedule must be cosine, inverse or constant"),
            (o.warmup_steps >= 0 and o.grad_clip >= 0, "optim.warmup_steps and optim.grad_clip must be >= 0"),
            (all(0 <= p <= 1 for p in (f.p_uncond, f.p_partial, f.p_text_drop)),
             "finetune.p_uncond, p_partial and p_text_drop must be probabilities"),
            (f.p_uncond + f.p_partial <= 1, "finetune.p_uncond + finetune.p_partial must be <= 1"),
            (f.timesteps in ("logit-normal", "logsnr-uniform", "uniform"),
             "finetune.timesteps must be logit-normal, logsnr-uniform or uniform"),
            (f.short_clips in ("skip", "error"), "finetune.short_clips must be skip or error"),
            (f.lora_rank >= 0, "finetune.lora_rank must be >= 0"),
            (0 <= f.p_beat <= 1, "finetune.p_beat must be a probability"),
            (all(isinstance(c, int) and c >= 1 for c in f.add_input_groups.values()),
             "finetune.add_input_groups must map group names to channel counts >= 1"),
            (all(0 <= p <= 1 for p in (f.p_sketch, f.sketch_drop_all, f.sketch_drop_each, f.p_accompaniment,
                                       f.accompaniment_drop_all, f.accompaniment_drop_prefix)),
             "finetune.p_sketch, sketch_drop_all, sketch_drop_each, p_accompaniment, accompaniment_drop_all and "
             "accompaniment_drop_prefix must be probabilities"),
            (f.accompaniment_drop_all + f.accompaniment_drop_prefix <= 1,
             "finetune.accompaniment_drop_all + finetune.accompaniment_drop_prefix must be <= 1"),
            (f.sketch_max_kernel >= 1 and f.sketch_max_kernel % 2 == 1,
             "finetune.sketch_max_kernel must be a positive odd number"),
            (f.input_group_lr_mult > 0 and all(m > 0 for m in f.group_lr_mults.values()),
             "finetune.input_group_lr_mult and finetune.group_lr_mults must be > 0"),
            (f.beat_loss_weight >= 0, "finetune.beat_loss_weight must be >= 0"),
            (f.control_loss_weight >= 0 and f.control_probe_steps >= 1,
             "finetune.control_loss_weight must be >= 0 and finetune.control_probe_steps >= 1"),
            (f.tag_loss_weight >= 0 and f.tag_probe_steps >= 1,
             "finetune.tag_loss_weight must be >= 0 and finetune.tag_probe_steps >= 1"),
            (f.accompaniment_cutoff >= -1, "finetune.accompaniment_cutoff must be >= 0, or -1 for one block"),
            (all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in f.block_frames_choices),
             "finetune.block_frames_choices must be positive integers"),
            (a.adv_loss in ("hinge", "lsgan"), "autoencoder.adv_loss must be hinge or lsgan"),
            (a.crop_seconds > 0, "autoencoder.crop_seconds must be > 0"),
            (min(a.disc_crop_seconds, a.mel_weight, a.spectral_weight, a.phase_weight) >= 0,
             "autoencoder.disc_crop_seconds, mel_weight, spectral_weight and phase_weight must be >= 0"),
            (a.latent_noise >= 0, "autoencoder.latent_noise must be >= 0"),
            (self.arc.chunks >= 1 and self.arc.max_steps >= 2, "arc.chunks must be >= 1 and arc.max_steps >= 2"),
            (self.arc.tempo_loss_weight >= 0, "arc.tempo_loss_weight must be >= 0"),
            (0 <= self.arc.p_uncond and 0 <= self.arc.p_partial and self.arc.p_uncond + self.arc.p_partial <= 1,
             "arc.p_uncond and arc.p_partial must be probabilities summing to <= 1"),
            (self.arc.disc_layers >= 1 and self.arc.head_blocks >= 0, "arc.disc_layers must be >= 1"),
            (len(self.arc.disc_betas) == 2 and self.arc.disc_lr > 0, "arc.disc_betas needs two values, arc.disc_lr > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return build(cls, data, "").validate()


def build(cls, data: Any, where: str):
    """A dataclass from a dict, checking every name and type; nested dataclasses recurse."""
    if not isinstance(data, dict):
        raise ConfigError(f"config{where or ''} must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown} in {where.lstrip('.') or 'the top level'}; "
                          f"known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        hint, path = hints[name], f"{where}.{name}".lstrip(".")
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, f"{where}.{name}")
            continue
        default = getattr(cls(), name)
        ok = (value is None and default is None) or (
            isinstance(default, bool) == isinstance(value, bool) and (
                isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
                or (default is None and isinstance(value, dict))))
        if not ok:
            kind = "object or null" if default is None else type(default).__name__
            raise ConfigError(f"config field {path} must be {kind}, got {value!r}")
        kwargs[name] = float(value) if isinstance(default, float) else value
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` strings to a config dict (value: JSON if it parses, else a string)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key.sub=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node, parts = data, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    data: dict = {}
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read training config {path}: {e}") from e
        data.pop("_comment", None)
        for section in data.values():
            if isinstance(section, dict):
                section.pop("_comment", None)
    return TrainConfig.from_dict(apply_overrides(data, list(overrides)))
