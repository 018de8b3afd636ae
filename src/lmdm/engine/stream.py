"""Stream: one endless generation session, one latent block per call.

The stream keeps the clean context window (the last C frames, with a mask saying which frames are
real), the KV cache of its attention pattern, the blended prompt conditioning and a seeded noise
source. Noise for block n comes from a generator seeded by (seed, n), so the same seed gives the
same blocks, and a restored state continues bit-exactly.

Prompt changes take effect at the next block: cross-attention K/V are recomputed at once, so the
target follows the new prompt immediately. Block-causal context K/V were computed under the old
prompt; they are recomputed (re-bootstrap) when the dominant prompt changes, and kept when only
the blend weights move (SPEC §2), so morphing sliders never stall the stream.

The block size can change mid-stream (`set_block_frames`, block-causal and enc-dec): the clean
context carries over (as much of it as the new window holds), the cache is rebuilt from it at the
next block (a bootstrap, as after a dominant prompt change), the decoder keeps running, so the
audio continues without a seam the decoder did not already smooth.

Frames are counted on one absolute axis: the next block's target starts at frame `frame`
(block_index * B while B is unchanged), its context is [frame - C, frame); context primed with
`set_context` sits at negative frames. Timed inputs (`lmdm.engine.inputs`: the sketch, the
accompaniment, the beat clock; `inputs`) give their input groups on that axis, used only when set,
so a stream without them computes exactly what it did before. Each frame's group values are those
visible when its tokens are computed: enc-dec recomputes the context every block (so it sees every
input frame once older than the cutoff); the block-causal cache freezes a chunk's values when it
enters the cache (at the fused step after it was written, when only its frames before
`frame - cutoff_frames` are visible; with cutoff >= B a block-causal model sees accompaniment only
through a (re-)bootstrap, so use cutoff_frames < B there). The reference for both is `DiT.forward`
over the window / the stream since bootstrap with those values.

Guidance (`lmdm.engine.guidance`; one setting per registered guidance in `guidance_settings`, changed
with `set_guidance`) runs as branches of one model batch (`branches`: the stream's batch once for the
prompt and inputs, then once per active branch guidance with one conditioning left out; each branch
keeps its own cache rows) and as refiners of the clean estimate between denoising steps.
"""
from __future__ import annotations

import numbers
from pathlib import Path

import torch

from . import guidance as registry
from . import runners, state
from ..config import PatternConfig, SamplingConfig
from ..errors import ConfigError, ShapeError
from ..models.conditioners import Prompts, check_prompts, dominant
from ..nn.fast import pack_linears
from .cache import BlockCausalCache, EncDecCache
from .inputs import Accompaniment, Beat, Sketch
from .sampling import guide

STATE_VERSION = state.STATE_VERSION


def _input_field(name: str, attr: str) -> property:
    return property(lambda s: getattr(s.inputs[name], attr), lambda s, v: setattr(s.inputs[name], attr, v))


def _guidance_field(name: str, attr: str | None = "strength") -> property:
    return property(lambda s: s.guidance_settings[name] if attr is None else getattr(s.guidance_settings[name], attr))


