"""The wire protocol of `lmdm live`: JSON control messages (pydantic) and binary PCM frames.

One WebSocket per session (`/ws`). Text frames carry JSON, binary frames carry audio.

Binary frame = 24-byte little-endian header + planar PCM (channel 0's samples, then channel 1's):

    offset size field
    0      4    magic  b"LMDM"
    4      1    version (1)
    5      1    dtype: 0 = float32, 1 = int16 (full scale 32767)
    6      2    channels (u16)
    8      8    block index (u64): server → client, the session's block counter, gapless from 0;
                client → server (microphone input), the client's own running counter
    16     4    sample rate (u32)
    20     4    samples per channel (u32)

The header is a multiple of 4 bytes, so a browser can view the payload as a Float32Array /
Int16Array without copying. Planar, because audio is (channels, samples) everywhere in lmdm.

Control messages (client → server) are objects with a "type" field, validated strictly: an
unknown type or field, a wrong type or an out-of-range value is answered with an "error" message
and nothing else happens. Every accepted control is answered with
    {"type": "ack", "cmd": <type>, "id": <id or null>, "block": <first block index it applies to>}
in order with the audio, so the block it names is the first block generated under the change.
A control the engine cannot carry out (e.g. a mode the model cannot do) is answered with
{"type": "error", "cmd": <type>, "id": ..., "message": ...} instead; the session carries on unchanged.
A control superseded while it waited (a later control of the same type, e.g. the next position of
a dragged slider, replaced it in the session's queue; `scheduler._superseded`) is answered with
{"type": "ack", "cmd": <type>, "id": ..., "block": null, "superseded": true}: the later one carries
the value. At most `scheduler.MAX_CONTROLS` controls wait per session; the server reads no more from a
client until there is room (backpressure). `save` keeps at most `session.MAX_SLOTS` slots per session
and the server's `--max-saved-mb` in total; past either it answers an error naming the limit.

Modes ({"type": "mode", "mode": ...}; `hello` / `GET /api/info` list `supported_modes`):
- "text": prompts only; upstream audio is counted and ignored.
- "accompaniment": upstream audio → the model's streaming encoder → `Stream.push_input`. Input
  sample 0 is the first upstream sample received after the mode message, aligned with the first
  block generated in the mode (the block the ack names): output sample n of that block is time-
  aligned with input sample n. Block j of the mode sees only input latent frames before
  j * block_frames - cutoff_frames ({"type": "cutoff", "frames": n}; default `cutoff_frames` in hello).
- "sketch": loudness / brightness / pitch curves at the latent frame rate (`lmdm.engine.sketch`), from the
  upstream audio (block j of the mode follows input block j) or from {"type": "sketch", "curves":
  {...}} (drawn curves, frames from the block the ack names; "curves": null = back to the input).
  {"type": "sketch_strength", "strength": 0..1} sets the median-filter kernel (1 = follow exactly);
  {"type": "sketch_cfg", "scale": 0..20} the guidance on the sketch (`Stream.sketch_cfg`; 1 = off,
  default the model's `sketch_cfg_scale`, in hello); {"type": "control_guidance", "strength": 0..2}
  enforces the sketch's loudness and brightness through the decoder (`lmdm.engine.control_guidance`; 0 = off).
  Live sessions start with it off (`default_control_guidance` 0 in hello) whatever the model's offline
  default: it costs decoder passes per block (about 1x real time at 0.3 on two CPU cores).
- prompt guidance (models with a prompt probe, `prompt_probe` true in hello; `lmdm.engine.prompt_guidance`):
  {"type": "prompt_guidance", "strength": 0..2} (0 = off); sessions start at the model's own
  (`default_prompt_guidance` in hello): it works in latent space and costs little real time.
- beat clock (every mode but generative_delay; `beat_clock` in hello says whether the model has one):
  {"type": "bpm", "bpm": n}: null follows the prompt's "... N BPM" (the default), 0 lets the model
  choose, 30..300 fixes the tempo (`lmdm.engine.beat`; the beat's phase stays continuous across changes).
- "generative_delay": `lmdm.engine.delay.DelayStream` (a fresh stream) fed one upstream block per output
  block; the prompt sets the timbre; {"type": "feedback", "feedback": 0..1} (1 = the model continues
  its own output, 0 = its context is the lagged input) and "cutoff" (a multiple of block_frames;
  lag = (1 + cutoff / block_frames) blocks = `delay_lag_samples` in hello for the default).
In every input mode the upstream audio drives the clock: block j of the mode is generated once the
input it needs has arrived (with pace "realtime", after 0.5 s without any input the missing input
is taken as silence so the stream keeps going). Output = wet * generated + dry * input, the input
aligned as above ({"type": "mix", "dry": .., "wet": ..}; in generative_delay the dry input is
delayed by the lag, so it lines up with the model's answer to it). Switching mode applies at the
next block boundary, like every control, and restarts the input timeline (input received before
the mode message is dropped); "reset" restarts it too.

Upstream audio (client → server binary frames, same header): any channel count (mixed down /
duplicated to the model's), any rate (resampled linearly to the model's), float32 or int16;
at most MAX_INPUT_BYTES per frame and MAX_INPUT_SECONDS buffered; the samples are concatenated in
arrival order (the block index field is informational). A malformed frame (short, wrong size,
bad header, NaN / infinite samples) is answered with {"type": "error", "cmd": "input", ...} and
dropped; the session keeps running.
"""
from __future__ import annotations

