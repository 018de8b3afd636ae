"""Control guidance as a refiner: the sketch enforced through the decoder at the last denoising steps
of a block (`lmdm.engine.control_guidance` holds the differentiable controls and the update)."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .base import Refiner, register


@dataclass
class ControlGuidance:
    """`strength`: RMS distance (in unit-variance latent units) x0 moves per iteration; 0 = off.
    `last_steps`: it runs at the last this many denoising steps (earlier estimates are too blurry
    to be worth the decoder). `iterations`: gradient steps per denoising step."""
    strength: float = 0.0
    iterations: int = 5
    last_steps: int = 2

    def validate(self) -> "ControlGuidance":
        if not 0.0 <= self.strength <= 2.0:
            raise ConfigError(f"control guidance strength must be in [0, 2], got {self.strength}")
        if self.iterations < 1 or self.last_steps < 1:
            raise ConfigError(f"control guidance needs iterations >= 1 and last_steps >= 1, "
                              f"got {self.iterations} and {self.last_steps}")
        return self

    @property
    def active(self) -> bool:
        return self.strength > 0


class Control(Refiner):
    name, model_field, settings = "control_guidance", "control_guidance", ControlGuidance

    def refiner(self, stream, g: ControlGuidance):
        ae, sketch = stream.model.autoencoder, stream.inputs["sketch"]
        if not g.active or not sketch.active or ae is None:
            return None
        from ..control_guidance import guide_x0
        # the audio of the last `lookahead` context frames is only finished by this block's latents, so
        # they are guided too; as much clean context again before them keeps their decode warm
        lookahead = ae.config.decoder_lookahead_frames
        context = stream.real_context(2 * lookahead)
        overlap = min(lookahead, context.shape[-1] // 2)
        target = sketch.window(stream, stream.frame - overlap, overlap + stream.B)
        if not target[:, 0].any():
            return None
        hop, first = stream.model.config.downsampling_ratio, stream.steps - g.last_steps

        def refine(x0, i):
            return x0 if i < first else guide_x0(x0, context, target, ae, hop, g)
        return refine


register(Control())
