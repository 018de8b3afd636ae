"""The Oobleck VAE's shape (`AutoencoderConfig`: defaults, derived latencies, checks, SAO's config
format) and the input check its encoder, decoder and streamers share (`check_signal`).

Light on purpose: configs load, validate and convert without building the network (`oobleck.py`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError, ShapeError

DILATIONS = (1, 3, 9)  # the residual units' dilations in every encoder and decoder block
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
        check_fields(cls, data, "autoencoder")
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


def check_signal(x: Any, channels: int, what: str, min_length: int = 1) -> torch.Tensor:
    """Raise ShapeError unless x is a finite float tensor (batch, channels, time >= min_length)."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[1] != channels or x.shape[2] < min_length:
        raise ShapeError(f"{what} must have shape (batch, {channels}, length>={min_length}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ShapeError(f"{what} must be a floating-point tensor, got {x.dtype} of shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ShapeError(f"{what} of shape {tuple(x.shape)} contains NaN or infinite values")
    return x


def check_fields(cls, data: Any, what: str) -> None:
    """A ConfigError unless `data` is a dict whose keys are all fields of the dataclass `cls`."""
    if not isinstance(data, dict):
        raise ConfigError(f"autoencoder config must be a dict, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {what} config field(s): {unknown}")
