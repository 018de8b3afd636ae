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
"""
from __future__ import annotations

import struct
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
MAGIC = b"LMDM"
HEADER = struct.Struct("<4sBBHQII")
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<i2")}
FORMATS = {"f32": 0, "i16": 1}
MAX_TEXT_BYTES = 64 * 1024          # a control message is tiny; anything larger is a mistake or abuse
MAX_INPUT_BYTES = 512 * 1024        # one input frame: ~1.5 s of stereo float32 at 44.1 kHz
MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 500
MODES = ("text", "sketch", "accompaniment", "generative_delay")
IMPLEMENTED_MODES = ("text",)


class ProtocolError(ValueError):
    """A message from a client that the server cannot accept; the text goes back to that client."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int | None = None  # echoed in the ack/error so a client can match answers to requests


class PromptItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    weight: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 1.0


Prompts = Annotated[list[PromptItem], Field(min_length=1, max_length=MAX_PROMPTS)]


class Start(_Msg):
    """Play. Optional fields set the session up first (same as sending each control)."""
    type: Literal["start"]
    prompts: Prompts | None = None
    seed: Annotated[int, Field(ge=0, lt=2 ** 63)] | None = None
    steps: Annotated[int, Field(ge=1, le=64)] | None = None
    cfg: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] | None = None
    format: Literal["f32", "i16"] | None = None
    # "realtime": generate at most `lead` seconds ahead of the wall clock (a player);
    # "none": as fast as the client reads (scripts, tests, rendering)
    pace: Literal["realtime", "none"] | None = None
    lead: Annotated[float, Field(ge=0.05, le=10, allow_inf_nan=False)] | None = None
    # most blocks generated but not yet sent; a control reaches the audio at most this many blocks late
    ahead: Annotated[int, Field(ge=1, le=64)] | None = None


class Stop(_Msg):
    type: Literal["stop"]


class SetPrompts(_Msg):
    type: Literal["prompts"]
    prompts: Prompts


class SetWeights(_Msg):
    """New weights for the current prompts, in order (a slider move: no re-bootstrap unless the
    dominant prompt changes)."""
    type: Literal["weights"]
    weights: Annotated[list[Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]],
                       Field(min_length=1, max_length=MAX_PROMPTS)]


class SetCfg(_Msg):
    type: Literal["cfg"]
    scale: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)]


class SetSteps(_Msg):
    type: Literal["steps"]
    steps: Annotated[int, Field(ge=1, le=64)]


class SetSeed(_Msg):
    type: Literal["seed"]
    seed: Annotated[int, Field(ge=0, lt=2 ** 63)]


class SetMode(_Msg):
    type: Literal["mode"]
    mode: Literal[MODES]


class SetMix(_Msg):
    """Dry/wet: wet scales the generated audio; dry (the live input) is kept for when jamming lands."""
    type: Literal["mix"]
    dry: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    wet: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 1.0


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


Control = Annotated[Union[Start, Stop, SetPrompts, SetWeights, SetCfg, SetSteps, SetSeed, SetMode, SetMix,
                          Reset, SaveState, LoadState], Field(discriminator="type")]
_control = TypeAdapter(Control)
_TAGS = {m.model_fields["type"].annotation.__args__[0] for m in Control.__origin__.__args__}


def parse_control(text: str | bytes) -> Control:
    """JSON text → a validated control message, or ProtocolError with a readable reason."""
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError(f"control message of {len(text)} bytes exceeds the limit of {MAX_TEXT_BYTES}")
    try:
        msg = _control.validate_json(text)
    except ValidationError as e:
        raise ProtocolError(_describe(e)) from None
    if isinstance(msg, SetMode) and msg.mode not in IMPLEMENTED_MODES:
        raise ProtocolError(f"mode {msg.mode!r} is not implemented yet in the engine; "
                            f"available: {', '.join(IMPLEMENTED_MODES)}")
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


def decode_frame(data: bytes, max_bytes: int | None = None) -> tuple[int, int, np.ndarray]:
    """One binary frame → (block index, sample rate, float32 audio (channels, samples))."""
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
    return index, rate, audio / 32767.0 if code == 1 else audio
