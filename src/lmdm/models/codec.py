"""A spectral VAE codec: STFT in, ConvNeXt-1D both ways, a Vocos-style iSTFT head out.

Why: the Oobleck VAE the default model shipped with learns pitch slowly (on the CPU budget it
re-synthesised every piece in one key). Here the encoder reads log-magnitude spectra, where pitch
is explicit, and the decoder predicts magnitude and phase per STFT bin (Vocos, Siuzdak 2023),
which turn into audio by an inverse FFT and overlap-add: no learned upsampling to the sample rate,
so the decoder is cheap on a CPU. Inspired by Vocos, DAC and Stable Audio Open's VAE; no code copied.

Shapes: audio (batch, audio_channels, samples), latents (batch, latent_dim, frames), one latent
frame per `downsampling_ratio` = hop * frames_per_latent samples.

Alignment, chosen so both directions stream with little latency: STFT frame j covers samples
[j*hop - (n_fft - hop), j*hop + hop), both in the encoder's analysis and the decoder's synthesis;
latent frame i is STFT frames [i*F, (i+1)*F), F = frames_per_latent. Every layer is causal in
time, so the encoder emits latent i as soon as sample (i+1)*ratio - 1 has arrived (no lookahead),
and the decoder's output sample s is complete once the frames overlapping it exist: a delay of
n_fft - hop samples (35 ms at 2048 / 512 and 44.1 kHz). The offline decode's last n_fft - hop
samples miss the frames past the end (as a stream that stops would); training scores without them.

Streaming reuses `StreamingDecoder` / `StreamingEncoder` of the Oobleck module: each layer here has
an exact streaming twin (step / flush / reset / state), so pushing any pieces equals the offline call.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .autoencoder import (Autoencoder, AutoencoderConfig, StreamingDecoder, StreamingEncoder, check_signal,
                          kl_divergence, vae_moments)
from .streaming_conv import StreamingSequential, streaming

Tensor = torch.Tensor


@dataclass
class CodecConfig:
    """Spectral codec shape (`"kind": "spectral"` in a model's autoencoder config)."""

    kind: str = "spectral"
    audio_channels: int = 2
    sample_rate: int = 44100
    n_fft: int = 2048                # STFT size (analysis and synthesis); 21.5 Hz bins at 44.1 kHz
    hop: int = 512                   # STFT hop
    frames_per_latent: int = 4       # STFT frames per latent frame: ratio = hop * this
    latent_dim: int = 64
    channels: int = 256              # ConvNeXt width (encoder and decoder)
    mlp_mult: int = 3                # ConvNeXt MLP expansion
    kernel: int = 7                  # causal depthwise kernel
    encoder_frame_blocks: int = 2    # ConvNeXt blocks at the STFT frame rate, then at the latent rate
    encoder_latent_blocks: int = 2
    decoder_latent_blocks: int = 2   # at the latent rate, then (after the upsample) at the STFT frame rate
    decoder_frame_blocks: int = 4

    @property
    def downsampling_ratio(self) -> int:
        return self.hop * self.frames_per_latent

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def decoder_delay_samples(self) -> int:
        """After N latent frames in, N * ratio - this samples are complete (see the module docstring)."""
        return self.n_fft - self.hop

    @property
    def decoder_lookahead_frames(self) -> int:
        return math.ceil(self.decoder_delay_samples / self.downsampling_ratio)

    @property
    def encoder_lookahead_samples(self) -> int:
        return 0   # every encoder layer is causal and frame i's STFT window ends with its own span

    def validate(self) -> "CodecConfig":
        if self.kind != "spectral":
            raise ConfigError(f"codec kind must be 'spectral', got {self.kind!r}")
        for name in ("audio_channels", "sample_rate", "n_fft", "hop", "frames_per_latent", "latent_dim",
                     "channels", "mlp_mult", "kernel"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"autoencoder.{name} must be positive, got {getattr(self, name)}")
        for name in ("encoder_frame_blocks", "encoder_latent_blocks", "decoder_latent_blocks", "decoder_frame_blocks"):
            if getattr(self, name) < 0:
                raise ConfigError(f"autoencoder.{name} must be >= 0, got {getattr(self, name)}")
        if self.n_fft % 2 or self.n_fft % self.hop or self.n_fft // self.hop < 2:
            # a periodic Hann window's shifts by hop then sum to the constant n_fft / (2 hop)
            raise ConfigError(f"autoencoder.n_fft ({self.n_fft}) must be even and a multiple >= 2 of hop ({self.hop})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"autoencoder config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown spectral codec config field(s): {unknown}")
        for name, value in data.items():
            if name != "kind" and not (isinstance(value, int) and not isinstance(value, bool)):
                raise ConfigError(f"autoencoder.{name} has the wrong type: {value!r}")
        return cls(**data).validate()


def build_autoencoder(config: dict[str, Any]) -> nn.Module:
    """The autoencoder a model config names: `"kind": "spectral"` -> SpectralCodec; no kind (or
    "oobleck") -> the Oobleck `Autoencoder`, as every config before the spectral codec."""
    if not isinstance(config, dict):
        raise ConfigError(f"autoencoder config must be a dict, got {type(config).__name__}")
    kind = config.get("kind", "oobleck")
    if kind == "spectral":
        return SpectralCodec(CodecConfig.from_dict(config))
    if kind != "oobleck":
        raise ConfigError(f"autoencoder.kind must be 'oobleck' or 'spectral', got {kind!r}")
    return Autoencoder(AutoencoderConfig.from_dict({k: v for k, v in config.items() if k != "kind"}))


# ---------------------------------------------------------------------------------------------
# Layers on (B, C, T) tensors. Each has an exact streaming twin (see streaming_conv.streaming).


class ChannelLinear(nn.Linear):
    """A Linear over the channel axis of (B, C, T): acts frame by frame."""

    pointwise = True

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ChannelNorm(nn.LayerNorm):
    pointwise = True

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only: output frame t sees inputs t - span + 1 .. t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, groups=groups)
        self.left = kernel_size - 1

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.left, 0)))

    def streaming(self) -> "_CausalConvTwin":
        return _CausalConvTwin(self)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv -> LayerNorm -> MLP (GELU) -> layer scale, plus the input (ConvNeXt)."""

    def __init__(self, channels: int, mult: int, kernel: int, scale: float):
        super().__init__()
        self.dwconv = CausalConv1d(channels, channels, kernel, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, mult * channels)
        self.pw2 = nn.Linear(mult * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), scale))

    def branch(self, h: Tensor) -> Tensor:
        """Everything after the depthwise conv: frame by frame."""
        h = self.pw2(F.gelu(self.pw1(self.norm(h.transpose(1, 2))))) * self.gamma
        return h.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(self.dwconv(x))

    def streaming(self) -> "_ConvNeXtTwin":
        return _ConvNeXtTwin(self)


class FrameUpsample(nn.Module):
    """(B, C, T) -> (B, C, T * factor): each frame becomes `factor` frames by one Linear."""

    pointwise = True   # frame t's outputs depend on frame t only

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(channels, factor * channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        return self.proj(x.transpose(1, 2)).view(b, t * self.factor, c).transpose(1, 2)


class FrameDownsample(nn.Module):
    """(B, C, T * factor) -> (B, C, T): each group of `factor` frames becomes one by one Linear."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.proj = nn.Linear(factor * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        return self.proj(x.transpose(1, 2).reshape(b, t // self.factor, self.factor * c)).transpose(1, 2)

    def streaming(self) -> "_GroupTwin":
        return _GroupTwin(self, self.factor)


