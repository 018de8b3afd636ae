"""Rendering a piece of given length: offline SAO windows or an LMDM stream, with progress;
optionally driven by a sketch (`load_sketch`) or an accompaniment (`lmdm.engine.accompany`)."""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch

from ..config import PatternConfig, SamplingConfig
from ..errors import ConfigError, DataError, LMDMError
from .prompts import as_schedule


def block_pattern(model, block_frames: int | None) -> PatternConfig:
    """The model's pattern with another block size B: block-causal keeps as many whole chunks of
    context as fit in the trained context (C' = (C // B) * B), enc-dec keeps C."""
    p = model.config.pattern
    if block_frames is None or block_frames == p.block_frames:
        return p
    if block_frames < 1:
        raise ConfigError(f"block size must be >= 1 latent frame, got {block_frames}")
    context = (p.context_frames // block_frames) * block_frames if p.pattern == "block-causal" else p.context_frames
    pattern = dataclasses.replace(p, block_frames=block_frames, context_frames=context)
    pattern.validate()
    return pattern


def require_input_group(model, name: str, what: str) -> None:
    """A clear error when the model was not built (and trained) with the `name` input group."""
    groups = model.config.dit.input_groups
    if name not in groups:
        raise ConfigError(f"this model has no {name!r} input group (dit.input_groups: {sorted(groups)}), so it "
                          f"cannot take {what}; use a model fine-tuned with {name} conditioning")


def load_sketch(model, path, seconds: float, strength: float = 1.0, max_kernel: int = 31) -> torch.Tensor:
    """A sketch file -> normalised controls (3, frames) at the model's latent frame rate, one per latent
    frame from frame 0 (`lmdm.engine.sketch`), median-filtered by `strength` via `strength_to_kernel`:
    1 = follow the sketch exactly (kernel 1), 0 = keep only its coarsest shape (kernel `max_kernel`,
    the largest the fine-tuning used by default).

    Audio (any format soundfile reads): resampled to the model's sample rate, controls with hop = the
    autoencoder's downsampling ratio (exactly how `lmdm data encode` computes them for training), so
    frame i covers the same samples as latent frame i; it covers the audio's length. Curves (.json /
    .csv, `controls_from_curves`): sampled at the frame times of the whole `seconds` (each curve is
    held past its last point)."""
    from ..audio.io import load_audio
    from .sketch import controls_from_audio, controls_from_curves, median_filter, strength_to_kernel
    require_input_group(model, "sketch", "a sketch")
    kernel = strength_to_kernel(strength, max_kernel)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"sketch file {str(path)!r} does not exist")
    sr, hop = model.sample_rate, model.config.downsampling_ratio
    if path.suffix.lower() in (".json", ".csv"):
        try:
            controls = controls_from_curves(path, math.ceil(round(seconds * sr) / hop), sr / hop)
        except LMDMError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise DataError(f"cannot read control curves {path}: {e}") from e
    else:
        audio = load_audio(path, sr)
        if audio.shape[-1] == 0:
            raise DataError(f"sketch audio {path} is empty")
        controls = controls_from_audio(audio, sr, hop)
    if not torch.isfinite(controls).all():
        raise DataError(f"sketch {path} gives non-finite control values")
    return median_filter(controls, kernel)


