"""Exact streaming encode and decode of the Oobleck VAE: `StreamingDecoder` (latent blocks in,
every complete audio sample out) and `StreamingEncoder` (live audio in, latent frames out), each
equal to the offline `Autoencoder.encode` / `decode` of everything pushed.

They run the streaming twin (`streaming_conv.streaming`) of the autoencoder's encoder or decoder;
`Autoencoder.streaming_decoder()` / `streaming_encoder()` make them.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ShapeError
from .autoencoder_config import check_signal
from .streaming_conv import from_channels_last, streaming, to_channels_last

Tensor = torch.Tensor


class _Streamer:
    """What StreamingDecoder and StreamingEncoder share: input checks, layout, counters, flush."""

    def __init__(self, model: nn.Module, module: nn.Module, in_channels: int, out_channels: int, what: str):
        # model: the Autoencoder (not imported: it imports this module)
        self.model = model
        self._twin = streaming(module)
        self._in, self._out, self._what = in_channels, out_channels, what
        self.reset()

    def reset(self) -> None:
        """Forget everything pushed so far: the next push starts a new stream."""
        self._twin.reset()
        self._batch: int | None = None
        self._dtype = torch.float32
        self.consumed = 0  # input frames (decoder) / samples (encoder) pushed since the last reset
        self.produced = 0  # output samples (decoder) / frames (encoder) returned since the last reset

    def state_dict(self) -> dict[str, Tensor]:
        """Everything pushed so far that still matters, as tensors: load it into a fresh streamer
        of the same model and the stream continues bit-exactly."""
        if self._batch is None:
            return {}
        counters = torch.tensor([self._batch, self.consumed, self.produced])
        return {"counters": counters, **self._twin.state("twin.")}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.reset()
        if "counters" in state:
            self._batch, self.consumed, self.produced = (int(v) for v in state["counters"])
            self._twin.load_state(state, "twin.")

    def _out_tensor(self, y: Tensor | None) -> Tensor:
        if y is None:
            return torch.zeros(self._batch or 0, self._out, 0, dtype=self._dtype, device=self.model.device)
        self.produced += y.shape[-1]
        return from_channels_last(y[:, :self._out]).to(self._dtype)  # encoder: the mean half

    def _push(self, x: Tensor) -> Tensor:
        check_signal(x, self._in, self._what, min_length=0)
        if self._batch is not None and x.shape[0] != self._batch:
            raise ShapeError(f"{self._what} batch {x.shape[0]} differs from this stream's batch {self._batch}; "
                             "reset() first")
        self._batch, self._dtype = x.shape[0], x.dtype
        self.consumed += x.shape[-1]
        with torch.no_grad():
            return self._out_tensor(self._twin.step(to_channels_last(x.to(self.model.dtype))))

    def _finish(self) -> Tensor | None:
        return self._twin.flush()

    def flush(self) -> Tensor:
        """End of stream: everything still held back (the offline result's right edge); then reset()."""
        with torch.no_grad():
            out = self._out_tensor(self._finish() if self._batch is not None else None)
        self.reset()
        return out


class StreamingDecoder(_Streamer):
    """Latent blocks of any size in, every audio sample whose receptive field is complete out.

    The concatenation of all `push` outputs and the final `flush()` equals `Autoencoder.decode` of
    all the latents (same arithmetic, each sample computed once). Output lags input by
    `delay_samples` audio samples: after N frames pushed, N * ratio - delay_samples samples are out.
    """

    def __init__(self, model: nn.Module):  # an Autoencoder
        c = model.config
        super().__init__(model, model.decoder, c.latent_dim, c.audio_channels, "latents")

    @property
    def delay_samples(self) -> int:
        return self.model.config.decoder_delay_samples

    @property
    def delay_ms(self) -> float:
        return 1000.0 * self.delay_samples / self.model.sample_rate

    @property
    def lookahead_frames(self) -> int:
        return self.model.config.decoder_lookahead_frames

    def push(self, latents: Tensor) -> Tensor:
        """latents (B, latent_dim, frames >= 0) -> audio (B, audio_channels, samples now complete)."""
        return self._push(latents)


class StreamingEncoder(_Streamer):
    """Live audio in pieces of any size, VAE mean latents out as soon as their input is complete.

    The concatenation of all `push` outputs and `flush()` equals `Autoencoder.encode(all audio)`
    (the mean; `flush` zero-pads to a whole frame as `encode` does). A frame is emitted once
    `lookahead_samples` samples past its own span have arrived.
    """

    def __init__(self, model: nn.Module):  # an Autoencoder
        c = model.config
        super().__init__(model, model.encoder, c.audio_channels, c.latent_dim, "audio")

    @property
    def lookahead_samples(self) -> int:
        return self.model.config.encoder_lookahead_samples

    @property
    def lookahead_ms(self) -> float:
        return 1000.0 * self.lookahead_samples / self.model.sample_rate

    def push(self, audio: Tensor) -> Tensor:
        """audio (B, audio_channels, samples >= 0) -> latents (B, latent_dim, frames now complete)."""
        return self._push(audio)

    def _finish(self) -> Tensor | None:
        pad = -self.consumed % self.model.downsampling_ratio
        zeros = torch.zeros(self._batch, self._in, pad, dtype=self.model.dtype, device=self.model.device)
        parts = [y for y in (self._twin.step(to_channels_last(zeros)), self._twin.flush()) if y is not None]
        return torch.cat(parts, dim=-1) if parts else None
