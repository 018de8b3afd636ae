"""Stream: one endless generation session, one latent block per call.

The stream keeps the clean context window (the last C frames, with a mask saying which frames are
real), the KV cache of its attention pattern, the blended prompt conditioning and a seeded noise
source. Noise for block n comes from a generator seeded by (seed, n), so the same seed gives the
same blocks, and a restored state continues bit-exactly.

Prompt changes take effect at the next block: cross-attention K/V are recomputed at once, so the
target follows the new prompt immediately. Block-causal context K/V were computed under the old
prompt; they are recomputed (re-bootstrap) when the dominant prompt changes, and kept when only
the blend weights move (SPEC §2), so morphing sliders never stall the stream.

Time-aligned input groups (SPEC §4; `lmdm.engine.sketch`), used only when given, so a stream without them
computes exactly what it did before. Frames are counted on one absolute axis: the next block's
target starts at frame `frame` (block_index * B while B is unchanged), its context is [frame - C, frame);
context primed with `set_context` sits at negative frames.

The block size can change mid-stream (`set_block_frames`, block-causal and enc-dec): the clean
context carries over (as much of it as the new window holds), the cache is rebuilt from it at the
next block (a bootstrap, as after a dominant prompt change), the decoder keeps running, so the
audio continues without a seam the decoder did not already smooth.
- sketch (`sketch=`, `set_sketch`): normalised controls (3, n) from a start frame; the group
  [mask | controls] is given to every frame it covers (context and target), mask 0 elsewhere.
- accompaniment (`accompaniment=`, `push_accompaniment`, `push_input` for live audio through the
  streaming encoder): latents (io, n) from a start frame; the group [mask | latents] is given to
  frames before `frame - cutoff_frames` only (default cutoff: one block), so the block being
  written never depends on the last `cutoff_frames` frames of input before it.
Guidance runs as branches of one model batch (`branches`): the stream's batch once for the prompt
and inputs, again with the null prompt under CFG (`cfg_scale`), again without the sketch under
sketch guidance (`sketch_cfg`, with a sketch set), again without the beat clock under beat guidance
(`beat_cfg`, on the first `beat_cfg_steps` denoising steps, while the clock runs: it holds the tempo
against prompt guidance, which can pull a piece off the clock; default model card, beat guidance); each
branch keeps its own cache rows.
Control guidance (`control_guidance`, with a sketch set; `lmdm.engine.control_guidance`) corrects the clean
estimate of the last denoising steps through the decoder, so what is heard follows the sketch.
Prompt guidance (`prompt_guidance`, models with a prompt probe; `lmdm.engine.prompt_guidance`) corrects the
clean estimate of the middle denoising steps towards the prompt's embedding, in latent space.
Each frame's group values are those visible when its tokens are computed: enc-dec recomputes the
context every block (so it sees every input frame once older than the cutoff); the block-causal
cache freezes a chunk's values when it enters the cache (at the fused step after it was written,
when only its frames before `frame - cutoff_frames` are visible; with cutoff >= B a block-causal
model sees accompaniment only through a (re-)bootstrap, so use cutoff_frames < B there). The
reference for both is `DiT.forward` over the window / the stream since bootstrap with those values.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .beat import BeatClock, bpm_from_prompts, check_bpm, with_tempo
from .cache import BlockCausalCache, EncDecCache
from .control_guidance import ControlGuidance, guide_x0
from ..config import PatternConfig, SamplingConfig, check_knob
from ..errors import ConfigError, ShapeError, StateError
from ..models.conditioners import Prompts, check_prompts, dominant
from .prompt_guidance import PROBE_FRAMES, PromptGuidance, guide_to_prompt, pool_tokens
from ..nn.fast import pack_linears
from .sampling import guide, sample
from .sketch import median_filter

STATE_VERSION = 1


class Stream:
    def __init__(self, model, prompt: Prompts | str = "", *, seed: int = 0, steps: int | None = None,
                 cfg_scale: float | None = None, sampler: str = "pingpong", guidance: str = "cfg",
                 context: torch.Tensor | None = None, batch: int = 1, seconds_total: float | None = None,
                 pattern: PatternConfig | None = None, sketch: torch.Tensor | None = None,
                 accompaniment: torch.Tensor | None = None, cutoff_frames: int | None = None,
                 sketch_cfg: float | None = None, control_guidance: "float | ControlGuidance | None" = None,
                 bpm: float | None = None, prompt_guidance: "float | PromptGuidance | None" = None,
                 beat_cfg: float | None = None, beat_cfg_steps: int | None = None):
        SamplingConfig(seed=seed, steps=steps, cfg_scale=cfg_scale, sketch_cfg=sketch_cfg, beat_cfg=beat_cfg,
                       bpm=bpm, cutoff_frames=cutoff_frames).validate()   # the shared ranges (config.KNOBS)
        self.model, self.dit = model, pack_linears(model.dit)
        # the stream's own buffers (context, inputs, noise, sampler state) stay on the CPU: small, and
        # seeded noise and saved states do not depend on the device; the DiT, its cache and the
        # codec run wherever the model is (`model.to("cuda")`), fed through `_dev`
        self.device = next(model.dit.parameters()).device
        self.pcfg = pattern or model.config.pattern
        self.pcfg.validate()
        self.io, self.B, self.C = model.config.dit.io_channels, self.pcfg.block_frames, self.pcfg.context_frames
        self.seed, self.steps, self.sampler, self.guidance = seed, steps or model.config.steps, sampler, guidance
        self.batch, self.seconds_total = batch, seconds_total
        self.cfg_scale = float(model.config.cfg_scale if cfg_scale is None else cfg_scale)
        self.sketch_cfg = float(model.config.sketch_cfg_scale if sketch_cfg is None else sketch_cfg)
        self.beat_cfg = float(model.config.beat_cfg_scale if beat_cfg is None else beat_cfg)
        self.beat_cfg_steps = int(model.config.beat_cfg_steps if beat_cfg_steps is None else beat_cfg_steps)
        if not isinstance(control_guidance, ControlGuidance):   # a strength: the default iterations and steps
            control_guidance = ControlGuidance(
                model.config.control_guidance if control_guidance is None else float(control_guidance))
        self.control_guidance = control_guidance.validate()
        if not isinstance(prompt_guidance, PromptGuidance):
            prompt_guidance = PromptGuidance(
                model.config.prompt_guidance if prompt_guidance is None else float(prompt_guidance))
        self.prompt_guidance = self._check_prompt_guidance(prompt_guidance)
        self._branch_names: tuple[str, ...] = ()   # the branches the conditioning and cache were built for
        self.block_index = 0
        self._frame = 0  # absolute latent frame of the next block's target
        self.trace: list[dict] | None = None  # set to [] to record every denoising call (tests, analysis)
        self.history = torch.zeros(batch, self.io, self.C)
        self.history_mask = self._empty_mask(self.C)
        self.pending: torch.Tensor | None = None  # block-causal: finished chunk awaiting its fused step
        self.cache = self._new_cache()
        self.needs_bootstrap = True
        self._decoder = None
        self._encoder = None
        self.cutoff_frames = self.B if cutoff_frames is None else int(cutoff_frames)
        if self.cutoff_frames < 0:
            raise ConfigError(f"cutoff_frames must be >= 0, got {self.cutoff_frames}")
        self.sketch: torch.Tensor | None = None          # (batch, 3, n) from frame sketch_start
        self.sketch_start = 0
        self.accompaniment: torch.Tensor | None = None   # (batch, io, n) from frame accompaniment_start
        self.accompaniment_start = 0
        if sketch is not None:
            self.set_sketch(sketch)
        if accompaniment is not None:
            self.set_accompaniment(accompaniment)
        if context is not None:
            self.set_context(context)
        self.prompts = check_prompts(prompt)
        has_beat = "beat" in model.config.dit.input_groups
        self.beat = (BeatClock(model.config.frame_seconds, delay_frames=model.config.beat_lead_frames)
                     if has_beat else None)
        self.set_bpm(bpm)
        self._encode()

    # -- controls ---------------------------------------------------------------------------

    @property
    def branches(self) -> tuple[str, ...]:
        """The model batch, one copy of the stream's batch per branch: "cond" (prompt and inputs), then
        under CFG "no_text" (SAO's null prompt) and, with sketch guidance and a sketch set,
        "no_sketch" (the prompt without the sketch) and, with beat guidance while the clock runs, "no_beat"
        (without the clock). v = v_cond + sum_b (scale_b - 1)(v_cond - v_b)."""
        names = ["cond"]
        if self.cfg_scale != 1.0:
            names.append("no_text")
        if self.sketch_cfg != 1.0 and self.sketch is not None:
            names.append("no_sketch")
        if self.beat_cfg != 1.0 and getattr(self, "beat", None) is not None and self.beat.bpm is not None:
            names.append("no_beat")   # while the clock runs (from the next block on)
        return tuple(names)

    @property
    def guided(self) -> bool:
        return len(self.branches) > 1

    def set_prompts(self, prompts: Prompts | str) -> None:
        """Weighted prompts, applied from the next block on."""
        prompts = check_prompts(prompts)
        dominant_changed = dominant(prompts) != dominant(self.prompts)
        self.prompts = prompts
        self._sync_beat()
        self._encode()
        if dominant_changed:
            self.needs_bootstrap = True

    def set_cfg(self, scale: float) -> None:
        self.cfg_scale = check_knob("cfg_scale", scale)
        self._sync_branches()

    def set_beat_cfg(self, scale: float, steps: int | None = None) -> None:
        """Guidance on the beat clock (1 = off): how much harder than trained the output keeps its tempo,
        on the first `steps` denoising steps (0: all; None: unchanged)."""
        self.beat_cfg = check_knob("beat_cfg", scale)
        if steps is not None:
            self.beat_cfg_steps = int(steps)
        self._sync_branches()

    def set_sketch_cfg(self, scale: float) -> None:
        """Guidance on the sketch (1 = off): how much harder than trained the output follows it."""
        self.sketch_cfg = check_knob("sketch_cfg", scale)
        self._sync_branches()

    def set_control_guidance(self, strength: float) -> None:
        """Control guidance on the sketch through the decoder (`lmdm.engine.control_guidance`; 0 = off)."""
        self.control_guidance = dataclasses.replace(self.control_guidance, strength=float(strength)).validate()

    def set_prompt_guidance(self, strength: float) -> None:
        """Prompt guidance through the model's prompt probe (`lmdm.engine.prompt_guidance`; 0 = off)."""
        self.prompt_guidance = self._check_prompt_guidance(
            dataclasses.replace(self.prompt_guidance, strength=float(strength)))

    def _check_prompt_guidance(self, g: PromptGuidance) -> PromptGuidance:
        if g.validate().active and self.model.prompt_probe is None:
            raise ConfigError("prompt guidance needs a model with a prompt probe (config prompt_probe; "
                              "`lmdm train prompt-probe`)")
        return g

    def _sync_branches(self) -> None:
        if self.branches != self._branch_names:  # the model batch changes, so do the conditioning and the cache
            self._condition()
            self.needs_bootstrap = True

    def set_context(self, latents: torch.Tensor) -> None:
        """Prime the window with clean latents (io, frames) or (batch, io, frames), right-aligned."""
        if latents.dim() == 2:
            latents = latents[None].expand(self.batch, -1, -1)
        if latents.dim() != 3 or latents.shape[:2] != (self.batch, self.io):
            raise ShapeError(f"context latents must be ({self.io}, frames) or ({self.batch}, {self.io}, frames), "
                             f"got {tuple(latents.shape)}")
        if not torch.isfinite(latents).all():
            raise ShapeError("context latents contain NaN or infinite values")
        n = min(latents.shape[-1], self.C)
        self.history = torch.zeros(self.batch, self.io, self.C)
        self.history_mask = self._empty_mask(self.C)
        if n:
            self.history[..., self.C - n:] = latents[..., latents.shape[-1] - n:].float()
            self.history_mask[..., self.C - n:] = 1
        self.pending, self.needs_bootstrap = None, True

    def set_block_frames(self, block_frames: int) -> None:
        """Generate blocks of `block_frames` latent frames from the next block on (the model's own
        pattern re-blocked as `generate.block_pattern` does: block-causal keeps C' = (C // B) * B)."""
        from .generate import block_pattern
        self._repattern(block_pattern(self.model, block_frames))

    def _check_reblock(self, pattern: PatternConfig) -> None:
        """Only this stream's own pattern kind with another block size (block-causal or enc-dec)."""
        if pattern.pattern != self.pcfg.pattern or pattern.pattern not in ("block-causal", "enc-dec"):
            raise ConfigError(f"the block size of a {self.pcfg.pattern!r} stream cannot change to a "
                              f"{pattern.pattern!r} pattern (block-causal and enc-dec streams can re-block)")
        pattern.validate()

    def _repattern(self, pattern: PatternConfig) -> None:
        if pattern == self.pcfg:
            return
        self._check_reblock(pattern)
        hist, mask = self.history[..., -pattern.context_frames:], self.history_mask[..., -pattern.context_frames:]
        pad = pattern.context_frames - hist.shape[-1]   # a longer window: the older part is empty
        self.history = torch.nn.functional.pad(hist, (pad, 0))
        self.history_mask = torch.nn.functional.pad(mask, (pad, 0), value=float(pattern.start_context == "zeros"))
        self.pcfg, self.B, self.C = pattern, pattern.block_frames, pattern.context_frames
        self.cache, self.pending, self.needs_bootstrap = self._new_cache(), None, True

    def set_bpm(self, bpm: float | None) -> None:
        """The beat clock from the next block on: None follows the prompt, a number fixes the tempo,
        0 stops the clock (free tempo). Needs a model with a `beat` input group, except None and 0."""
        if bpm is not None and bpm != 0:
            bpm = check_bpm(bpm)
            if self.beat is None:
                raise ConfigError(f"this model has no 'beat' input group (dit.input_groups: "
                                  f"{sorted(self.model.config.dit.input_groups)}), so it cannot follow a set tempo")
        self.bpm_mode = bpm
        self._sync_beat()
        if hasattr(self, "tokens"):   # not while __init__ runs: _encode follows
            self._embed_prompt()

    def _sync_beat(self) -> None:
        if self.beat is not None:
            bpm = bpm_from_prompts(self.prompts) if self.bpm_mode is None else (self.bpm_mode or None)
            self.beat.set_bpm(bpm, self.frame)
            if self._branch_names:   # beat guidance adds a branch while the clock runs
                self._sync_branches()

    @property
    def frame(self) -> int:
        """Absolute latent frame where the next block's target starts."""
        return self._frame

    def _group_check(self, name: str, x: torch.Tensor | None, channels: int, what: str) -> torch.Tensor | None:
        if x is None:
            return None
        if name not in self.model.config.dit.input_groups:
            raise ConfigError(f"this model has no {name!r} input group (dit.input_groups: "
                              f"{sorted(self.model.config.dit.input_groups)})")
        if x.dim() == 2:
            x = x[None].expand(self.batch, -1, -1)
        if x.dim() != 3 or x.shape[:2] != (self.batch, channels):
            raise ShapeError(f"{what} must be ({channels}, frames) or ({self.batch}, {channels}, frames), "
                             f"got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ShapeError(f"{what} contain NaN or infinite values")
        return x.float().clone()

    def set_sketch(self, controls: torch.Tensor | None, start: int | None = None, kernel: int = 1) -> None:
        """Normalised sketch controls (3, frames) or (batch, 3, frames) (see `lmdm.engine.sketch`) for frames
        start.. (default: the next block's target), median-filtered with `kernel`; None clears.
        Takes effect from the next block; frames already in a block-causal cache keep their old values."""
        controls = self._group_check("sketch", controls, 3, "sketch controls")
        self.sketch = None if controls is None else median_filter(controls, kernel)
        self.sketch_start = self.frame if start is None else int(start)
        if self._branch_names:   # set after construction: sketch guidance may add or drop a branch
            self._sync_branches()

    def set_accompaniment(self, latents: torch.Tensor | None, start: int | None = None) -> None:
        """Accompaniment latents (io, frames) or (batch, io, frames) for frames start.. (default: the
        next block's target), replacing any buffered ones; None clears (and resets live input)."""
        self.accompaniment = self._group_check("accompaniment", latents, self.io, "accompaniment latents")
        self.accompaniment_start = self.frame if start is None else int(start)
        if latents is None:
            self._encoder = None

    def push_accompaniment(self, latents: torch.Tensor) -> None:
        """Append accompaniment latents right after those buffered (the first push starts at `frame`)."""
        latents = self._group_check("accompaniment", latents, self.io, "accompaniment latents")
        if self.accompaniment is None:
            self.set_accompaniment(latents)
        else:
            self.accompaniment = torch.cat((self.accompaniment, latents), -1)

    def push_input(self, audio: torch.Tensor) -> int:
        """Live input audio (channels, samples) or (batch, channels, samples) → the streaming encoder →
        the accompaniment buffer. Input sample 0 (of the first push) is aligned with the frame that was
        `frame` then; latents arrive `encoder.lookahead_samples` late. Returns the frames added."""
        if self.model.autoencoder is None:
            raise ConfigError("this model has no autoencoder: use push_accompaniment() with latents")
        if audio.dim() == 2:
            audio = audio[None].expand(self.batch, -1, -1)
        if self._encoder is None:
            self.set_accompaniment(torch.zeros(self.batch, self.io, 0))
            self._encoder = self.model.autoencoder.streaming_encoder()
        latents = self._encoder.push(audio.to(self._ae_device, self.model.autoencoder.dtype)).float().cpu()
        self.push_accompaniment(latents)
        return latents.shape[-1]

    def _window_groups(self, start: int, n: int) -> dict[str, torch.Tensor]:
        """The sketch/accompaniment groups for absolute frames [start, start + n), as visible when
        writing the block at `frame` (accompaniment zeroed from frame - cutoff_frames on)."""
        groups = {}
        if self.sketch is not None:
            sketch = _slice(self.sketch, self.sketch_start, start, n)
            groups["sketch"] = torch.cat([torch.zeros_like(sketch) if b == "no_sketch" else sketch
                                          for b in self.branches])
        if self.accompaniment is not None:
            visible = self.frame - self.cutoff_frames - start
            groups["accompaniment"] = self._per_branch(
                _slice(self.accompaniment, self.accompaniment_start, start, min(n, max(visible, 0)), n))
        if self.beat is not None and any(bpm is not None for _, _, bpm in self.beat.segments):
            beat = self.beat.group(start, n)[None].expand(self.batch, -1, -1)
            groups["beat"] = torch.cat([torch.zeros_like(beat) if b == "no_beat" else beat for b in self.branches])
        return groups

    # -- generation -------------------------------------------------------------------------

    @torch.no_grad()
    def next_latents(self) -> torch.Tensor:
        """Generate the next block: latents (batch, io, B) in fp32."""
        noise = self._noise()
        pattern = self.pcfg.pattern
        if pattern == "bidirectional":
            x0 = self._outpaint(noise)
        elif self.pcfg.cache == "none":
            x0 = self._window(noise)
        elif pattern == "enc-dec":
            x0 = self._enc_dec(noise)
        else:
            x0 = self._block_causal(noise)
        self._advance(x0)
        return x0

    # -- audio ------------------------------------------------------------------------------

    @property
    def decoder(self):
        """The streaming decoder of the model's autoencoder, created on first use."""
        if self._decoder is None:
            if self.model.autoencoder is None:
                raise ConfigError("this model has no autoencoder: use next_latents() for latent blocks")
            self._decoder = self.model.autoencoder.streaming_decoder()
        return self._decoder

    def next_block(self) -> torch.Tensor:
        """Generate and decode the next block: audio (batch, channels, samples), float32.

        Decoding is streamed: every sample equals the offline decode of the whole latent stream.
        The decoder holds back `decoder.delay_samples` samples (its look-ahead), so the first
        block is that much shorter and `finish()` returns the held-back tail."""
        latents = self.next_latents()
        return self.decoder.push(latents.to(self._ae_device, self.model.autoencoder.dtype)).float().cpu()

    def finish(self) -> torch.Tensor:
        """End of stream: the decoder's held-back tail (as if the stream stopped here)."""
        return self.decoder.flush().float().cpu()

    def _denoise_fn(self, run_target):
        """Wrap `run_target(x_model_batch, t_model_batch, step) -> raw v` with CFG and tracing."""
        def denoise(x, t, i):
            xin = self._per_branch(x)
            tin = torch.full((xin.shape[0],), t, dtype=torch.float32)
            v = run_target(xin, tin, i).float().cpu()   # a runner may leave out trailing branches (`active_rows`)
            branches = self.branches[: v.shape[0] // self.batch]
            if self.trace is not None:
                self.trace.append({"block": self.block_index, "step": i, "x": xin[: v.shape[0]], "t": t, "v": v})
            if len(branches) == 1:
                return v, None
            parts = dict(zip(branches, v.chunk(len(branches))))
            v_cond, guided = parts["cond"], None
            for name, scale in (("no_text", self.cfg_scale), ("no_sketch", self.sketch_cfg), ("no_beat", self.beat_cfg)):
                if name in parts:
                    g = guide(v_cond, parts[name], scale)
                    guided = g if guided is None else guided + g - v_cond
            uncond = parts.get("no_text", parts.get("no_sketch", parts.get("no_beat")))
            return guided, uncond
        return denoise

    @property
    def _ae_device(self) -> torch.device:
        return next(self.model.autoencoder.parameters()).device

    def _dev(self, x):
        """A tensor or a dict of them on the model's device (no copy on the CPU)."""
        if isinstance(x, dict):
            return {k: v.to(self.device) for k, v in x.items()}
        return x.to(self.device)

    def _target_tokens(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        groups = self._dev(self._window_groups(self.frame, self.B))
        return torch.cat((self.dit.embed_frames(self._dev(x), groups),
                          self.dit.timestep_token(self._dev(t), self.cond)), 1)

    def _context_tokens(self, latents: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        groups = {"context": torch.cat((self._per_branch(mask), self._per_branch(latents)), 1)}
        groups.update(self._window_groups(start, latents.shape[-1]))
        return self.dit.embed_frames(None, self._dev(groups))

    def _empty_mask(self, frames: int) -> torch.Tensor:
        """The known-mask of context frames nothing has filled yet: 0, or 1 where the pattern starts from
        zero latents marked known (`start_context="zeros"`, the authors' sampler)."""
        return torch.full((self.batch, 1, frames), float(self.pcfg.start_context == "zeros"))

    def _window(self, noise):
        """`cache="none"`: every step one masked forward over the whole window, context from the router
        only (its noisy input is zeroed), as the authors' cache-free sampler and training do."""
        groups = {"context": torch.cat((torch.cat((self.history_mask, torch.zeros(self.batch, 1, self.B)), -1),
                                        torch.nn.functional.pad(self.history, (0, self.B))), 1)}
        groups = {k: self._per_branch(v) for k, v in groups.items()}
        groups.update(self._window_groups(self.frame - self.C, self.C + self.B))
        p = self.pcfg

        def run(x, t, i):
            xw = torch.nn.functional.pad(x, (self.C, 0))
            v = self.dit(self._dev(xw), self._dev(t), self.cond, self._dev(groups), pattern=p.pattern,
                         context_frames=self.C, block_frames=self.B, context_chunks=p.context_chunks)
            return v[..., self.C:]

        self.needs_bootstrap = False
        return sample(self._denoise_fn(run), noise, self.sampler, self.guidance, refine=self._refine_fn())

    def _block_causal(self, noise):
        dit, cache = self.dit, self.cache
        if self.needs_bootstrap or not cache.ready:
            cache.bootstrap(dit, self._context_tokens(self.history, self.history_mask, self.frame - self.C),
                            self.cond)
            self.pending, self.needs_bootstrap = None, False
        pending = self.pending

        def run(x, t, i):
            tokens = self._target_tokens(x, t)
            if i == 0 and pending is not None:   # every row: the finished chunk enters each branch's cache
                finished = self._context_tokens(pending, torch.ones(self.batch, 1, self.B), self.frame - self.B)
                h = cache.fused_step(dit, finished, tokens, self.cond)
            else:
                rows = self.active_rows(i)
                h = cache.step(dit, tokens[:rows], self.cond, rows)
            return dit.unembed(h[:, : self.B])

        x0 = sample(self._denoise_fn(run), noise, self.sampler, self.guidance, refine=self._refine_fn())
        self.pending = x0
        return x0

    def _enc_dec(self, noise):
        dit, cache = self.dit, self.cache
        cache.prefill(dit, self._context_tokens(self.history, self.history_mask, self.frame - self.C), self.cond)
        self.needs_bootstrap = False

        def run(x, t, i):
            rows = self.active_rows(i)
            return dit.unembed(cache.step(dit, self._target_tokens(x, t)[:rows], self.cond, rows)[:, : self.B])

        return sample(self._denoise_fn(run), noise, self.sampler, self.guidance, refine=self._refine_fn())

    def _refine_fn(self):
        """Prompt then control guidance of the clean estimates of the block at `frame`; None when
        neither has anything to do."""
        guides = [f for f in (self._prompt_refine(), self._control_refine()) if f is not None]
        if len(guides) < 2:
            return guides[0] if guides else None
        return lambda x0, i: guides[1](guides[0](x0, i), i)

    def _prompt_refine(self):
        g, probe = self.prompt_guidance, self.model.prompt_probe
        if not g.active or probe is None or not self.prompts or not any(text for text, _ in self.prompts):
            return None
        real = int(self.history_mask[0, 0].flip(0).cumprod(0).sum())   # trailing real context frames
        context = self.history[..., self.C - min(real, max(0, PROBE_FRAMES - self.B)):]
        text = self._prompt_embedding.expand(self.batch, -1)

        def refine(x0, i):
            return guide_to_prompt(x0, context, probe, text, g) if g.guides(i, self.steps) else x0
        return refine

    def _control_refine(self):
        g, ae = self.control_guidance, self.model.autoencoder
        if not g.active or self.sketch is None or ae is None:
            return None
        # the audio of the last `lookahead` context frames is only finished by this block's latents, so
        # they are guided too; as much clean context again before them keeps their decode warm
        lookahead = ae.config.decoder_lookahead_frames
        real = int(self.history_mask[0, 0].flip(0).cumprod(0).sum())   # trailing real context frames
        context = self.history[..., self.C - min(real, 2 * lookahead):]
        overlap = min(lookahead, context.shape[-1] // 2)
        target = _slice(self.sketch, self.sketch_start, self.frame - overlap, overlap + self.B)
        if not target[:, 0].any():
            return None

        def refine(x0, i):
            if i < self.steps - g.last_steps:
                return x0
            return guide_x0(x0, context, target, ae, self.model.config.downsampling_ratio, g)
        return refine

    def _outpaint(self, noise):
        """The baseline: the whole window is re-noised and recomputed at every step."""
        target_noise, context_noise = noise
        known, clean = self.history_mask, self.history
        window_noise = [torch.cat((c, n), -1) for c, n in zip(context_noise, target_noise)]
        groups = self._window_groups(self.frame - self.C, self.C + self.B) or None

        def run(x, t, i):
            ctx, tt = x[..., : self.C], float(t[0])
            renoised = (1 - tt) * self._per_branch(clean) + tt * self._per_branch(context_noise[i])
            m = self._per_branch(known)
            x = torch.cat((m * renoised + (1 - m) * ctx, x[..., self.C:]), -1)
            return self.dit(self._dev(x), self._dev(t), self.cond, None if groups is None else self._dev(groups))

        x0 = sample(self._denoise_fn(run), window_noise, self.sampler, self.guidance)
        return x0[..., self.C:]

    def _advance(self, x0: torch.Tensor) -> None:
        keep = self.C
        hist = torch.cat((self.history, x0), -1)
        mask = torch.cat((self.history_mask, torch.ones(self.batch, 1, self.B)), -1)
        self.history, self.history_mask = hist[..., hist.shape[-1] - keep:], mask[..., mask.shape[-1] - keep:]
        self.block_index += 1
        self._frame += self.B
        if self.accompaniment is not None:  # frames before the window are never needed again
            drop = min(max(self.frame - self.C - self.accompaniment_start, 0), self.accompaniment.shape[-1])
            self.accompaniment = self.accompaniment[..., drop:]
            self.accompaniment_start += drop

    def replace_last_block(self, latents: torch.Tensor) -> None:
        """Overwrite the clean latents of the block just generated (what later blocks see as context),
        e.g. to mix live input into the context (generative-delay feedback)."""
        if latents.shape != (self.batch, self.io, self.B):
            raise ShapeError(f"block latents must be {(self.batch, self.io, self.B)}, got {tuple(latents.shape)}")
        self.history[..., self.C - self.B:] = latents.float()
        if self.pending is not None:
            self.pending = latents.float().clone()

    # -- internals --------------------------------------------------------------------------

    def _new_cache(self):
        if self.pcfg.cache == "none":
            return None
        if self.pcfg.pattern == "enc-dec":
            return EncDecCache(self.C, self.B)
        if self.pcfg.pattern == "block-causal":
            return BlockCausalCache(self.B, self.pcfg.context_chunks, "authors" if self.pcfg.cache == "authors" else "exact")
        return None

    def active_rows(self, step: int) -> int | None:
        """The model-batch rows a (non-fused) denoising step must run: beat guidance acts on the first
        `beat_cfg_steps` steps only (where the rhythm is laid down), so after them its branch, always the
        last, is left out; None = every row."""
        if self.beat_cfg_steps and step >= self.beat_cfg_steps and self.branches[-1] == "no_beat":
            return self.batch * (len(self.branches) - 1)
        return None

    def _per_branch(self, x: torch.Tensor) -> torch.Tensor:
        """x repeated for every branch of the model batch."""
        return torch.cat([x] * len(self.branches)) if self.guided else x

    def _encode(self) -> None:
        dtype = self.dit.dtype
        tokens, glob = self.model.encode_prompts(self.prompts, self.seconds_total)
        self.tokens = tokens.to(self.device, dtype)
        self.global_cond = None if glob is None else glob.to(self.device, dtype)
        self._embed_prompt()
        self._condition()

    @torch.no_grad()
    def _embed_prompt(self) -> None:
        """The prompt probe's target for the blended prompt (what prompt guidance aims at). A tempo set
        with `set_bpm` goes into the probe's text, so guidance aims at that tempo's caption rather than the
        prompt's own (the DiT's text stays as given: the beat clock carries the tempo). The probe reads
        tempo words only loosely: a tempo far from the style's own can still lose (model card, limitations)."""
        probe = self.model.prompt_probe
        self._prompt_embedding = None
        if probe is None:
            return
        if self.bpm_mode:
            tokens, glob = self.model.encode_prompts([(with_tempo(t, self.bpm_mode) if t else t, w)
                                                      for t, w in self.prompts], self.seconds_total)
        else:
            tokens, glob = self.tokens, self.global_cond
        text = tokens if glob is None else tokens[:, :-1]   # without SAO's seconds token
        self._prompt_embedding = probe.text_target(pool_tokens(text.float()).to(next(probe.parameters()).dtype)).float().cpu()

    @torch.no_grad()
    def _condition(self) -> None:
        """Cross-attention K/V for the current prompt blend (and the null prompt under CFG)."""
        tokens = self.tokens.expand(self.batch, -1, -1)
        glob = None if self.global_cond is None else self.global_cond.expand(self.batch, -1)
        self._branch_names = self.branches
        # SAO's null condition: zeroed tokens, same global vector
        tokens = torch.cat([torch.zeros_like(tokens) if b == "no_text" else tokens for b in self._branch_names])
        glob = None if glob is None else torch.cat([glob] * len(self._branch_names))
        self.cond = self.dit.condition(tokens, glob)

    def _noise(self):
        gen = torch.Generator().manual_seed(hash((self.seed, self.block_index)) % (2 ** 63))
        target = [torch.randn(self.batch, self.io, self.B, generator=gen) for _ in range(self.steps)]
        if self.pcfg.pattern != "bidirectional":
            return target
        return target, [torch.randn(self.batch, self.io, self.C, generator=gen) for _ in range(self.steps)]

    # -- state ------------------------------------------------------------------------------

    def _meta(self) -> dict:
        return {"version": STATE_VERSION, "model": self.model.config.to_dict(),
                "pattern": dataclasses.asdict(self.pcfg), "block_index": self.block_index, "frame": self._frame,
                "seed": self.seed,
                "steps": self.steps, "cfg_scale": self.cfg_scale, "sketch_cfg": self.sketch_cfg, "beat_cfg": self.beat_cfg,
                "beat_cfg_steps": self.beat_cfg_steps,
                "control_guidance": dataclasses.asdict(self.control_guidance),
                "prompt_guidance": dataclasses.asdict(self.prompt_guidance), "sampler": self.sampler,
                "guidance": self.guidance, "prompts": self.prompts, "batch": self.batch,
                "seconds_total": self.seconds_total, "needs_bootstrap": self.needs_bootstrap,
                "cutoff_frames": self.cutoff_frames, "sketch_start": self.sketch_start,
                "accompaniment_start": self.accompaniment_start, "bpm_mode": self.bpm_mode,
                "beat": None if self.beat is None else [list(seg) for seg in self.beat.segments]}

    def state_dict(self) -> dict:
        """Everything needed to continue bit-exactly: {"meta": JSON-able dict, "tensors": {...}}."""
        tensors = {"history": self.history, "history_mask": self.history_mask, "tokens": self.tokens}
        if self.global_cond is not None:
            tensors["global_cond"] = self.global_cond
        if self.pending is not None:
            tensors["pending"] = self.pending
        if self.cache is not None:
            tensors.update(self.cache.state_dict())
        if self._decoder is not None:
            tensors.update({f"decoder.{k}": v for k, v in self._decoder.state_dict().items()})
        if self.sketch is not None:
            tensors["sketch"] = self.sketch
        if self.accompaniment is not None:
            tensors["accompaniment"] = self.accompaniment
        if self._encoder is not None:
            tensors["encoder.live"] = torch.ones(1)
            tensors.update({f"encoder.{k}": v for k, v in self._encoder.state_dict().items()})
        # on the CPU whatever the device: a state saved on a GPU restores on a CPU and vice versa
        return {"meta": self._meta(), "tensors": {k: v.cpu().clone() for k, v in tensors.items()}}

    def load_state_dict(self, state: dict) -> None:
        try:
            meta, tensors = state["meta"], state["tensors"]
        except (KeyError, TypeError) as e:
            raise StateError("stream state must be a dict with 'meta' and 'tensors'") from e
        if meta.get("version") != STATE_VERSION:
            raise StateError(f"stream state version {meta.get('version')!r}, expected {STATE_VERSION}")
        for key, mine in (("model", self.model.config.to_dict()), ("batch", self.batch)):
            if meta.get(key) != mine:
                raise StateError(f"stream state is from another {key}: {_diff(meta.get(key), mine)}")
        pattern = self.pcfg
        if meta.get("pattern") != dataclasses.asdict(self.pcfg):   # the same model re-blocked: take its block size
            try:
                pattern = PatternConfig(**meta["pattern"])
                self._check_reblock(pattern)
            except (ConfigError, TypeError, KeyError) as e:
                raise StateError(f"stream state is from another pattern: "
                                 f"{_diff(meta.get('pattern'), dataclasses.asdict(self.pcfg))} ({e})") from e
        for key in ("history", "history_mask", "tokens"):
            if key not in tensors:
                raise StateError(f"stream state lacks tensor {key!r}")
        if tensors["history"].shape != (self.batch, self.io, pattern.context_frames):
            raise StateError(f"stream state history has shape {tuple(tensors['history'].shape)}, "
                             f"expected {(self.batch, self.io, pattern.context_frames)}")
        self._repattern(pattern)
        self.block_index, self.seed, self.steps = meta["block_index"], meta["seed"], meta["steps"]
        self._frame = meta.get("frame", self.block_index * self.B)
        self.cfg_scale, self.sampler, self.guidance = meta["cfg_scale"], meta["sampler"], meta["guidance"]
        self.sketch_cfg, self.beat_cfg = meta.get("sketch_cfg", 1.0), meta.get("beat_cfg", 1.0)
        self.beat_cfg_steps = meta.get("beat_cfg_steps", 0)
        self.control_guidance = ControlGuidance(**meta.get("control_guidance", {})).validate()
        self.prompt_guidance = self._check_prompt_guidance(PromptGuidance(**meta.get("prompt_guidance", {})))
        self.prompts, self.seconds_total = check_prompts(meta["prompts"]), meta["seconds_total"]
        self.needs_bootstrap = meta["needs_bootstrap"]
        self.history, self.history_mask = tensors["history"].clone(), tensors["history_mask"].clone()
        self.tokens = tensors["tokens"].to(self.device).clone()
        self.global_cond = tensors["global_cond"].to(self.device).clone() if "global_cond" in tensors else None
        self.pending = tensors["pending"].clone() if "pending" in tensors else None
        if self.cache is not None:
            self.cache.load_state_dict({k: self._dev(v) for k, v in tensors.items() if k.startswith("cache.")},
                                       self.model.config.dit.depth)
        ae_device = self._ae_device if self.model.autoencoder is not None else None
        decoder_state = {k[len("decoder."):]: v.to(ae_device) for k, v in tensors.items() if k.startswith("decoder.")}
        self._decoder = None
        if decoder_state:
            self.decoder.load_state_dict(decoder_state)
        self.cutoff_frames = meta.get("cutoff_frames", self.B)
        self.sketch_start, self.accompaniment_start = meta.get("sketch_start", 0), meta.get("accompaniment_start", 0)
        self.sketch = tensors["sketch"].clone() if "sketch" in tensors else None
        self.accompaniment = tensors["accompaniment"].clone() if "accompaniment" in tensors else None
        self.bpm_mode = meta.get("bpm_mode")
        if self.beat is not None and meta.get("beat"):
            self.beat.segments = [(int(f), float(p), b) for f, p, b in meta["beat"]]
        self._embed_prompt()   # after bpm_mode: a set tempo is part of the probe's text
        self._encoder = None
        if "encoder.live" in tensors:
            self._encoder = self.model.autoencoder.streaming_encoder()
            self._encoder.load_state_dict({k[len("encoder."):]: v.to(ae_device) for k, v in tensors.items()
                                           if k.startswith("encoder.") and k != "encoder.live"})
        self._condition()

    def save(self, path: str | Path) -> None:
        """Write the state to one safetensors file (metadata as JSON)."""
        from safetensors.torch import save_file
        state = self.state_dict()
        save_file({k: v.contiguous() for k, v in state["tensors"].items()}, str(path),
                  metadata={"lmdm_stream": json.dumps(state["meta"])})

    def restore(self, path: str | Path) -> None:
        from safetensors import safe_open
        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {})["lmdm_stream"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error type for corrupt files
            raise StateError(f"{path} is not an lmdm stream state: {e}") from e
        self.load_state_dict({"meta": meta, "tensors": tensors})


def _slice(buf: torch.Tensor, buf_start: int, start: int, visible: int, n: int | None = None) -> torch.Tensor:
    """[mask | values] (batch, 1 + ch, n) for frames [start, start + n) of a buffer that holds frames
    [buf_start, buf_start + len); only the first `visible` frames may be non-zero."""
    n = visible if n is None else n
    b, ch, length = buf.shape
    out = torch.zeros(b, 1 + ch, n)
    lo, hi = max(start, buf_start), min(start + visible, buf_start + length)
    if hi > lo:
        out[:, 0, lo - start:hi - start] = 1
        out[:, 1:, lo - start:hi - start] = buf[..., lo - buf_start:hi - buf_start]
    return out


def _diff(theirs, mine) -> str:
    if isinstance(theirs, dict) and isinstance(mine, dict):
        keys = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        return ", ".join(f"{k}: {_diff(theirs.get(k), mine.get(k))}" for k in keys)
    return f"{theirs!r} != {mine!r}"