def generate(model, prompt, seconds: float | None = None, *, sampling: SamplingConfig | None = None,
             seed: int | None = None, steps: int | None = None, cfg_scale: float | None = None, progress: bool = False,
             on_audio=None, block_frames: int | None = None, on_change=None, sketch: torch.Tensor | None = None,
             accompaniment: torch.Tensor | None = None, cutoff_frames: int | None = None,
             sketch_cfg: float | None = None, control_guidance: float | None = None, bpm: float | None = None,
             prompt_guidance: float | None = None, beat_cfg: float | None = None, collect: bool | None = None,
             **more_guidance) -> torch.Tensor | None:
    """Audio (channels, samples) of exactly `seconds`. The knobs come in `sampling` (a `SamplingConfig`,
    `seconds` included); a keyword argument of the same name that is not None overrides it, and any
    left unset take the model's defaults (`Stream`); a registered guidance takes its strength by name.

    `prompt`: a string, weighted prompts, or a schedule [(start seconds, prompts)] whose changes
    are applied at the first block boundary at or after their time; `on_change(seconds, prompts)`
    is told where each landed.

    Time-aligned inputs (LMDMs with those input groups), both from latent frame 0 = sample 0:
    `sketch` normalised controls (3, frames) (`load_sketch`); past its end the stream runs without
    one, with guidance `sketch_cfg` on it and control guidance of strength `control_guidance` through the
    decoder (`Stream`, `lmdm.engine.control_guidance`; defaults the model's). `accompaniment` latents (io, frames)
    (`lmdm.engine.accompany`), each block seeing only frames
    `cutoff_frames` (default one block) before its start; see `Stream`. `bpm`: the beat clock of a model
    with a `beat` group (`lmdm.engine.beat`): None follows the prompts' tempo, a number fixes it, 0 = free tempo.
    `prompt_guidance`: its strength for a model with a prompt probe (`lmdm.engine.prompt_guidance`; default the
    model's, 0 = off). `beat_cfg`: guidance on the beat clock while it runs (`Stream`; default the model's,
    1 = off).

    `collect`: keep the audio and return it (default: only without `on_audio`). A caller that
    streams to `on_audio` gets None back and the render holds flat memory however long it is.
    Every knob is checked (`SamplingConfig`, the ranges the CLI and the live server use) before
    anything runs."""
    if model.autoencoder is None:
        raise ConfigError("this model has no autoencoder, so it cannot make audio")
    knobs = (sampling or SamplingConfig()).merged(
        seconds=seconds, seed=seed, steps=steps, cfg_scale=cfg_scale, block_frames=block_frames, sketch_cfg=sketch_cfg,
        control_guidance=control_guidance, prompt_guidance=prompt_guidance, beat_cfg=beat_cfg, bpm=bpm,
        cutoff_frames=cutoff_frames, **more_guidance).validate()
    if knobs.seconds is None:
        raise ConfigError("generate needs a length: seconds (or SamplingConfig.seconds)")
    collect = on_audio is None if collect is None else collect
    if sketch is not None:
        require_input_group(model, "sketch", "a sketch")
    if accompaniment is not None:
        require_input_group(model, "accompaniment", "an accompaniment")
    schedule = as_schedule(prompt)
    total = knobs.samples(model.sample_rate)
    p = model.config.pattern
    if p.pattern == "bidirectional" and p.context_frames == 0:
        if len(schedule) > 1 or knobs.block_frames is not None:
            raise ConfigError("a plain Stable Audio Open model samples one window offline: timed prompt changes "
                              "and --block need an LMDM (lmdm convert)")
        audio = _offline_window(model, schedule[0][1], knobs, total, on_audio)
        return audio if collect else None
    pattern = block_pattern(model, knobs.block_frames)
    stream = model.stream(schedule[0][1], sampling=knobs, pattern=pattern, sketch=sketch, accompaniment=accompaniment)
    block_seconds = pattern.block_frames * model.config.frame_seconds
    pending = schedule[1:]
    pieces, have = [], 0
    bar = _progress(total / model.sample_rate, progress)
    start = time.perf_counter()
    while have < total:
        while pending and stream.block_index * block_seconds >= pending[0][0] - 1e-9:
            stream.set_prompts(pending[0][1])
            if on_change:
                on_change(stream.block_index * block_seconds, pending[0][1])
            pending.pop(0)
        audio = stream.next_block()[0]
        if have + audio.shape[-1] >= total:  # the decoder's held-back tail completes the request
            audio = torch.cat((audio, stream.finish()[0]), -1)
        audio = audio[:, : total - have]
        have += audio.shape[-1]
        if collect:
            pieces.append(audio)
        if on_audio:
            on_audio(audio)
        if bar:
            elapsed = time.perf_counter() - start
            bar.set_postfix(rtf=f"{stream.block_index * block_seconds / elapsed:.2f}x")
            bar.update(audio.shape[-1] / model.sample_rate)
    if bar:
        bar.close()
    return torch.cat(pieces, -1) if collect else None


def _offline_window(model, prompt, knobs: SamplingConfig, total: int, on_audio) -> torch.Tensor:
    p = model.config.pattern
    frames = math.ceil(total / model.config.downsampling_ratio)
    if frames > p.block_frames:
        raise ConfigError(f"this model generates one window of at most {p.block_frames * model.config.frame_seconds:.2f} s"
                          f" offline; asked for {knobs.seconds:g} s (convert it to an LMDM to stream longer pieces)")
    stream = model.stream(prompt, seed=knobs.seed, steps=knobs.steps, cfg_scale=knobs.cfg_scale,
                          seconds_total=knobs.seconds)
    latents = stream.next_latents()
    with torch.no_grad():
        audio = model.autoencoder.decode(latents.to(model.autoencoder.dtype)).float()[0, :, :total]
    if on_audio:
        on_audio(audio)
    return audio


def _progress(total_seconds: float, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=round(total_seconds, 2), unit="s audio", desc="generating",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}{postfix}]")
