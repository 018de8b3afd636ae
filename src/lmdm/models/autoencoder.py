"""The "Oobleck" VAE of Stable Audio Open, with exact streaming encode and decode.

Structure and parameter names follow stable-audio-tools (`models/autoencoders.py`,
`models/bottleneck.py`, `models/blocks.py`) one-to-one, so `pretransform.model.*` of an SAO
checkpoint loads into `Autoencoder` after stripping that prefix: `encoder.layers.N...`,
`decoder.layers.N...`, convs as `weight_g` / `weight_v` / `bias`, SnakeBeta as `alpha` / `beta`.

Shapes: audio (batch, audio_channels, samples), latents (batch, latent_dim, frames), one frame per
`downsampling_ratio` samples (SAO-small: 2048, 21.5 frames per second at 44.1 kHz).

Precision: every op runs in the parameters' dtype (`.to(torch.bfloat16)` is supported and is the
fast path on CPUs with AVX-512 BF16), except the weight-norm fold, done in fp32 and cached at
inference. SnakeBeta runs in the input dtype; `lmdm.bench_autoencoder` measures the bf16-vs-fp32
signal-to-noise ratio of the decoder. `encode`/`decode` return their input's dtype.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from .streaming_conv import (StreamingResidual, WNConv1d, WNConvTranspose1d, from_channels_last, streaming,
                             to_channels_last)

Tensor = torch.Tensor

DILATIONS = (1, 3, 9)
# A residual unit's k7 conv with dilation d and padding 3d needs 3d samples ahead; three units in a row:
_RU_LOOKAHEAD = 3 * sum(DILATIONS)


@dataclass
class AutoencoderConfig:
    """Oobleck VAE shape. Defaults are SAO-small's (`stable-audio-open-small/model_config.json`)."""

    audio_channels: int = 2          # io_channels: 2 = stereo
    channels: int = 128              # base width; block i works at channels * c_mults[i]
    c_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    strides: list[int] = field(default_factory=lambda: [2, 4, 4, 8, 8])  # encoder order; even only
    latent_dim: int = 64             # latent channels (the encoder outputs 2x: mean and scale)
    sample_rate: int = 44100
    final_tanh: bool = False         # tanh on the decoder output (SAO-small: no)

    @property
    def downsampling_ratio(self) -> int:
        return math.prod(self.strides)

    @property
    def decoder_delay_samples(self) -> int:
        """Lag of the streaming decoder's output behind its input, in audio samples: after N latent
        frames in, N * downsampling_ratio - decoder_delay_samples samples are out (once positive).
        Each conv with padding p waits for p samples ahead of its output; a transposed conv with
        stride s holds back its crop of ceil(s/2). SAO-small: 18981 samples = 430.4 ms = 9.27 frames."""
        d = 3  # first conv, k7 pad 3, at frame rate
        for s in reversed(self.strides):  # decoder blocks: transposed conv, then 3 residual units
            d = d * s + math.ceil(s / 2) + _RU_LOOKAHEAD
        return d + 3  # last conv, k7 pad 3

    @property
    def decoder_lookahead_frames(self) -> int:
        """Latent frames past frame j the streaming decoder needs before frame j's audio is complete."""
        return math.ceil(self.decoder_delay_samples / self.downsampling_ratio)

    @property
    def encoder_lookahead_samples(self) -> int:
        """Audio samples past the end of a frame's own span that the streaming encoder needs before
        it can emit that frame: after N samples in, max(0, (N - this) // downsampling_ratio) frames
        are out. SAO-small: 14885 samples = 337.5 ms."""
        b = 1  # last conv, k3 pad 1: frame j needs frame j + 1 of its input
        for s in reversed(self.strides):  # strided conv (kernel 2s, pad ceil(s/2)) after 3 residual units
            b = b * s + 2 * s - math.ceil(s / 2) - 1 + _RU_LOOKAHEAD
        return b + 3 + 1 - self.downsampling_ratio  # first conv k7 pad 3; index -> count; minus own span

    def validate(self) -> "AutoencoderConfig":
        for name in ("audio_channels", "channels", "latent_dim", "sample_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"autoencoder.{name} must be positive, got {getattr(self, name)}")
        if not self.c_mults or len(self.c_mults) != len(self.strides):
            raise ConfigError(f"autoencoder.c_mults {self.c_mults} and strides {self.strides} must be "
                              "non-empty and of equal length")
        if any(m <= 0 for m in self.c_mults):
            raise ConfigError(f"autoencoder.c_mults must be positive, got {self.c_mults}")
        if any(s <= 0 or s % 2 for s in self.strides):
            # kernel 2s with padding ceil(s/2) maps L frames to exactly L*s samples only for even s
            raise ConfigError(f"autoencoder.strides must be positive and even, got {self.strides}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AutoencoderConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"autoencoder config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown autoencoder config field(s): {unknown}")
        for name, value in data.items():
            if name in ("c_mults", "strides"):
                ok = isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)
            elif name == "final_tanh":
                ok = isinstance(value, bool)
            else:
                ok = _is_int(value)
            if not ok:
                raise ConfigError(f"autoencoder.{name} has the wrong type: {value!r}")
        data = {k: list(v) if k in ("c_mults", "strides") else v for k, v in data.items()}
        return cls(**data).validate()

    @classmethod
    def from_sao(cls, pretransform: dict[str, Any], sample_rate: int = 44100) -> "AutoencoderConfig":
        """From stable-audio-tools' pretransform config (`model_config.json` -> model.pretransform),
        or from the whole model_config.json (then its `sample_rate` is used). Anything this
        implementation does not reproduce exactly raises ConfigError naming the field."""
        if not isinstance(pretransform, dict):
            raise ConfigError(f"SAO pretransform config must be a dict, got {type(pretransform).__name__}")
        if isinstance(pretransform.get("model"), dict) and "pretransform" in pretransform["model"]:
            sample_rate = pretransform.get("sample_rate", sample_rate)
            pretransform = pretransform["model"]["pretransform"]
        try:
            _expect(pretransform, "type", "autoencoder", "pretransform")
            _allow_only(pretransform, {"type", "config", "iterate_batch", "model_half", "chunked", "scale"},
                        "pretransform")
            if pretransform.get("scale", 1.0) != 1.0:
                raise ConfigError(f"pretransform.scale={pretransform['scale']} is not supported (only 1.0)")
            ae = pretransform["config"]
            _allow_only(ae, {"encoder", "decoder", "bottleneck", "latent_dim", "downsampling_ratio",
                             "io_channels", "sample_rate"}, "pretransform.config")
            _expect(ae["bottleneck"], "type", "vae", "pretransform.config.bottleneck")
            _allow_only(ae["bottleneck"], {"type", "config"}, "pretransform.config.bottleneck")
            if ae["bottleneck"].get("config"):
                raise ConfigError("pretransform.config.bottleneck.config is not supported for type 'vae'")
            enc, dec = ae["encoder"], ae["decoder"]
            _expect(enc, "type", "oobleck", "pretransform.config.encoder")
            _expect(dec, "type", "oobleck", "pretransform.config.decoder")
            ec, dc = enc["config"], dec["config"]
            _allow_only(ec, {"in_channels", "channels", "c_mults", "strides", "latent_dim", "use_snake",
                             "antialias_activation"}, "pretransform.config.encoder.config")
            _allow_only(dc, {"out_channels", "channels", "c_mults", "strides", "latent_dim", "use_snake",
                             "antialias_activation", "use_nearest_upsample", "final_tanh"},
                        "pretransform.config.decoder.config")
            for where, c in (("encoder", ec), ("decoder", dc)):
                # stable-audio-tools defaults use_snake to False (ELU); SAO sets it true
                if c.get("use_snake", False) is not True:
                    raise ConfigError(f"pretransform.config.{where}.config.use_snake must be true "
                                      "(ELU activations are not implemented)")
                if c.get("antialias_activation", False):
                    raise ConfigError(f"pretransform.config.{where}.config.antialias_activation is not supported")
            if dc.get("use_nearest_upsample", False):
                raise ConfigError("pretransform.config.decoder.config.use_nearest_upsample is not supported")
            latent = ae["latent_dim"]
            for name, expected in (("channels", ec["channels"]), ("c_mults", list(ec["c_mults"])),
                                   ("strides", list(ec["strides"])), ("out_channels", ec["in_channels"]),
                                   ("latent_dim", latent)):
                got = list(dc[name]) if name in ("c_mults", "strides") else dc[name]
                if got != expected:
                    raise ConfigError(f"pretransform.config.decoder.config.{name}={got} does not mirror the "
                                      f"encoder / VAE ({expected})")
            if ec["latent_dim"] != 2 * latent:
                raise ConfigError(f"pretransform.config.encoder.config.latent_dim={ec['latent_dim']} must be "
                                  f"2 * latent_dim = {2 * latent} (VAE mean and scale)")
            cfg = cls(audio_channels=ec["in_channels"], channels=ec["channels"], c_mults=list(ec["c_mults"]),
                      strides=list(ec["strides"]), latent_dim=latent,
                      sample_rate=ae.get("sample_rate", sample_rate),
                      final_tanh=bool(dc.get("final_tanh", True)))  # stable-audio-tools' default: True
            if ae.get("io_channels", cfg.audio_channels) != cfg.audio_channels:
                raise ConfigError(f"pretransform.config.io_channels={ae['io_channels']} != encoder in_channels "
                                  f"{cfg.audio_channels}")
            if ae.get("downsampling_ratio", cfg.downsampling_ratio) != cfg.downsampling_ratio:
                raise ConfigError(f"pretransform.config.downsampling_ratio={ae['downsampling_ratio']} != "
                                  f"product of strides {cfg.downsampling_ratio}")
        except KeyError as e:
            raise ConfigError(f"SAO pretransform config lacks {e}") from e
        except TypeError as e:
            raise ConfigError(f"SAO pretransform config is malformed: {e}") from e
        return cfg.validate()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _expect(d: dict, key: str, value: Any, where: str) -> None:
    if d.get(key) != value:
        raise ConfigError(f"{where}.{key}={d.get(key)!r} is not supported (only {value!r})")


def _allow_only(d: dict, keys: set[str], where: str) -> None:
    extra = sorted(set(d) - keys)
    if extra:
        raise ConfigError(f"{where} has unsupported field(s) {extra}")


# ---------------------------------------------------------------------------------------------
# Layers (stable-audio-tools names)


class SnakeBeta(nn.Module):
    """x + 1/(exp(beta) + 1e-9) * sin(exp(alpha) * x)^2, per channel; alpha, beta stored as logs."""

    pointwise = True  # acts sample by sample: streams without state

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (-1,) + (1,) * (x.dim() - 2)  # broadcast over (B, C, T) or (B, C, 1, T)
        alpha = self.alpha.exp().view(shape).to(x.dtype)
        inv_beta = (self.beta.exp() + 1e-9).reciprocal().view(shape).to(x.dtype)
        if torch.is_grad_enabled() and (x.requires_grad or self.alpha.requires_grad or self.beta.requires_grad):
            s = torch.sin(x * alpha).square()
        else:  # same arithmetic, in place (the decoder runs this on ~80 M values per audio second)
            s = torch.mul(x, alpha).sin_().square_()
        return torch.addcmul(x, s, inv_beta)


class ResidualUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dilation: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(out_channels),
            WNConv1d(in_channels, out_channels, kernel_size=7, dilation=dilation, padding=(dilation * 6) // 2),
            SnakeBeta(out_channels),
            WNConv1d(out_channels, out_channels, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)

    def streaming(self) -> StreamingResidual:
        return StreamingResidual(streaming(self.layers))


class _Stack(nn.Module):
    """A module that is its `layers` Sequential (stable-audio-tools' naming pattern)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def streaming(self):
        return streaming(self.layers)


class EncoderBlock(_Stack):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            *(ResidualUnit(in_channels, in_channels, d) for d in DILATIONS),
            SnakeBeta(in_channels),
            WNConv1d(in_channels, out_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)))


class DecoderBlock(_Stack):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(in_channels),
            WNConvTranspose1d(in_channels, out_channels, kernel_size=2 * stride, stride=stride,
                              padding=math.ceil(stride / 2)),
            *(ResidualUnit(out_channels, out_channels, d) for d in DILATIONS))


class OobleckEncoder(_Stack):
    """audio (B, in_channels, L) -> (B, latent_dim, L / prod(strides)); latent_dim = 2 x the VAE's."""

    def __init__(self, in_channels: int, channels: int, c_mults: list[int], strides: list[int], latent_dim: int):
        super().__init__()
        m = [1] + list(c_mults)
        self.layers = nn.Sequential(
            WNConv1d(in_channels, m[0] * channels, kernel_size=7, padding=3),
            *(EncoderBlock(m[i] * channels, m[i + 1] * channels, strides[i]) for i in range(len(m) - 1)),
            SnakeBeta(m[-1] * channels),
            WNConv1d(m[-1] * channels, latent_dim, kernel_size=3, padding=1))


class OobleckDecoder(_Stack):
    """latents (B, latent_dim, T) -> audio (B, out_channels, T * prod(strides))."""

    def __init__(self, out_channels: int, channels: int, c_mults: list[int], strides: list[int], latent_dim: int,
                 final_tanh: bool = False):
        super().__init__()
        m = [1] + list(c_mults)
        self.layers = nn.Sequential(
            WNConv1d(latent_dim, m[-1] * channels, kernel_size=7, padding=3),
            *(DecoderBlock(m[i] * channels, m[i - 1] * channels, strides[i - 1]) for i in range(len(m) - 1, 0, -1)),
            SnakeBeta(m[0] * channels),
            WNConv1d(m[0] * channels, out_channels, kernel_size=7, padding=3, bias=False),
            nn.Tanh() if final_tanh else nn.Identity())


# ---------------------------------------------------------------------------------------------
# VAE bottleneck (stable-audio-tools `VAEBottleneck`; no parameters)


def vae_moments(h: Tensor) -> tuple[Tensor, Tensor]:
    """Encoder output (B, 2D, T) -> (mean, std), std = softplus(scale) + 1e-4."""
    mean, scale = h.chunk(2, dim=1)
    return mean, F.softplus(scale) + 1e-4


def kl_divergence(mean: Tensor, std: Tensor) -> Tensor:
    """stable-audio-tools' VAE KL term: (mean^2 + var - log var - 1) summed over channels, averaged
    over batch and frames (no factor 1/2, as there)."""
    var = std * std
    return (mean * mean + var - var.log() - 1).sum(1).mean()


def check_signal(x: Any, channels: int, what: str, min_length: int = 1) -> Tensor:
    """Raise ShapeError unless x is a finite float tensor (batch, channels, time >= min_length)."""
    if not isinstance(x, Tensor):
        raise ShapeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[1] != channels or x.shape[2] < min_length:
        raise ShapeError(f"{what} must have shape (batch, {channels}, length>={min_length}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ShapeError(f"{what} must be a floating-point tensor, got {x.dtype} of shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ShapeError(f"{what} of shape {tuple(x.shape)} contains NaN or infinite values")
    return x


class Autoencoder(nn.Module):
    """Oobleck VAE: `encoder`, `decoder` and the VAE bottleneck."""

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = c = (config or AutoencoderConfig()).validate()
        self.encoder = OobleckEncoder(c.audio_channels, c.channels, c.c_mults, c.strides, 2 * c.latent_dim)
        self.decoder = OobleckDecoder(c.audio_channels, c.channels, c.c_mults, c.strides, c.latent_dim, c.final_tanh)

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
        return self.decoder.layers[0].weight_v.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.layers[0].weight_v.device

    def encode_moments(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """audio (B, audio_channels, L) -> (mean, std), each (B, latent_dim, ceil(L / ratio)), in the
        model's dtype. The end of the audio is zero-padded to a multiple of the downsampling ratio."""
        check_signal(audio, self.config.audio_channels, "audio")
        pad = -audio.shape[-1] % self.downsampling_ratio
        h = self.encoder(to_channels_last(F.pad(audio.to(self.dtype), (0, pad))))
        return vae_moments(from_channels_last(h))

    def encode(self, audio: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """audio (B, audio_channels, L) -> latents (B, latent_dim, ceil(L / ratio)): the posterior
        mean, or with `sample=True` a draw mean + std * noise. End zero-padded as in `encode_moments`."""
        mean, std = self.encode_moments(audio)
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + std * noise
        return mean.to(audio.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """latents (B, latent_dim, T) -> audio (B, audio_channels, T * ratio)."""
        check_signal(latents, self.latent_dim, "latents")
        return from_channels_last(self.decoder(to_channels_last(latents.to(self.dtype)))).to(latents.dtype)

    def forward(self, audio: Tensor, generator: torch.Generator | None = None, noise_scale: float = 1.0
                ) -> tuple[Tensor, Tensor]:
        """Training pass: (reconstruction from latents mean + noise_scale * std * noise, KL term).
        noise_scale 0 trains a plain autoencoder on the posterior mean (see AutoencoderTrainConfig)."""
        mean, std = self.encode_moments(audio)
        z = mean
        if noise_scale:
            z = mean + noise_scale * std * torch.randn(mean.shape, generator=generator, device=mean.device,
                                                       dtype=mean.dtype)
        return from_channels_last(self.decoder(to_channels_last(z))), kl_divergence(mean, std)

    @torch.no_grad()
    def rescale_latents(self, factor: float) -> None:
        """Make every latent `factor` times larger (posterior mean and std) and the decoder read them
        back unchanged: exact, folded into the weight-norm gains of the last encoder conv and the first
        decoder conv. Used to give a trained autoencoder unit-variance latents for diffusion."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"latent rescale factor must be positive and finite, got {factor}")
        d, enc, dec = self.latent_dim, self.encoder.layers[-1], self.decoder.layers[0]
        enc.weight_g[:d] *= factor          # mean half; std = softplus(scale) stays, then scaled below
        enc.bias[:d] *= factor
        # std = softplus(s) + 1e-4 cannot be scaled exactly through s; the KL-free use of latents
        # (posterior mean) is exact, and sampling keeps the std of the unscaled posterior.
        dec.weight_g /= factor

    def streaming_decoder(self) -> "StreamingDecoder":
        return StreamingDecoder(self)

    def streaming_encoder(self) -> "StreamingEncoder":
        return StreamingEncoder(self)


# ---------------------------------------------------------------------------------------------
# Streaming


class _Streamer:
    """What StreamingDecoder and StreamingEncoder share: input checks, layout, counters, flush."""

    def __init__(self, model: Autoencoder, module: nn.Module, in_channels: int, out_channels: int, what: str):
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

    def __init__(self, model: Autoencoder):
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

    def __init__(self, model: Autoencoder):
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
