"""Generative delay (SPEC §4): live input is encoded and fed back to the model, which answers one or
more blocks later with a timbral transformation of it (the prompt sets the timbre).

One call per block: `process(audio)` takes exactly one block of input audio (B * hop samples) and
returns the audio that is ready; `process_latents(latents)` does the same in latent space (no
autoencoder needed). The input reaches the model two ways, both lagged by `lag_blocks` blocks:

- accompaniment route (models with an `accompaniment` input group): the input latents are the
  accompaniment, zeroed from `frame - cutoff_frames` on, so output block j sees input frames
  before j*B - cutoff_frames;
- context route (`feedback` < 1): the clean context the model sees for block j is
  feedback * (its own output) + (1 - feedback) * (input block j - cutoff_frames / B).
  feedback 1 = the model continues its own output; 0 = the context is the (lagged) input.

Lag (exact, tested): input block i (input frames [iB, (i+1)B)) first influences output block
i + lag_blocks, lag_blocks = 1 + cutoff_frames / B (cutoff_frames a multiple of B). In samples on the
stream's timeline that is `lag_samples = lag_blocks * B * hop`; the audio returned by `process`
additionally passes through the streaming decoder, so wall-clock input→output delay is
`delay_samples = lag_samples + decoder.delay_samples`. With audio input the encoder needs
`lookahead_samples` past a frame before emitting it, so cutoff_frames must be at least
ceil(lookahead_samples / hop) (the default is the smallest multiple of B, at least one block, that is).

Dry/wet: the returned audio is wet * generated + (1 - wet) * input delayed by lag_samples (so the
dry signal lines up with the generated answer to it).
"""
from __future__ import annotations

import math

import torch

from .errors import ConfigError, ShapeError
from .stream import Stream


class DelayStream:
    def __init__(self, model, prompt="", *, wet: float = 1.0, feedback: float = 1.0,
                 cutoff_frames: int | None = None, **stream_kwargs):
        B = model.config.pattern.block_frames
        self.hop = model.autoencoder.downsampling_ratio if model.autoencoder is not None else None
        if cutoff_frames is None:
            need = 0 if self.hop is None else math.ceil(model.autoencoder.config.encoder_lookahead_samples / self.hop)
            cutoff_frames = B * max(1, math.ceil(need / B))
        if cutoff_frames % B:
            raise ConfigError(f"generative delay needs cutoff_frames to be a multiple of the block ({B}), "
                              f"got {cutoff_frames}")
        if self.hop is not None:
            need = math.ceil(model.autoencoder.config.encoder_lookahead_samples / self.hop)
            if cutoff_frames < need:
                raise ConfigError(f"cutoff_frames={cutoff_frames} is shorter than the encoder's look-ahead "
                                  f"({need} frames): the input would not be encoded in time")
        self.has_accompaniment = "accompaniment" in model.config.dit.input_groups
        if not self.has_accompaniment and feedback >= 1.0:
            raise ConfigError("this model has no accompaniment input group: set feedback < 1 so the input "
                              "reaches the model through its context")
        self.stream = Stream(model, prompt, cutoff_frames=cutoff_frames, **stream_kwargs)
        self.model, self.B, self.io = model, B, self.stream.io
        self.cutoff_frames = cutoff_frames
        self.wet, self.feedback = float(wet), float(feedback)
        self.input_latents = torch.zeros(self.stream.batch, self.io, 0)  # encoded input from input_start
        self.input_start = 0
        self._encoder = None
        self._dry = None            # input audio not yet mixed out
        self._dry_offset = 0        # input samples already dropped from _dry
        self._out_samples = 0       # output samples returned so far

    @property
    def lag_blocks(self) -> int:
        return 1 + self.cutoff_frames // self.B

    @property
    def lag_samples(self) -> int:
        if self.hop is None:
            raise ConfigError("a latent-only model has no sample lag; lag_blocks * block_frames latent frames")
        return self.lag_blocks * self.B * self.hop

    @property
    def delay_samples(self) -> int:
        return self.lag_samples + self.stream.decoder.delay_samples

    def process_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """One block of input latents (io, B) or (batch, io, B) → the next generated block (batch, io, B)."""
        if latents.dim() == 2:
            latents = latents[None].expand(self.stream.batch, -1, -1)
        if latents.shape[1:] != (self.io, self.B):
            raise ShapeError(f"input block must be ({self.io}, {self.B}) latents, got {tuple(latents.shape)}")
        return self._step(latents.float())

    def process(self, audio: torch.Tensor) -> torch.Tensor:
        """One block of input audio (channels, B * hop) or (batch, channels, B * hop) → output audio
        (batch, channels, samples ready), mixed dry/wet."""
        if self.hop is None:
            raise ConfigError("this model has no autoencoder: use process_latents()")
        if audio.dim() == 2:
            audio = audio[None].expand(self.stream.batch, -1, -1)
        if audio.shape[-1] != self.B * self.hop:
            raise ShapeError(f"input block must be {self.B * self.hop} samples, got {audio.shape[-1]}")
        audio = audio.float()
        if self._encoder is None:
            self._encoder = self.model.autoencoder.streaming_encoder()
        latents = self._encoder.push(audio.to(self.model.autoencoder.dtype)).float()
        self._dry = audio if self._dry is None else torch.cat((self._dry, audio), -1)
        out = self._step(latents)
        return self._mix(self.stream.decoder.push(out.to(self.model.autoencoder.dtype)).float())

    def _mix(self, wet: torch.Tensor) -> torch.Tensor:
        n, start = wet.shape[-1], self._out_samples - self.lag_samples  # dry input index of wet[0]
        dry = torch.zeros_like(wet)
        lo, hi = max(start, self._dry_offset), min(start + n, self._dry_offset + self._dry.shape[-1])
        if hi > lo:
            dry[..., lo - start:hi - start] = self._dry[..., lo - self._dry_offset:hi - self._dry_offset]
        self._out_samples += n
        drop = max(0, self._out_samples - self.lag_samples - self._dry_offset)  # never needed again
        self._dry, self._dry_offset = self._dry[..., drop:], self._dry_offset + drop
        return self.wet * wet + (1.0 - self.wet) * dry

    def _step(self, latents: torch.Tensor) -> torch.Tensor:
        s = self.stream
        if self.feedback < 1.0:
            self.input_latents = torch.cat((self.input_latents, latents), -1)
        if self.has_accompaniment:
            if s.accompaniment is None:
                s.set_accompaniment(torch.zeros(s.batch, self.io, 0), start=0)
            s.push_accompaniment(latents)
        j = s.block_index
        out = s.next_latents()
        if self.feedback < 1.0:
            src = (j - self.cutoff_frames // self.B) * self.B  # input frames mixed into context block j
            given = torch.zeros(s.batch, self.io, self.B)
            a = self.input_start
            lo, hi = max(src, a), min(src + self.B, a + self.input_latents.shape[-1])
            if hi > lo:
                given[..., lo - src:hi - src] = self.input_latents[..., lo - a:hi - a]
            s.replace_last_block(self.feedback * out + (1.0 - self.feedback) * given)
            drop = max(0, min(src + self.B - a, self.input_latents.shape[-1]))  # never needed again
            self.input_latents, self.input_start = self.input_latents[..., drop:], a + drop
        return out
