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

Streaming reuses the Oobleck's `StreamingDecoder` / `StreamingEncoder` (models.streaming_autoencoder): each layer here has
an exact streaming twin (lmdm.models.codec_streaming), so pushing any pieces equals the offline call.
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
from .autoencoder import Autoencoder, LatentAutoencoder, kl_divergence, posterior_draw
from .autoencoder_config import AutoencoderConfig, check_fields
from .codec_streaming import CausalConvTwin, ConvNeXtTwin, Flat, FrameTwin, GroupTwin, OverlapAddTwin
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
    # the head's phases are offsets from each bin's centre-frequency advance, 2 pi k j hop / n_fft at
    # frame j: a steady partial then needs a steady prediction (absolute phases that do not advance
    # make the overlap-add periodic in the hop: a fixed comb of sr / hop = 86 Hz harmonics)
    phase_advance: bool = False

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
        if self.n_fft % 2 or self.n_fft % self.hop or self.n_fft // self.hop < 4:
            # the squared periodic Hann window's shifts by hop then sum to the constant 3 n_fft / (8 hop)
            raise ConfigError(f"autoencoder.n_fft ({self.n_fft}) must be even and a multiple >= 4 of hop ({self.hop})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        check_fields(cls, data, "spectral codec")
        for name, value in data.items():
            if name == "phase_advance":
                if not isinstance(value, bool):
                    raise ConfigError(f"autoencoder.phase_advance must be true or false, got {value!r}")
            elif name != "kind" and not (isinstance(value, int) and not isinstance(value, bool)):
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

    def streaming(self) -> CausalConvTwin:
        return CausalConvTwin(self)


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

    def streaming(self) -> ConvNeXtTwin:
        return ConvNeXtTwin(self)


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

    def streaming(self) -> GroupTwin:
        return GroupTwin(self, self.factor)


def _hann(n: int, device, dtype=torch.float32) -> Tensor:
    return torch.hann_window(n, periodic=True, device=device, dtype=dtype)


def stft(audio: Tensor, n_fft: int, hop: int) -> Tensor:
    """audio (B, Ca, L) -> complex STFT (B, Ca, L // hop, bins) in the codec's framing: frame j covers
    samples [j*hop - (n_fft - hop), j*hop + hop), periodic Hann window; fp32 at least. A decoder
    that predicted exactly these spectra would give back the audio (up to the stream's last frames)."""
    return _spectrum(F.pad(audio, (n_fft - hop, 0)).unfold(-1, n_fft, hop))


def _spectrum(frames: Tensor) -> Tensor:
    work = torch.promote_types(frames.dtype, torch.float32)
    n = frames.shape[-1]
    return torch.fft.rfft(frames.to(work) * _hann(n, frames.device, work), dim=-1)


class SpectralFrontEnd(nn.Module):
    """audio (B, Ca, L) -> log magnitudes (B, Ca * bins, L / hop) of `stft`. L must be a multiple of hop."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop

    def spectra(self, frames: Tensor) -> Tensor:
        """frames (B, Ca, T, n_fft) -> (B, Ca * bins, T)."""
        mag = _spectrum(frames).abs()
        b, ca, t, nb = mag.shape
        return torch.log(mag.clamp_min(1e-5)).permute(0, 1, 3, 2).reshape(b, ca * nb, t).to(frames.dtype)

    def forward(self, audio: Tensor) -> Tensor:
        x = F.pad(audio, (self.n_fft - self.hop, 0))
        return self.spectra(x.unfold(-1, self.n_fft, self.hop))

    def streaming(self) -> FrameTwin:
        return FrameTwin(self)


class ISTFTHead(nn.Module):
    """features (B, C, T) -> audio (B, Ca, T * hop): per frame a log-magnitude and a phase per bin and
    channel, an inverse real FFT, a Hann window, overlap-add (Vocos' head, with our causal alignment).
    The spectral arithmetic runs in fp32 (fp64 for an fp64 model)."""

    def __init__(self, channels: int, audio_channels: int, n_fft: int, hop: int, phase_advance: bool = False):
        super().__init__()
        self.audio_channels, self.n_fft, self.hop, self.phase_advance = audio_channels, n_fft, hop, phase_advance
        self.bins = n_fft // 2 + 1
        self.proj = nn.Linear(channels, audio_channels * 2 * self.bins)
        # analysis and synthesis windows: the squared Hann's shifts sum to 3 n_fft / (8 hop); dividing
        # by it, the spectra of `stft` come back as the audio they were taken from
        self.gain = 8 * hop / (3 * n_fft)

    def spectra(self, h: Tensor, start: int = 0) -> Tensor:
        """(B, C, T) -> complex spectra (B, Ca, T, bins), fp32 at least (bf16 has no FFT); `start`:
        the stream's index of frame 0 (for `phase_advance`)."""
        b, _, t = h.shape
        work = torch.promote_types(h.dtype, torch.float32)
        p = self.proj(h.transpose(1, 2)).to(work).view(b, t, self.audio_channels, 2, self.bins)
        mag = torch.exp(p[..., 0, :].clamp(max=12.0))   # exp(12) ~ 1.6e5: far above full scale
        phase = p[..., 1, :]
        if self.phase_advance:   # in integers modulo n_fft, so it is exact at any stream position
            j = torch.arange(start, start + t, device=h.device)[:, None]
            k = torch.arange(self.bins, device=h.device)[None]
            phase = phase + ((k * j * self.hop) % self.n_fft).to(work)[:, None] * (2 * math.pi / self.n_fft)
        return torch.polar(mag, phase).transpose(1, 2)

    def frames(self, spec: Tensor) -> Tensor:
        """complex spectra (B, Ca, T, bins) -> windowed time frames (B * Ca, n_fft, T)."""
        b, ca, t, _ = spec.shape
        y = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * (_hann(self.n_fft, spec.device, spec.real.dtype) * self.gain)
        return y.permute(0, 1, 3, 2).reshape(b * ca, self.n_fft, t)

    def overlap_add(self, frames: Tensor) -> Tensor:
        """(B * Ca, n_fft, T) -> (B * Ca, (T - 1) * hop + n_fft): frame j at offset j * hop."""
        t = frames.shape[-1]
        length = (t - 1) * self.hop + self.n_fft
        return F.fold(frames, (1, length), (1, self.n_fft), stride=(1, self.hop)).view(frames.shape[0], length)

    def synthesize(self, spec: Tensor) -> Tensor:
        """complex spectra (B, Ca, T, bins) -> audio (B, Ca, T * hop), fp32."""
        b, _, t, _ = spec.shape
        y = self.overlap_add(self.frames(spec))[:, self.n_fft - self.hop:]   # frame 0 starts n_fft - hop early
        return y.reshape(b, self.audio_channels, t * self.hop)

    def forward(self, h: Tensor) -> Tensor:
        return self.synthesize(self.spectra(h)).to(h.dtype)

    def streaming(self) -> OverlapAddTwin:
        return OverlapAddTwin(self)


class _Stack(nn.Sequential):
    """The encoder or the decoder: a Sequential whose streaming twin takes and gives the
    channels-last (B, C, 1, T) tensors of the Oobleck streamers (see `codec_streaming.Flat`)."""

    def streaming(self) -> Flat:
        return Flat(StreamingSequential([streaming(m) for m in self]))


# ---------------------------------------------------------------------------------------------
# The codec


class SpectralCodec(LatentAutoencoder):
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
            *blocks(c.decoder_frame_blocks), ChannelNorm(w), ISTFTHead(w, c.audio_channels, c.n_fft, c.hop, c.phase_advance))

    def _encode_net(self, audio: Tensor) -> Tensor:
        return self.encoder(audio)

    def _decode_net(self, latents: Tensor) -> Tensor:
        return self.decoder(latents)

    def _weight(self) -> Tensor:
        return self.decoder[0].weight

    @property
    def tail_samples(self) -> int:
        """The last samples of an offline decode that frames past its end would still add to."""
        return self.config.decoder_delay_samples

    def forward(self, audio: Tensor, generator: torch.Generator | None = None, noise_scale: float = 1.0,
                spectra: bool = False) -> tuple[Tensor, ...]:
        """Training pass: (reconstruction from mean + noise_scale * std * noise, KL term), and with
        `spectra` the decoder's complex spectra (B, Ca, frames, bins) too, to score against `stft`."""
        mean, std = self.encode_moments(audio)
        z, kl = posterior_draw(mean, std, noise_scale, generator), kl_divergence(mean, std)
        if not spectra:
            return self.decoder(z), kl
        spec = self.decoder[-1].spectra(self.decoder[:-1](z))
        return self.decoder[-1].synthesize(spec).to(z.dtype), kl, spec

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