class Stream:
    # the timed inputs' state under the names it always had
    sketch, sketch_start = _input_field("sketch", "values"), _input_field("sketch", "start")
    accompaniment, accompaniment_start = _input_field("accompaniment", "values"), _input_field("accompaniment", "start")
    cutoff_frames = _input_field("accompaniment", "cutoff_frames")
    beat, bpm_mode = _input_field("beat", "clock"), _input_field("beat", "bpm_mode")
    # the built-in guidance settings, read-only (changed with `set_guidance` or the set_* wrappers)
    cfg_scale, sketch_cfg, beat_cfg = (_guidance_field(n) for n in ("cfg_scale", "sketch_cfg", "beat_cfg"))
    beat_cfg_steps = _guidance_field("beat_cfg", "steps")
    control_guidance = _guidance_field("control_guidance", None)
    prompt_guidance = _guidance_field("prompt_guidance", None)

    def __init__(self, model, prompt: Prompts | str = "", *, sampling: SamplingConfig | None = None,
                 seed: int | None = None, steps: int | None = None, cfg_scale: float | None = None,
                 sampler: str = "pingpong", guidance: str = "cfg", context: torch.Tensor | None = None,
                 batch: int = 1, seconds_total: float | None = None, pattern: PatternConfig | None = None,
                 sketch: torch.Tensor | None = None, accompaniment: torch.Tensor | None = None,
                 cutoff_frames: int | None = None, sketch_cfg: float | None = None, control_guidance=None,
                 bpm: float | None = None, prompt_guidance=None, beat_cfg: float | None = None,
                 beat_cfg_steps: int | None = None, **more_guidance):
        """`sampling` carries the per-request knobs; a keyword argument of the same name that is not None
        overrides it, and knobs left unset take the model's defaults (its config.json). Any registered
        guidance takes its strength by its name (`**more_guidance`); a refiner also takes its settings
        object whole (e.g. `control_guidance=ControlGuidance(0.3, iterations=2)`). `guidance` is the
        sampler's guidance rule ("cfg" or "cfg++", `lmdm.engine.sampling`)."""
        strengths = {"cfg_scale": cfg_scale, "sketch_cfg": sketch_cfg, "beat_cfg": beat_cfg,
                     "control_guidance": control_guidance, "prompt_guidance": prompt_guidance, **more_guidance}
        whole = {k: strengths.pop(k) for k in list(strengths)   # settings objects, not strengths
                 if strengths[k] is not None and not isinstance(strengths[k], numbers.Real)}
        knobs = (sampling or SamplingConfig()).merged(seed=seed, steps=steps, bpm=bpm, cutoff_frames=cutoff_frames,
                                                      beat_cfg_steps=beat_cfg_steps, **strengths).validate()
        self.model, self.dit = model, pack_linears(model.dit)
        # the stream's own buffers (context, inputs, noise, sampler state) stay on the CPU: small, and
        # seeded noise and saved states do not depend on the device; the DiT, its cache and the
        # codec run wherever the model is (`model.to("cuda")`), fed through `_dev`
        self.device = next(model.dit.parameters()).device
        if pattern is None and knobs.block_frames is not None:
            from .generate import block_pattern
            pattern = block_pattern(model, knobs.block_frames)
        self.pcfg = pattern or model.config.pattern
        self.pcfg.validate()
        self.io, self.B, self.C = model.config.dit.io_channels, self.pcfg.block_frames, self.pcfg.context_frames
        self.seed, self.steps = 0 if knobs.seed is None else knobs.seed, knobs.steps or model.config.steps
        self.sampler, self.guidance, self.batch, self.seconds_total = sampler, guidance, batch, seconds_total
        self.guidance_settings = {}   # guidance name -> its setting on this stream, in registry order
        for g in registry.REGISTRY.values():
            setting = g.resolve(whole.get(g.name, knobs.guidance.get(g.name)), knobs.guidance_steps.get(g.name),
                                model.config)
            self.guidance_settings[g.name] = g.check(self, setting)
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
        cutoff = self.B if knobs.cutoff_frames is None else knobs.cutoff_frames
        self.inputs = {"sketch": Sketch(), "accompaniment": Accompaniment(cutoff), "beat": Beat(model)}
        if sketch is not None:
            self.set_sketch(sketch)
        if accompaniment is not None:
            self.set_accompaniment(accompaniment)
        if context is not None:
            self.set_context(context)
        self.prompts = check_prompts(prompt)
        self.set_bpm(knobs.bpm)
        self._encode()

    # -- controls ---------------------------------------------------------------------------

    @property
    def branches(self) -> tuple[str, ...]:
        """The model batch, one copy of the stream's batch per branch: "cond" (prompt and inputs), then
        one per branch guidance that is on and applies (`lmdm.engine.guidance`): "no_text" under CFG,
        "no_sketch" with sketch guidance and a sketch set, "no_beat" with beat guidance while the clock
        runs. v = v_cond + sum_b (scale_b - 1)(v_cond - v_b)."""
        return ("cond",) + tuple(b.row for b in registry.branches()
                                 if self.guidance_settings[b.name].strength != b.off and b.applies(self))

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

    def set_guidance(self, name: str, strength: float, steps: int | None = None) -> None:
        """A registered guidance's strength (and steps, where it has them; None = unchanged) from the
        next block on; its name is its knob ("cfg_scale", "prompt_guidance", ...)."""
        g = registry.get(name)
        self.guidance_settings[name] = g.check(self, g.with_strength(self.guidance_settings[name], strength, steps))
        self._sync_branches()

    def set_cfg(self, scale: float) -> None:
        self.set_guidance("cfg_scale", scale)

    def set_beat_cfg(self, scale: float, steps: int | None = None) -> None:
        """Guidance on the beat clock (1 = off): how much harder than trained the output keeps its tempo,
        on the first `steps` denoising steps (0: all; None: unchanged)."""
        self.set_guidance("beat_cfg", scale, steps)

    def set_sketch_cfg(self, scale: float) -> None:
        """Guidance on the sketch (1 = off): how much harder than trained the output follows it."""
        self.set_guidance("sketch_cfg", scale)

    def set_control_guidance(self, strength: float) -> None:
        """Control guidance on the sketch through the decoder (`lmdm.engine.control_guidance`; 0 = off)."""
        self.set_guidance("control_guidance", strength)

    def set_prompt_guidance(self, strength: float) -> None:
        """Prompt guidance through the model's prompt probe (`lmdm.engine.prompt_guidance`; 0 = off)."""
        self.set_guidance("prompt_guidance", strength)

    def _sync_branches(self) -> None:
        if self.branches != self._branch_names:  # the model batch changes, so do the conditioning and the cache
            self._condition()
            self.needs_bootstrap = True

    @torch.no_grad()
    def _prepare_guidance(self) -> None:
        for g in registry.REGISTRY.values():
            g.prepare(self)

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
        self.inputs["beat"].set_mode(self, bpm)
        self._sync_beat()
        if hasattr(self, "tokens"):   # not while __init__ runs: _encode follows
            self._prepare_guidance()

    def _sync_beat(self) -> None:
        if self.beat is not None:
            self.inputs["beat"].sync(self)
            if self._branch_names:   # beat guidance adds a branch while the clock runs
                self._sync_branches()

    @property
    def frame(self) -> int:
        """Absolute latent frame where the next block's target starts."""
        return self._frame

    def set_sketch(self, controls: torch.Tensor | None, start: int | None = None, kernel: int = 1) -> None:
        """Normalised sketch controls (3, frames) or (batch, 3, frames) (see `lmdm.engine.sketch`) for frames
        start.. (default: the next block's target), median-filtered with `kernel`; None clears.
        Takes effect from the next block; frames already in a block-causal cache keep their old values."""
        self.inputs["sketch"].set(self, controls, self.frame if start is None else int(start), kernel)
        if self._branch_names:   # set after construction: sketch guidance may add or drop a branch
            self._sync_branches()

    def set_accompaniment(self, latents: torch.Tensor | None, start: int | None = None) -> None:
        """Accompaniment latents (io, frames) or (batch, io, frames) for frames start.. (default: the
        next block's target), replacing any buffered ones; None clears (and resets live input)."""
        self.inputs["accompaniment"].set(self, latents, self.frame if start is None else int(start))

    def push_accompaniment(self, latents: torch.Tensor) -> None:
        """Append accompaniment latents right after those buffered (the first push starts at `frame`)."""
        self.inputs["accompaniment"].push(self, latents)

    def push_input(self, audio: torch.Tensor) -> int:
        """Live input audio (channels, samples) or (batch, channels, samples) → the streaming encoder →
        the accompaniment buffer. Input sample 0 (of the first push) is aligned with the frame that was
        `frame` then; latents arrive `encoder.lookahead_samples` late. Returns the frames added."""
        return self.inputs["accompaniment"].push_input(self, audio)

    def _window_groups(self, start: int, n: int) -> dict[str, torch.Tensor]:
        """The timed inputs' groups for absolute frames [start, start + n), as visible when writing the
        block at `frame`, per branch (zero in the rows of a branch that leaves the input out)."""
        groups = {}
        for timed in self.inputs.values():
            if timed.active:
                g = timed.window(self, start, n)
                groups[timed.group] = torch.cat([torch.zeros_like(g) if registry.drops(b) == timed.group else g
                                                 for b in self.branches])
        return groups

    # -- generation -------------------------------------------------------------------------

    @torch.no_grad()
    def next_latents(self) -> torch.Tensor:
        """Generate the next block: latents (batch, io, B) in fp32."""
        x0 = runners.denoise_block(self, self._noise())
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
        return self.decoder.push(latents.to(self.ae_device, self.model.autoencoder.dtype)).float().cpu()

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
            v_cond, guided, ran = parts["cond"], None, [b for b in registry.branches() if b.row in parts]
            for b in ran:
                g = guide(v_cond, parts[b.row], self.guidance_settings[b.name].strength)
                guided = g if guided is None else guided + g - v_cond
            uncond = parts[ran[0].row]
            return guided, uncond
        return denoise

    @property
    def ae_device(self) -> torch.device:
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

    def _refine_fn(self):
        """The refiners' corrections of the clean estimates of the block at `frame`, in registry order
        (prompt, then control guidance); None when none has anything to do."""
        fns = [f for g in registry.refiners() if (f := g.refiner(self, self.guidance_settings[g.name])) is not None]
        if len(fns) < 2:
            return fns[0] if fns else None

        def refine(x0, i):
            for f in fns:
                x0 = f(x0, i)
            return x0
        return refine

    def real_context(self, frames: int) -> torch.Tensor:
        """The last (at most `frames`) context frames that hold real latents, (batch, io, k)."""
        real = int(self.history_mask[0, 0].flip(0).cumprod(0).sum())   # trailing real context frames
        return self.history[..., self.C - min(real, frames):]

    def _advance(self, x0: torch.Tensor) -> None:
        keep = self.C
        hist = torch.cat((self.history, x0), -1)
        mask = torch.cat((self.history_mask, torch.ones(self.batch, 1, self.B)), -1)
        self.history, self.history_mask = hist[..., hist.shape[-1] - keep:], mask[..., mask.shape[-1] - keep:]
        self.block_index += 1
        self._frame += self.B
        for timed in self.inputs.values():
            timed.advance(self)

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
        """The model-batch rows a (non-fused) denoising step must run: a branch guidance with `steps`
        acts on the first `steps` denoising steps only (beat guidance: where the rhythm is laid down),
        and its rows come last, so after them they are left out; None = every row."""
        rows, by_row = len(self.branches), {b.row: b for b in registry.branches()}
        while rows > 1:
            steps = self.guidance_settings[by_row[self.branches[rows - 1]].name].steps
            if not (steps and step >= steps):
                break
            rows -= 1
        return None if rows == len(self.branches) else self.batch * rows

    def _per_branch(self, x: torch.Tensor) -> torch.Tensor:
        """x repeated for every branch of the model batch."""
        return torch.cat([x] * len(self.branches)) if self.guided else x

    def _encode(self) -> None:
        dtype = self.dit.dtype
        tokens, glob = self.model.encode_prompts(self.prompts, self.seconds_total)
        self.tokens = tokens.to(self.device, dtype)
        self.global_cond = None if glob is None else glob.to(self.device, dtype)
        self._prepare_guidance()
        self._condition()

    @torch.no_grad()
    def _condition(self) -> None:
        """Cross-attention K/V for the current prompt blend (and the null prompt under CFG)."""
        tokens = self.tokens.expand(self.batch, -1, -1)
        glob = None if self.global_cond is None else self.global_cond.expand(self.batch, -1)
        self._branch_names = self.branches
        # SAO's null condition: zeroed tokens, same global vector
        tokens = torch.cat([torch.zeros_like(tokens) if registry.drops(b) == "text" else tokens
                            for b in self._branch_names])
        glob = None if glob is None else torch.cat([glob] * len(self._branch_names))
        self.cond = self.dit.condition(tokens, glob)

    def _noise(self):
        gen = torch.Generator().manual_seed(hash((self.seed, self.block_index)) % (2 ** 63))
        target = [torch.randn(self.batch, self.io, self.B, generator=gen) for _ in range(self.steps)]
        if self.pcfg.pattern != "bidirectional":
            return target
        return target, [torch.randn(self.batch, self.io, self.C, generator=gen) for _ in range(self.steps)]

    # -- state (`lmdm.engine.state`) ---------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue bit-exactly: {"meta": JSON-able dict, "tensors": {...}}."""
        return state.state_dict(self)

    def load_state_dict(self, saved: dict) -> None:
        state.load_state_dict(self, saved)

    def save(self, path: str | Path) -> None:
        """Write the state to one safetensors file (metadata as JSON)."""
        state.save(self, path)

    def restore(self, path: str | Path) -> None:
        state.restore(self, path)