def _hann(n: int, device, dtype=torch.float32) -> Tensor:
    return torch.hann_window(n, periodic=True, device=device, dtype=dtype)


class SpectralFrontEnd(nn.Module):
    """audio (B, Ca, L) -> log magnitudes (B, Ca * bins, L / hop), frame j ending at sample (j+1)*hop.
    Computed in fp32 whatever the model's dtype; L must be a multiple of hop."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop

    def spectra(self, frames: Tensor) -> Tensor:
        """frames (B, Ca, T, n_fft) -> (B, Ca * bins, T)."""
        work = torch.promote_types(frames.dtype, torch.float32)
        mag = torch.fft.rfft(frames.to(work) * _hann(self.n_fft, frames.device, work), dim=-1).abs()
        b, ca, t, nb = mag.shape
        return torch.log(mag.clamp_min(1e-5)).permute(0, 1, 3, 2).reshape(b, ca * nb, t).to(frames.dtype)

    def forward(self, audio: Tensor) -> Tensor:
        x = F.pad(audio, (self.n_fft - self.hop, 0))
        return self.spectra(x.unfold(-1, self.n_fft, self.hop))

    def streaming(self) -> "_FrameTwin":
        return _FrameTwin(self)


class ISTFTHead(nn.Module):
    """features (B, C, T) -> audio (B, Ca, T * hop): per frame a log-magnitude and a phase per bin and
    channel, an inverse real FFT, a Hann window, overlap-add (Vocos' head, with our causal alignment).
    The spectral arithmetic runs in fp32 (fp64 for an fp64 model)."""

    def __init__(self, channels: int, audio_channels: int, n_fft: int, hop: int):
        super().__init__()
        self.audio_channels, self.n_fft, self.hop = audio_channels, n_fft, hop
        self.bins = n_fft // 2 + 1
        self.proj = nn.Linear(channels, audio_channels * 2 * self.bins)
        # the shifted windows sum to n_fft / (2 hop): divide so a steady spectrum plays at its level
        self.gain = 2 * hop / n_fft

    def frames(self, h: Tensor) -> Tensor:
        """(B, C, T) -> windowed time frames (B * Ca, n_fft, T) in fp32."""
        b, _, t = h.shape
        work = torch.promote_types(h.dtype, torch.float32)   # the FFTs: fp32 at least (bf16 has none)
        p = self.proj(h.transpose(1, 2)).to(work).view(b, t, self.audio_channels, 2, self.bins)
        mag = torch.exp(p[..., 0, :].clamp(max=12.0))   # exp(12) ~ 1.6e5: far above full scale
        phase = p[..., 1, :]
        spec = torch.polar(mag, phase)                   # (B, T, Ca, bins)
        y = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * (_hann(self.n_fft, h.device, work) * self.gain)
        return y.permute(0, 2, 3, 1).reshape(b * self.audio_channels, self.n_fft, t)

    def overlap_add(self, frames: Tensor) -> Tensor:
        """(B * Ca, n_fft, T) -> (B * Ca, (T - 1) * hop + n_fft): frame j at offset j * hop."""
        t = frames.shape[-1]
        length = (t - 1) * self.hop + self.n_fft
        return F.fold(frames, (1, length), (1, self.n_fft), stride=(1, self.hop)).view(frames.shape[0], length)

    def forward(self, h: Tensor) -> Tensor:
        b, t = h.shape[0], h.shape[-1]
        y = self.overlap_add(self.frames(h))[:, self.n_fft - self.hop:]   # frame 0 starts n_fft - hop early
        return y.reshape(b, self.audio_channels, t * self.hop).to(h.dtype)

    def streaming(self) -> "_OverlapAddTwin":
        return _OverlapAddTwin(self)


class _Stack(nn.Sequential):
    """The encoder or the decoder: a Sequential whose streaming twin takes and gives the
    channels-last (B, C, 1, T) tensors of the Oobleck streamers (see `_Flat`)."""

    def streaming(self) -> "_Flat":
        return _Flat(StreamingSequential([streaming(m) for m in self]))


# ---------------------------------------------------------------------------------------------
# The codec


class SpectralCodec(nn.Module):
    """Encoder, decoder and the VAE bottleneck (mean, softplus std), with Autoencoder's interface."""

    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = c = (config or CodecConfig()).validate()
        w, f = c.channels, c.frames_per_latent

        def blocks(n: int) -> list[nn.Module]:
            return [ConvNeXtBlock(w, c.mlp_mult, c.kernel, 1.0 / max(1, n)) for _ in range(n)]
        self.encoder = _Stack(
            SpectralFrontEnd(c.n_fft, c.hop), ChannelLinear(c.audio_channels * c.bins, w), ChannelNorm(w),
            *blocks(c.encoder_frame_blocks), FrameDownsample(w, f), *blocks(c.encoder_latent_blocks),
            ChannelNorm(w), ChannelLinear(w, 2 * c.latent_dim))
        self.decoder = _Stack(
            ChannelLinear(c.latent_dim, w), *blocks(c.decoder_latent_blocks), FrameUpsample(w, f),
            *blocks(c.decoder_frame_blocks), ChannelNorm(w), ISTFTHead(w, c.audio_channels, c.n_fft, c.hop))

    @property
    def downsampling_ratio(self) -> int:
        return self.config.downsampling_ratio

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder[0].weight.device

    @property
    def tail_samples(self) -> int:
        """The last samples of an offline decode that frames past its end would still add to."""
        return self.config.decoder_delay_samples

    def encode_moments(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """audio (B, audio_channels, L) -> (mean, std), each (B, latent_dim, ceil(L / ratio)); the end
        is zero-padded to a whole latent frame."""
        check_signal(audio, self.config.audio_channels, "audio")
        pad = -audio.shape[-1] % self.downsampling_ratio
        return vae_moments(self.encoder(F.pad(audio.to(self.dtype), (0, pad))))

    def encode(self, audio: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        mean, std = self.encode_moments(audio)
        if sample:
            mean = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean.to(audio.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """latents (B, latent_dim, T) -> audio (B, audio_channels, T * ratio)."""
        check_signal(latents, self.latent_dim, "latents")
        return self.decoder(latents.to(self.dtype)).to(latents.dtype)

    def forward(self, audio: Tensor, generator: torch.Generator | None = None, noise_scale: float = 1.0
                ) -> tuple[Tensor, Tensor]:
        """Training pass: (reconstruction from mean + noise_scale * std * noise, KL term)."""
        mean, std = self.encode_moments(audio)
        z = mean
        if noise_scale:
            z = mean + noise_scale * std * torch.randn(mean.shape, generator=generator, device=mean.device,
                                                       dtype=mean.dtype)
        return self.decoder(z), kl_divergence(mean, std)

    @torch.no_grad()
    def rescale_latents(self, factor: float) -> None:
        """Latents `factor` times larger, read back unchanged by the decoder (exact up to rounding):
        the mean rows of the encoder's last Linear scaled, the decoder's first Linear divided."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"latent rescale factor must be positive and finite, got {factor}")
        d, last, first = self.latent_dim, self.encoder[-1], self.decoder[0]
        last.weight[:d] *= factor
        last.bias[:d] *= factor
        first.weight /= factor

    def streaming_decoder(self) -> StreamingDecoder:
        return StreamingDecoder(self)

    def streaming_encoder(self) -> StreamingEncoder:
        return StreamingEncoder(self)


# ---------------------------------------------------------------------------------------------
# Streaming twins: step(x) -> output so far or None, flush() -> the rest, reset(), state/load_state.


def _clone(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.clone()


class _Flat:
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


class _CausalConvTwin(_Buffered):
    def __init__(self, conv: CausalConv1d):
        self.conv = conv
        self.reset()

    def step(self, x: Tensor) -> Tensor | None:
        if x.shape[-1] == 0:
            self.buf = self.buf if self.buf is not None else x.new_zeros(*x.shape[:-1], self.conv.left)
            return None
        buf = self._join(x, self.conv.left)
        self.buf = buf[..., buf.shape[-1] - self.conv.left:].clone()
        return nn.Conv1d.forward(self.conv, buf)


class _ConvNeXtTwin:
    """The depthwise conv emits one frame per input frame, so the skip needs no delay."""

    def __init__(self, block: ConvNeXtBlock):
        self.block, self.dw = block, _CausalConvTwin(block.dwconv)

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


class _GroupTwin(_Buffered):
    """Frame-group layers (FrameDownsample): runs on whole groups of `factor` frames."""

    def __init__(self, module: nn.Module, factor: int):
        self.module, self.factor = module, factor
        self.reset()

    def step(self, x: Tensor) -> Tensor | None:
        buf = self._join(x, 0)
        n = buf.shape[-1] // self.factor * self.factor
        self.buf = buf[..., n:].clone()
        return self.module(buf[..., :n]) if n else None


class _FrameTwin(_Buffered):
    """STFT framing: keeps the last n_fft - hop samples and any part of a hop."""

    def __init__(self, front: SpectralFrontEnd):
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


class _OverlapAddTwin:
    """Overlap-add with the last n_fft - hop samples (still missing later frames) held back."""

    def __init__(self, head: ISTFTHead):
        self.head = head
        self.reset()

    def reset(self) -> None:
        self.tail: Tensor | None = None
        self.to_skip = self.head.n_fft - self.head.hop   # frame 0 starts this early: the offline crop

    def state(self, prefix: str) -> dict[str, Tensor]:
        out = {prefix + "to_skip": torch.tensor(self.to_skip)}
        return out if self.tail is None else {**out, prefix + "tail": self.tail}

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.tail = _clone(state.get(prefix + "tail"))
        self.to_skip = int(state[prefix + "to_skip"])

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
        y = self.head.overlap_add(self.head.frames(h))
        if self.tail is not None:
            y[:, :self.tail.shape[-1]] += self.tail
        self.tail = y[:, t * self.head.hop:].clone()
        return self._emit(y[:, :t * self.head.hop])

    def flush(self) -> Tensor | None:
        if self.tail is None:
            return None
        tail, self.tail = self.tail, None
        return self._emit(tail)