import struct
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..config import KNOBS


def _knob(name: str):
    """A field type with the knob's range from `config.KNOBS`, the one table the CLI and API check too."""
    r = KNOBS[name]
    bounds = {"gt" if r.lo_open else "ge": int(r.lo) if r.integer else r.lo, "le": int(r.hi) if r.integer else r.hi}
    return Annotated[int, Field(**bounds)] if r.integer else Annotated[float, Field(**bounds, allow_inf_nan=False)]

PROTOCOL_VERSION = 1
MAGIC = b"LMDM"
HEADER = struct.Struct("<4sBBHQII")
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<i2")}
FORMATS = {"f32": 0, "i16": 1}
MAX_TEXT_BYTES = 64 * 1024          # a control message is tiny; anything larger is a mistake or abuse
MAX_INPUT_BYTES = 512 * 1024        # one input frame: ~1.5 s of stereo float32 at 44.1 kHz
MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 500
MAX_INPUT_SECONDS = 30.0            # upstream audio queued but not yet consumed by the engine
MODES = ("text", "sketch", "accompaniment", "generative_delay")
SKETCH_CURVES = ("loudness", "centroid", "pitch")
MAX_CURVE_POINTS = 4096


class ProtocolError(ValueError):
    """A message from a client that the server cannot accept; the text goes back to that client."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int | None = None  # echoed in the ack/error so a client can match answers to requests


class PromptItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    weight: _knob("weight") = 1.0


Prompts = Annotated[list[PromptItem], Field(min_length=1, max_length=MAX_PROMPTS)]


class Start(_Msg):
    """Play. Optional fields set the session up first (same as sending each control)."""
    type: Literal["start"]
    prompts: Prompts | None = None
    seed: _knob("seed") | None = None
    steps: _knob("steps") | None = None
    cfg: _knob("cfg_scale") | None = None
    format: Literal["f32", "i16"] | None = None
    # "realtime": generate at most `lead` seconds ahead of the wall clock (a player);
    # "none": as fast as the client reads (scripts, tests, rendering)
    pace: Literal["realtime", "none"] | None = None
    lead: _knob("lead") | None = None
    # most blocks generated but not yet sent; a control reaches the audio at most this many blocks late
    ahead: _knob("ahead") | None = None
    block: _knob("block_frames") | None = None   # as SetBlock


class SetBlock(_Msg):
    """Block size in latent frames (the control latency): text mode, block-causal and enc-dec models
    (`Stream.set_block_frames`; block-causal keeps C' = (C // B) * B frames of context). The music
    carries on; binary frames then carry the new number of samples. Switching to an input mode
    returns to the model's block size (their input timelines are counted in its blocks)."""
    type: Literal["block"]
    frames: _knob("block_frames")


class Stop(_Msg):
    type: Literal["stop"]


class SetPrompts(_Msg):
    type: Literal["prompts"]
    prompts: Prompts


class SetWeights(_Msg):
    """New weights for the current prompts, in order (a slider move: no re-bootstrap unless the
    dominant prompt changes)."""
    type: Literal["weights"]
    weights: Annotated[list[_knob("weight")],
                       Field(min_length=1, max_length=MAX_PROMPTS)]


class SetCfg(_Msg):
    type: Literal["cfg"]
    scale: _knob("cfg_scale")


class SetSteps(_Msg):
    type: Literal["steps"]
    steps: _knob("steps")


class SetSeed(_Msg):
    type: Literal["seed"]
    seed: _knob("seed")


class SetMode(_Msg):
    type: Literal["mode"]
    mode: Literal[MODES]


class SetMix(_Msg):
    """Dry/wet gains: output = wet * generated + dry * the live input (aligned; input modes only)."""
    type: Literal["mix"]
    dry: _knob("gain") = 0.0
    wet: _knob("gain") = 1.0


class SetFeedback(_Msg):
    """Generative delay: context = feedback * the model's own output + (1 - feedback) * lagged input."""
    type: Literal["feedback"]
    feedback: _knob("feedback")


class SetCutoff(_Msg):
    """Accompaniment / generative delay: the last `frames` latent frames of input before a block are
    not seen by it (the latency budget). Generative delay needs a multiple of block_frames."""
    type: Literal["cutoff"]
    frames: _knob("cutoff_frames")


Curve = Union[Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(max_length=MAX_CURVE_POINTS)],
              Annotated[list[tuple[Annotated[float, Field(ge=0, allow_inf_nan=False)],
                                   Annotated[float, Field(allow_inf_nan=False)]]],
                        Field(min_length=1, max_length=MAX_CURVE_POINTS)]]


