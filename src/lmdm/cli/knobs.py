"""The sampling flags the commands share, built from the guidance registry (`lmdm.engine.guidance`):
one float flag per registered guidance (its `cli_flag`, `metavar` and `help`), the flag a user typed
for each SamplingConfig knob (so an error names it), and the strengths given, by guidance name. A
guidance registered before the parser is built is a flag of generate, accompany, live, eval and
bench with no edit here; a command may word a built-in flag its own way (`wording`)."""
from __future__ import annotations

from ..engine import guidance

# the flag of each SamplingConfig field that is not a guidance strength
FIELD_FLAGS = {"seconds": "--seconds", "seed": "--seed", "steps": "--steps", "block_frames": "--block",
               "sketch_strength": "--sketch-strength", "bpm": "--bpm", "cutoff_frames": "--cutoff"}


def labels() -> dict[str, str]:
    """SamplingConfig name -> the flag a user typed ({"cfg_scale": "--cfg", ...})."""
    return {**FIELD_FLAGS, **{g.name: g.cli_flag for g in guidance.REGISTRY.values()}}


def add_guidance_flags(parser, wording: dict[str, dict] | None = None, default=None, only=None) -> None:
    """One flag per registered guidance (those `only(g)` keeps), in registry order. `wording`: this
    command's own argparse keywords (help, metavar, default) for some guidance by name; the rest get
    the guidance's own."""
    for g in guidance.REGISTRY.values():
        if only is not None and not only(g):
            continue
        options = {"type": float, "default": default, "metavar": g.metavar, "help": g.help,
                   **(wording or {}).get(g.name, {})}
        parser.add_argument(g.cli_flag, **options)


def guidance_values(args) -> dict[str, float]:
    """The guidance strengths given on the command line by guidance name (flags left out: absent)."""
    return {g.name: getattr(args, g.dest) for g in guidance.REGISTRY.values()
            if getattr(args, g.dest, None) is not None}
