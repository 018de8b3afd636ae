"""Prompt specs as typed on a command line: weighted blends and timed changes.

    "funky bass groove"                      one prompt, from the start
    "dub techno:0.7|choir:0.3"               a blend (weights are normalised by the model)
    "dub techno@0s"  "choir@30s"             a change at 30 s (applied at the next block boundary)
    "dub techno:0.7|choir:0.3@12.5s"         a blend that starts at 12.5 s

A weight is a number after the last ':' of a part, a time a number (optionally followed by 's')
after the last '@' of the spec; anything else is prompt text, so "ratio 3:4 polyrhythm" stays text
because what follows the last ':' is not a number. Anything that reads as a number there (signed,
with an exponent, nan, inf) is a weight or a time, checked against its range (`config.KNOBS`):
"a:-1" and "b@-5s" are errors, never prompt text. `lmdm generate --prompts` and
`lmdm live --headless --script` both read this syntax.
"""
from __future__ import annotations

import re

from ..config import check_knob
from ..errors import ConfigError, PromptError
from ..models.conditioners import Prompts, check_prompts

# anything Python's float() would read: a sign, an exponent, nan, inf; its range is checked after
_NUMBER = r"([-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?))"
_TIME = re.compile(r"@\s*" + _NUMBER + r"\s*s?\s*$", re.IGNORECASE)
_WEIGHT = re.compile(r":\s*" + _NUMBER + r"\s*$", re.IGNORECASE)


def _number(knob: str, text: str, spec: str) -> float:
    try:
        return check_knob(knob, float(text), f"{'weight' if knob == 'weight' else 'time'} {text!r} in {spec!r}")
    except ConfigError as e:
        raise PromptError(str(e)) from None

Schedule = list[tuple[float, Prompts]]


def parse_blend(spec: str) -> Prompts:
    """'A:0.7|B:0.3' -> [('A', 0.7), ('B', 0.3)]; a part without a weight weighs 1."""
    prompts = []
    for part in spec.split("|"):
        m = _WEIGHT.search(part)
        text, weight = (part[:m.start()], _number("weight", m.group(1), spec)) if m else (part, 1.0)
        if not text.strip():
            raise PromptError(f"empty prompt text in {spec!r} (write 'text:weight|text:weight')")
        prompts.append((text.strip(), weight))
    return check_prompts(prompts)


def parse_schedule(specs: list[str] | str) -> Schedule:
    """Prompt specs -> [(start seconds, prompts)] sorted by time, starting at 0. An untimed spec
    starts at 0; only one spec may start at 0 and no two at the same time."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise PromptError("no prompt given")
    schedule = []
    for spec in specs:
        m = _TIME.search(spec)
        start, body = (_number("prompt_time", m.group(1), spec), spec[:m.start()]) if m else (0.0, spec)
        schedule.append((start, parse_blend(body)))
    schedule.sort(key=lambda item: item[0])
    times = [t for t, _ in schedule]
    if times[0] != 0:
        raise PromptError(f"the first prompt must start at 0 s (got {times[0]:g} s): add '@0s' to one of them")
    if len(set(times)) != len(times):
        raise PromptError(f"two prompts start at the same time in {specs}: give each a distinct '@SECONDSs'")
    return schedule


def as_schedule(prompt) -> Schedule:
    """A prompt string, weighted Prompts or a Schedule -> a Schedule (validated)."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], tuple) and not isinstance(prompt[0][0], str):
        schedule = sorted(((float(t), check_prompts(p)) for t, p in prompt), key=lambda item: item[0])
        if schedule[0][0] != 0:
            raise PromptError("a prompt schedule must start at 0 s")
        return schedule
    return [(0.0, check_prompts(prompt))]
