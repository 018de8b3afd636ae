"""The guidance protocol: what every guidance declares, and the registry the stream iterates over.

Two kinds:
- a `Branch` adds rows to the model batch: the stream's batch again with one conditioning left out
  (`drops`: "text", or an input group's name), combined per step as
  v = v_cond + sum_b (scale_b - 1)(v_cond - v_b); e.g. CFG (the null prompt), sketch and beat guidance;
- a `Refiner` corrects the clean estimate x0 between denoising steps; e.g. prompt and control guidance.

Each guidance is one module in this package holding one instance passed to `register`; registration
order is the order of the branches in the batch and of the refiners on x0. A guidance's `name` is its
knob everywhere: the `SamplingConfig` / `Stream` keyword, `Stream.set_guidance`, the key of its range
in `config.KNOBS` and of its value in a saved stream state. This package imports no torch (the
command line lists guidance without it): the heavy code is imported where a guidance runs."""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from ...config import GUIDANCE_KNOBS, KNOBS, Range, check_knob
from ...errors import ConfigError

REGISTRY: dict[str, "Guidance"] = {}


@dataclass
class Scale:
    """A branch's setting on one stream: its scale (1 = off) and, for guidance that acts on the first
    denoising steps only, how many (0 = every step)."""
    strength: float
    steps: int = 0


class Guidance:
    name: str = ""                  # its knob (see the module docstring)
    model_field: str = ""           # the ModelConfig field holding the model's default strength ("" = `off`)
    steps_field: str = ""           # the ModelConfig field holding its default steps ("" = none)
    off: float = 0.0                # the strength that turns it off
    range: Range | None = None      # a new knob's range (built-in knobs have theirs in config.KNOBS)

    def default(self, model_config) -> float:
        return float(getattr(model_config, self.model_field)) if self.model_field else self.off

    def default_steps(self, model_config) -> int | None:
        return int(getattr(model_config, self.steps_field)) if self.steps_field else None

    def resolve(self, value, steps, model_config):
        """A stream's setting from a constructor argument: None = the model's default, a number = that
        strength, or a ready setting (a refiner's settings dataclass)."""
        if value is not None and not isinstance(value, numbers.Real):
            return value.validate()
        strength = self.default(model_config) if value is None else value
        return self.setting(strength, self.default_steps(model_config) if steps is None else steps)

    def setting(self, strength: float, steps: int | None = None) -> Any:
        """The per-stream setting for a checked strength (and steps, where it has them)."""
        raise NotImplementedError

    def with_strength(self, setting, strength: float, steps: int | None = None):
        """`setting` with a new strength (and steps, None = unchanged)."""
        raise NotImplementedError

    def check(self, stream, setting):
        """The setting, or a ConfigError when this stream's model cannot take it."""
        return setting

    def prepare(self, stream) -> None:
        """Called when the stream's prompts or tempo change (or a state is restored): cache what the
        guidance needs per prompt."""

    def to_meta(self, setting) -> dict:
        """Its entries in a saved stream state (the v1 names)."""
        raise NotImplementedError

    def from_meta(self, meta: dict):
        raise NotImplementedError


class Branch(Guidance):
    row: str = ""                   # its name in `Stream.branches` ("no_text")
    drops: str = ""                 # what its rows leave out: "text" or an input group's name
    off = 1.0

    def applies(self, stream) -> bool:
        """Whether the stream has what this branch leaves out (a sketch, a running clock)."""
        return True

    def setting(self, strength, steps=None) -> Scale:
        steps = 0 if steps is None else int(steps)
        if steps < 0:
            raise ConfigError(f"{self.name} steps must be >= 0 (0 = every step), got {steps}")
        return Scale(check_knob(self.name, strength), steps)

    def with_strength(self, setting: Scale, strength, steps=None) -> Scale:
        return self.setting(strength, setting.steps if steps is None else steps)

    def to_meta(self, setting: Scale) -> dict:
        return {self.name: setting.strength, **({self.name + "_steps": setting.steps} if self.steps_field else {})}

    def from_meta(self, meta: dict) -> Scale:
        return Scale(meta.get(self.name, self.off), meta.get(self.name + "_steps", 0))


class Refiner(Guidance):
    settings: type = object         # its settings dataclass, with at least `strength`, `validate()`, `active`

    def refiner(self, stream, setting) -> Callable | None:
        """refine(x0, step) -> x0 for the block the stream writes next; None when there is nothing to do."""
        raise NotImplementedError

    def setting(self, strength, steps=None):
        if steps is not None:
            raise ConfigError(f"{self.name} takes no steps")
        return self.settings(float(strength)).validate()   # validate() names the range

    def with_strength(self, setting, strength, steps=None):
        if steps is not None:
            raise ConfigError(f"{self.name} takes no steps")
        return dataclasses.replace(setting, strength=float(strength)).validate()

    def to_meta(self, setting) -> dict:
        return {self.name: dataclasses.asdict(setting)}

    def from_meta(self, meta: dict):
        return self.settings(**meta.get(self.name, {})).validate()


def register(guidance: Guidance) -> Guidance:
    """Add a guidance (after those registered before it); a new knob brings its range."""
    if not guidance.name or guidance.name in REGISTRY:
        raise ConfigError(f"a guidance needs a new name, got {guidance.name!r}")
    if guidance.name not in KNOBS:
        if guidance.range is None:
            raise ConfigError(f"guidance {guidance.name!r} needs a range (config.KNOBS has none for it)")
        KNOBS[guidance.name] = guidance.range
    if guidance.name not in GUIDANCE_KNOBS:
        GUIDANCE_KNOBS.append(guidance.name)
    REGISTRY[guidance.name] = guidance
    return guidance


def get(name: str) -> Guidance:
    if name not in REGISTRY:
        raise ConfigError(f"unknown guidance {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def branches() -> list[Branch]:
    return [g for g in REGISTRY.values() if isinstance(g, Branch)]


def refiners() -> list[Refiner]:
    return [g for g in REGISTRY.values() if isinstance(g, Refiner)]


def drops(row: str) -> str:
    """What the rows of branch `row` leave out ("" for "cond")."""
    return next((b.drops for b in branches() if b.row == row), "")


def unregister(name: str) -> None:
    """Remove a guidance registered with a new knob (tests, plug-ins that unload); built-in knobs stay."""
    REGISTRY.pop(name, None)
    if name in GUIDANCE_KNOBS and name not in _BUILT_IN:
        GUIDANCE_KNOBS.remove(name)
        KNOBS.pop(name, None)


_BUILT_IN = tuple(GUIDANCE_KNOBS)