class SetSketch(_Msg):
    """Drawn sketch curves (units as `lmdm.engine.sketch.controls_from_curves`: loudness dB, centroid Hz,
    pitch Hz with 0 = unvoiced), one value per latent frame or [[seconds, value], ...], from the
    block the ack names; `seconds` (default: the curves' own length) is how long they last.
    None: follow the upstream audio again."""
    type: Literal["sketch"]
    curves: dict[Literal[SKETCH_CURVES], Curve] | None = None
    seconds: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] | None = None


class SetSketchStrength(_Msg):
    """1 follows the sketch exactly, 0 keeps only its coarsest shape (`strength_to_kernel`)."""
    type: Literal["sketch_strength"]
    strength: _knob("sketch_strength")


class SetSketchCfg(_Msg):
    """Guidance on the sketch: 1 = off, > 1 follows it harder (one more model call per step)."""
    type: Literal["sketch_cfg"]
    scale: _knob("sketch_cfg")


class SetControlGuidance(_Msg):
    """Control guidance through the decoder: 0 = off, 0.3 typical (decoder passes at the last steps)."""
    type: Literal["control_guidance"]
    strength: _knob("control_guidance")


class SetPromptGuidance(_Msg):
    """Prompt guidance through the model's prompt probe: 0 = off, the model's default in hello."""
    type: Literal["prompt_guidance"]
    strength: _knob("prompt_guidance")


class SetBpm(_Msg):
    """The beat clock (models with a `beat` group, `beat_clock` true in hello): null follows the prompt's
    "... N BPM", 0 = free tempo, 30..300 a fixed tempo; a change keeps the beat's phase continuous."""
    type: Literal["bpm"]
    bpm: _knob("bpm") | None = None


class Reset(_Msg):
    """Forget the music so far (empty context, fresh decoder); settings and block counter stay."""
    type: Literal["reset"]


class SaveState(_Msg):
    """Snapshot the stream into a named in-memory slot of this session (no server-side paths)."""
    type: Literal["save"]
    slot: Annotated[str, Field(min_length=1, max_length=64)] = "default"


