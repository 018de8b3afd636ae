"""Timed inputs: the time-aligned conditioning a stream gives the model besides its context window —
the sketch, the accompaniment and the beat clock (SPEC §4; `lmdm.engine.sketch`, `lmdm.engine.beat`).

Each is one channel group of `model.config.dit.input_groups` and keeps its values on the stream's
absolute frame axis. It says whether it feeds the model now (`active`), gives its group for frames
[start, start + n) as visible while the stream writes the block at `stream.frame` (`window`: [mask |
values], mask 0 where it has nothing), forgets frames no window needs again (`advance`) and saves and
restores its state (`meta`, `tensors`, `load`: the v1 state names). The stream keeps one of each, in
this order, which is the order their groups are added into a frame's token; an input left unused
changes nothing, so a stream without inputs computes what it did before they existed."""
from __future__ import annotations

import torch

from ..errors import ConfigError, ShapeError
from .beat import BeatClock, bpm_from_prompts, check_bpm
from .sketch import median_filter


class TimedInput:
    group = ""

    @property
    def active(self) -> bool:
        raise NotImplementedError

    def window(self, stream, start: int, n: int) -> torch.Tensor:
        raise NotImplementedError

    def advance(self, stream) -> None:
        """After a block: drop what no later window reads."""

    def meta(self) -> dict:
        return {}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load(self, stream, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def checked(self, stream, x: torch.Tensor | None, channels: int, what: str) -> torch.Tensor | None:
        """x (channels, frames) or (batch, channels, frames) as a float copy for the stream's batch."""
        if x is None:
            return None
        groups = stream.model.config.dit.input_groups
        if self.group not in groups:
            raise ConfigError(f"this model has no {self.group!r} input group (dit.input_groups: {sorted(groups)})")
        if x.dim() == 2:
            x = x[None].expand(stream.batch, -1, -1)
        if x.dim() != 3 or x.shape[:2] != (stream.batch, channels):
            raise ShapeError(f"{what} must be ({channels}, frames) or ({stream.batch}, {channels}, frames), "
                             f"got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ShapeError(f"{what} contain NaN or infinite values")
        return x.float().clone()


class Sketch(TimedInput):
    """Normalised controls (batch, 3, n) from frame `start`, given to every frame they cover."""
    group = "sketch"

    def __init__(self):
        self.values: torch.Tensor | None = None
        self.start = 0

    @property
    def active(self) -> bool:
        return self.values is not None

    def set(self, stream, controls: torch.Tensor | None, start: int, kernel: int = 1) -> None:
        controls = self.checked(stream, controls, 3, "sketch controls")
        self.values = None if controls is None else median_filter(controls, kernel)
        self.start = start

    def window(self, stream, start, n):
        return window(self.values, self.start, start, n)

    def meta(self):
        return {"sketch_start": self.start}

    def tensors(self):
        return {} if self.values is None else {"sketch": self.values}

    def load(self, stream, meta, tensors):
        self.start = meta.get("sketch_start", 0)
        self.values = tensors["sketch"].clone() if "sketch" in tensors else None


class Accompaniment(TimedInput):
    """Latents (batch, io, n) from frame `start`, given to frames before `frame - cutoff_frames` only,
    so the block being written never depends on the last `cutoff_frames` frames of input before it.
    Live audio arrives through the model's streaming encoder (`push_input`)."""
    group = "accompaniment"

    def __init__(self, cutoff_frames: int):
        if cutoff_frames < 0:
            raise ConfigError(f"cutoff_frames must be >= 0, got {cutoff_frames}")
        self.values: torch.Tensor | None = None
        self.start, self.cutoff_frames = 0, cutoff_frames
        self.encoder = None

    @property
    def active(self) -> bool:
        return self.values is not None

    def set(self, stream, latents: torch.Tensor | None, start: int) -> None:
        self.values = self.checked(stream, latents, stream.io, "accompaniment latents")
        self.start = start
        if latents is None:
            self.encoder = None

    def push(self, stream, latents: torch.Tensor) -> None:
        latents = self.checked(stream, latents, stream.io, "accompaniment latents")
        if self.values is None:
            self.set(stream, latents, stream.frame)
        else:
            self.values = torch.cat((self.values, latents), -1)

    def push_input(self, stream, audio: torch.Tensor) -> int:
        ae = stream.model.autoencoder
        if ae is None:
            raise ConfigError("this model has no autoencoder: use push_accompaniment() with latents")
        if audio.dim() == 2:
            audio = audio[None].expand(stream.batch, -1, -1)
        if self.encoder is None:
            self.set(stream, torch.zeros(stream.batch, stream.io, 0), stream.frame)
            self.encoder = ae.streaming_encoder()
        latents = self.encoder.push(audio.to(stream.ae_device, ae.dtype)).float().cpu()
        self.push(stream, latents)
        return latents.shape[-1]

    def window(self, stream, start, n):
        visible = stream.frame - self.cutoff_frames - start
        return window(self.values, self.start, start, min(n, max(visible, 0)), n)

    def advance(self, stream):
        if self.values is not None:   # frames before the window are never needed again
            drop = min(max(stream.frame - stream.C - self.start, 0), self.values.shape[-1])
            self.values, self.start = self.values[..., drop:], self.start + drop

    def meta(self):
        return {"cutoff_frames": self.cutoff_frames, "accompaniment_start": self.start}

    def tensors(self):
        out = {} if self.values is None else {"accompaniment": self.values}
        if self.encoder is not None:
            out["encoder.live"] = torch.ones(1)
            out.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        return out

    def load(self, stream, meta, tensors):
        self.cutoff_frames = meta.get("cutoff_frames", stream.B)
        self.start = meta.get("accompaniment_start", 0)
        self.values = tensors["accompaniment"].clone() if "accompaniment" in tensors else None
        self.encoder = None
        if "encoder.live" in tensors:
            self.encoder = stream.model.autoencoder.streaming_encoder()
            self.encoder.load_state_dict({k[len("encoder."):]: v.to(stream.ae_device) for k, v in tensors.items()
                                          if k.startswith("encoder.") and k != "encoder.live"})


class Beat(TimedInput):
    """The beat clock of a model with a `beat` group: `bpm_mode` None follows the prompts' tempo, a
    number fixes it, 0 stops the clock (free tempo); the phase stays continuous across changes."""
    group = "beat"

    def __init__(self, model):
        self.clock = (BeatClock(model.config.frame_seconds, delay_frames=model.config.beat_lead_frames)
                      if self.group in model.config.dit.input_groups else None)
        self.bpm_mode: float | None = None

    @property
    def active(self) -> bool:
        return self.clock is not None and any(bpm is not None for _, _, bpm in self.clock.segments)

    def set_mode(self, stream, bpm: float | None) -> None:
        if bpm is not None and bpm != 0:
            bpm = check_bpm(bpm)
            if self.clock is None:
                raise ConfigError(f"this model has no 'beat' input group (dit.input_groups: "
                                  f"{sorted(stream.model.config.dit.input_groups)}), so it cannot follow a set tempo")
        self.bpm_mode = bpm

    def sync(self, stream) -> None:
        """The clock's tempo from the next block on, from the mode and the stream's prompts."""
        if self.clock is not None:
            bpm = bpm_from_prompts(stream.prompts) if self.bpm_mode is None else (self.bpm_mode or None)
            self.clock.set_bpm(bpm, stream.frame)

    def window(self, stream, start, n):
        return self.clock.group(start, n)[None].expand(stream.batch, -1, -1)

    def meta(self):
        return {"bpm_mode": self.bpm_mode,
                "beat": None if self.clock is None else [list(seg) for seg in self.clock.segments]}

    def load(self, stream, meta, tensors):
        self.bpm_mode = meta.get("bpm_mode")
        if self.clock is not None and meta.get("beat"):
            self.clock.segments = [(int(f), float(p), b) for f, p, b in meta["beat"]]


def window(buf: torch.Tensor, buf_start: int, start: int, visible: int, n: int | None = None) -> torch.Tensor:
    """[mask | values] (batch, 1 + ch, n) for frames [start, start + n) of a buffer that holds frames
    [buf_start, buf_start + len); only the first `visible` frames may be non-zero."""
    n = visible if n is None else n
    b, ch, length = buf.shape
    out = torch.zeros(b, 1 + ch, n)
    lo, hi = max(start, buf_start), min(start + visible, buf_start + length)
    if hi > lo:
        out[:, 0, lo - start:hi - start] = 1
        out[:, 1:, lo - start:hi - start] = buf[..., lo - buf_start:hi - buf_start]
    return out
