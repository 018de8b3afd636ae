"""Prompt guidance as a refiner: the clean estimate pushed towards the prompt's embedding through the
model's prompt probe, in latent space, at the middle denoising steps (`lmdm.engine.prompt_guidance`
holds the probe and the update)."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .base import Refiner, register


@dataclass
class PromptGuidance:
    """`strength`: RMS distance (unit-variance latent units) x0 moves per iteration; 0 = off.
    `iterations`: gradient steps per guided denoising step. `first_step` / `last_step`: the guided
    denoising steps (0-based, inclusive; negative counts from the end). `instrument_weight`: the
    instrument term's weight against the similarity term (probes with instrument heads only)."""
    strength: float = 0.0
    iterations: int = 4
    first_step: int = 1
    last_step: int = -2
    instrument_weight: float = 0.5

    def validate(self) -> "PromptGuidance":
        if not 0.0 <= self.strength <= 2.0:
            raise ConfigError(f"prompt guidance strength must be in [0, 2], got {self.strength}")
        if self.instrument_weight < 0:
            raise ConfigError(f"prompt guidance needs instrument_weight >= 0, got {self.instrument_weight}")
        if self.iterations < 1:
            raise ConfigError(f"prompt guidance needs iterations >= 1, got {self.iterations}")
        return self

    @property
    def active(self) -> bool:
        return self.strength > 0

    def guides(self, step: int, steps: int) -> bool:
        first, last = (s % steps if s < 0 else s for s in (self.first_step, self.last_step))
        return first <= step <= last


class Prompt(Refiner):
    name, model_field, settings = "prompt_guidance", "prompt_guidance", PromptGuidance

    def check(self, stream, g: PromptGuidance) -> PromptGuidance:
        if g.validate().active and stream.model.prompt_probe is None:
            raise ConfigError("prompt guidance needs a model with a prompt probe (config prompt_probe; "
                              "`lmdm train prompt-probe`)")
        return g

    def prepare(self, stream) -> None:
        """The probe's target for the blended prompt (`stream._prompt_embedding`). A tempo set with
        `set_bpm` goes into the probe's text, so guidance aims at that tempo's caption rather than the
        prompt's own (the DiT's text stays as given: the beat clock carries the tempo). The probe reads
        tempo words only loosely: a tempo far from the style's own can still lose (model card, limitations)."""
        probe = stream.model.prompt_probe
        stream._prompt_embedding = None
        if probe is None:
            return
        from ..beat import with_tempo
        from ..prompt_guidance import pool_tokens
        if stream.bpm_mode:
            tokens, glob = stream.model.encode_prompts([(with_tempo(t, stream.bpm_mode) if t else t, w)
                                                        for t, w in stream.prompts], stream.seconds_total)
        else:
            tokens, glob = stream.tokens, stream.global_cond
        text = tokens if glob is None else tokens[:, :-1]   # without SAO's seconds token
        dtype = next(probe.parameters()).dtype
        stream._prompt_embedding = probe.text_target(pool_tokens(text.float()).to(dtype)).float().cpu()

    def refiner(self, stream, g: PromptGuidance):
        probe = stream.model.prompt_probe
        if not g.active or probe is None or not stream.prompts or not any(text for text, _ in stream.prompts):
            return None
        from ..prompt_guidance import PROBE_FRAMES, guide_to_prompt
        context = stream.real_context(max(0, PROBE_FRAMES - stream.B))
        text, steps = stream._prompt_embedding.expand(stream.batch, -1), stream.steps

        def refine(x0, i):
            return guide_to_prompt(x0, context, probe, text, g) if g.guides(i, steps) else x0
        return refine


register(Prompt())