class LoadState(_Msg):
    type: Literal["load"]
    slot: Annotated[str, Field(min_length=1, max_length=64)] = "default"


Control = Annotated[Union[Start, Stop, SetPrompts, SetWeights, SetCfg, SetSteps, SetSeed, SetBlock, SetMode, SetMix,
                          SetFeedback, SetCutoff, SetSketch, SetSketchStrength, SetSketchCfg, SetControlGuidance,
                          SetPromptGuidance, SetBpm, Reset, SaveState, LoadState],
                    Field(discriminator="type")]
_control = TypeAdapter(Control)
_TAGS = {m.model_fields["type"].annotation.__args__[0] for m in Control.__origin__.__args__}


def parse_control(text: str | bytes, strict: bool = True) -> Control:
    """JSON text → a validated control message, or ProtocolError with a readable reason. `strict`
    (WebSocket clients): JSON types as declared, so "3" or 3.5 is no number of steps; OSC passes
    False, since controllers send every value as a float (3.0 steps is 3 there)."""
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError(f"control message of {len(text)} bytes exceeds the limit of {MAX_TEXT_BYTES}")
    try:
        msg = _control.validate_json(text, strict=strict)
    except ValidationError as e:
        raise ProtocolError(_describe(e)) from None
    return msg


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:4]:
        loc = err["loc"][1:] if err["loc"] and err["loc"][0] in _TAGS else err["loc"]  # drop the union tag
        where = ".".join(str(p) for p in loc) or "message"
        if err["type"] == "json_invalid":
            parts.append(f"malformed JSON: {err['msg']}")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif err["type"] == "union_tag_invalid":
            parts.append(f"unknown message type {err['input'].get('type')!r}" if isinstance(err["input"], dict)
                         else err["msg"])
        else:
            parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


# -- binary frames --------------------------------------------------------------------------

def encode_frame(audio: np.ndarray, index: int, sample_rate: int, fmt: str = "f32") -> bytes:
    """(channels, samples) float audio → one binary frame."""
    code = FORMATS[fmt]
    audio = np.asarray(audio, dtype=np.float32)
    if fmt == "i16":
        audio = np.round(np.clip(audio, -1.0, 1.0) * 32767.0)
    payload = np.ascontiguousarray(audio, dtype=DTYPES[code]).tobytes()
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, code, audio.shape[0], index, sample_rate, audio.shape[1]) + payload


def decode_frame(data: bytes, max_bytes: int | None = None, finite: bool = False) -> tuple[int, int, np.ndarray]:
    """One binary frame → (block index, sample rate, float32 audio (channels, samples)); `finite`:
    reject NaN / infinite samples (upstream input)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise ProtocolError(f"binary frame of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < HEADER.size:
        raise ProtocolError(f"binary frame of {len(data)} bytes is shorter than the {HEADER.size}-byte header")
    magic, version, code, channels, index, rate, samples = HEADER.unpack_from(data)
    if magic != MAGIC or version != PROTOCOL_VERSION:
        raise ProtocolError(f"binary frame has magic {magic!r} version {version}, expected {MAGIC!r} "
                            f"version {PROTOCOL_VERSION}")
    if code not in DTYPES or not 1 <= channels <= 8 or not 1000 <= rate <= 384000:
        raise ProtocolError(f"binary frame header invalid: dtype {code}, channels {channels}, rate {rate}")
    dtype = DTYPES[code]
    if len(data) - HEADER.size != channels * samples * dtype.itemsize:
        raise ProtocolError(f"binary frame payload is {len(data) - HEADER.size} bytes, header says "
                            f"{channels} x {samples} x {dtype.itemsize}")
    audio = np.frombuffer(data, dtype, offset=HEADER.size).reshape(channels, samples).astype(np.float32)
    if finite and code == 0 and not np.isfinite(audio).all():
        raise ProtocolError("binary frame contains NaN or infinite samples")
    return index, rate, audio / 32767.0 if code == 1 else audio
