"""Exact streaming twins of the spectral codec's layers (lmdm.models.codec).

Each twin has step(x) -> the output so far (None when there is none yet), flush() -> the rest at
the end of the stream, reset(), and state(prefix) / load_state(state, prefix) as plain tensors, like
those of lmdm.models.streaming_conv, so the Oobleck streamers (`StreamingDecoder`, `StreamingEncoder`)
drive them unchanged. Every codec layer is causal, so no twin waits for samples ahead: each keeps
only the past its next output needs (a conv's last kernel - 1 frames, the STFT's last n_fft - hop
samples, the overlap-add's unfinished n_fft - hop samples), and computes each output once.
"""
from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


def _clone(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.clone()


class Flat:
    """Adapter: the Oobleck streamers push (B, C, 1, T); the twins here work on (B, C, T)."""

    def __init__(self, twin):
        self.twin = twin

    def reset(self) -> None:
        self.twin.reset()

    def state(self, prefix: str) -> dict[str, Tensor]:
        return self.twin.state(prefix)

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.twin.load_state(state, prefix)

    def step(self, x: Tensor) -> Tensor | None:
        y = self.twin.step(x.squeeze(2) if x.dim() == 4 else x)
        return None if y is None else y.unsqueeze(2)

    def flush(self) -> Tensor | None:
        y = self.twin.flush()
        return None if y is None else y.unsqueeze(2)


class _Buffered:
    """A twin holding one tensor `buf` of input still needed."""

    def reset(self) -> None:
        self.buf: Tensor | None = None

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {} if self.buf is None else {prefix + "buf": self.buf}

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.buf = _clone(state.get(prefix + "buf"))

    def _join(self, x: Tensor, initial: int) -> Tensor:
        if self.buf is None:
            self.buf = x.new_zeros(*x.shape[:-1], initial)
        return torch.cat((self.buf, x), -1)

    def flush(self) -> Tensor | None:
        self.buf = None   # causal: no right padding, nothing more to emit
        return None


class CausalConvTwin(_Buffered):
    def __init__(self, conv: nn.Conv1d):
        self.conv = conv
        self.reset()

    def step(self, x: Tensor) -> Tensor | None:
        if x.shape[-1] == 0:
            self.buf = self.buf if self.buf is not None else x.new_zeros(*x.shape[:-1], self.conv.left)
            return None
        buf = self._join(x, self.conv.left)
        self.buf = buf[..., buf.shape[-1] - self.conv.left:].clone()
        return nn.Conv1d.forward(self.conv, buf)


class ConvNeXtTwin:
    """The depthwise conv emits one frame per input frame, so the skip needs no delay."""

    def __init__(self, block: nn.Module):
        self.block, self.dw = block, CausalConvTwin(block.dwconv)

    def reset(self) -> None:
        self.dw.reset()

    def state(self, prefix: str) -> dict[str, Tensor]:
        return self.dw.state(prefix + "dw.")

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.dw.load_state(state, prefix + "dw.")

    def step(self, x: Tensor) -> Tensor | None:
        h = self.dw.step(x)
        return None if h is None else x + self.block.branch(h)

    def flush(self) -> None:
        self.dw.flush()


class GroupTwin(_Buffered):
    """Frame-group layers (FrameDownsample): runs on whole groups of `factor` frames."""

    def __init__(self, module: nn.Module, factor: int):
        self.module, self.factor = module, factor
        self.reset()

    def step(self, x: Tensor) -> Tensor | None:
        buf = self._join(x, 0)
        n = buf.shape[-1] // self.factor * self.factor
        self.buf = buf[..., n:].clone()
        return self.module(buf[..., :n]) if n else None


class FrameTwin(_Buffered):
    """STFT framing: keeps the last n_fft - hop samples and any part of a hop."""

    def __init__(self, front: nn.Module):
        self.front = front
        self.reset()

    def step(self, x: Tensor) -> Tensor | None:
        n, h = self.front.n_fft, self.front.hop
        buf = self._join(x, n - h)
        count = (buf.shape[-1] - n) // h + 1
        if count <= 0:
            self.buf = buf
            return None
        self.buf = buf[..., count * h:].clone()
        return self.front.spectra(buf[..., :(count - 1) * h + n].unfold(-1, n, h))


class OverlapAddTwin:
    """Overlap-add with the last n_fft - hop samples (still missing later frames) held back."""

    def __init__(self, head: nn.Module):
        self.head = head
        self.reset()

    def reset(self) -> None:
        self.tail: Tensor | None = None
        self.to_skip = self.head.n_fft - self.head.hop   # frame 0 starts this early: the offline crop
        self.frames = 0                                  # frames synthesised so far (the phase advance)

    def state(self, prefix: str) -> dict[str, Tensor]:
        out = {prefix + "to_skip": torch.tensor(self.to_skip), prefix + "frames": torch.tensor(self.frames)}
        return out if self.tail is None else {**out, prefix + "tail": self.tail}

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.tail = _clone(state.get(prefix + "tail"))
        self.to_skip = int(state[prefix + "to_skip"])
        self.frames = int(state[prefix + "frames"])

    def _emit(self, y: Tensor) -> Tensor | None:
        skip = min(self.to_skip, y.shape[-1])
        self.to_skip -= skip
        y = y[:, skip:]
        if not y.shape[-1]:
            return None
        return y.reshape(-1, self.head.audio_channels, y.shape[-1]).to(self.head.proj.weight.dtype)

    def step(self, h: Tensor) -> Tensor | None:
        t = h.shape[-1]
        if t == 0:
            return None
        y = self.head.overlap_add(self.head.frames(self.head.spectra(h, self.frames)))
        self.frames += t
        if self.tail is not None:
            y[:, :self.tail.shape[-1]] += self.tail
        self.tail = y[:, t * self.head.hop:].clone()
        return self._emit(y[:, :t * self.head.hop])

    def flush(self) -> Tensor | None:
        if self.tail is None:
            return None
        tail, self.tail = self.tail, None
        return self._emit(tail)
