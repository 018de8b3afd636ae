"""A toy guidance in one file (the registry's test, `test_guidance_registry`): a refiner that shifts
the clean estimate of a block's last denoising step by its strength."""
from dataclasses import dataclass

from lmdm.config import Range
from lmdm.engine.guidance import Refiner, register
from lmdm.errors import ConfigError


@dataclass
class Shift:
    strength: float = 0.0

    def validate(self) -> "Shift":
        if not 0.0 <= self.strength <= 1.0:
            raise ConfigError(f"toy shift must be in [0, 1], got {self.strength}")
        return self

    @property
    def active(self) -> bool:
        return self.strength > 0


class ToyShift(Refiner):
    name, settings, range = "toy_shift", Shift, Range(0, 1, what="0 = off")

    def refiner(self, stream, g: Shift):
        if not g.active:
            return None
        last = stream.steps - 1
        return lambda x0, i: x0 + g.strength if i == last else x0


TOY = register(ToyShift())
