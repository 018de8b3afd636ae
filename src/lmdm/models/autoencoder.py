"""The "Oobleck" VAE of Stable Audio Open, with exact streaming encode and decode.

Structure and parameter names follow stable-audio-tools (`models/autoencoders.py`,
`models/bottleneck.py`, `models/blocks.py`) one-to-one, so `pretransform.model.*` of an SAO
checkpoint loads into `Autoencoder` after stripping that prefix: `encoder.layers.N...`,
`decoder.layers.N...`, convs as `weight_g` / `weight_v` / `bias`, SnakeBeta as `alpha` / `beta`.

Shapes: audio (batch, audio_channels, samples), latents (batch, latent_dim, frames), one frame per
`downsampling_ratio` samples (SAO-small: 2048, 21.5 frames per second at 44.1 kHz).

Precision: every op runs in the parameters' dtype (`.to(torch.bfloat16)` is supported and is the
fast path on CPUs with AVX-512 BF16), except the weight-norm fold, done in fp32 and cached at
inference. SnakeBeta runs in the input dtype; `lmdm.bench.autoencoder` measures the bf16-vs-fp32
signal-to-noise ratio of the decoder. `encode`/`decode` return their input's dtype.

The parts: `autoencoder_config.py` (the shape and its checks), `oobleck.py` (the encoder and decoder
networks), `streaming_autoencoder.py` (exact streaming encode / decode); this module joins them with
the VAE bottleneck.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .autoencoder_config import AutoencoderConfig, check_signal
from .oobleck import OobleckDecoder, OobleckEncoder
from .streaming_autoencoder import StreamingDecoder, StreamingEncoder
from .streaming_conv import from_channels_last, to_channels_last

__all__ = ["Autoencoder", "AutoencoderConfig", "LatentAutoencoder", "posterior_draw", "StreamingDecoder", "StreamingEncoder", "kl_divergence",
           "vae_moments"]

Tensor = torch.Tensor


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


class LatentAutoencoder(nn.Module):
    """What every codec offers the runtime: a VAE bottleneck between an `encoder` and a `decoder` that
    map (B, C, L) to (B, C', L'), plus `config` with sample_rate, latent_dim, audio_channels and
    downsampling_ratio. Subclasses build the networks and say how to run them (`_encode_net`,
    `_decode_net`) and which weight names the dtype and device (`_weight`)."""

    def _encode_net(self, audio: Tensor) -> Tensor:
        raise NotImplementedError

    def _decode_net(self, latents: Tensor) -> Tensor:
        raise NotImplementedError

    def _weight(self) -> Tensor:
        raise NotImplementedError

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
        return self._weight().dtype

    @property
    def device(self) -> torch.device:
        return self._weight().device

    def encode_moments(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """audio (B, audio_channels, L) -> (mean, std), each (B, latent_dim, ceil(L / ratio)), in the
        model's dtype. The end of the audio is zero-padded to a multiple of the downsampling ratio."""
        check_signal(audio, self.config.audio_channels, "audio")
        pad = -audio.shape[-1] % self.downsampling_ratio
        return vae_moments(self._encode_net(F.pad(audio.to(self.dtype), (0, pad))))

    def encode(self, audio: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """audio (B, audio_channels, L) -> latents (B, latent_dim, ceil(L / ratio)): the posterior
        mean, or with `sample=True` a draw mean + std * noise. End zero-padded as in `encode_moments`."""
        mean, std = self.encode_moments(audio)
        return posterior_draw(mean, std, 1.0 if sample else 0.0, generator).to(audio.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """latents (B, latent_dim, T) -> audio (B, audio_channels, T * ratio)."""
        check_signal(latents, self.latent_dim, "latents")
        return self._decode_net(latents.to(self.dtype)).to(latents.dtype)

    def forward(self, audio: Tensor, generator: torch.Generator | None = None, noise_scale: float = 1.0
                ) -> tuple[Tensor, Tensor]:
        """Training pass: (reconstruction from latents mean + noise_scale * std * noise, KL term).
        noise_scale 0 trains a plain autoencoder on the posterior mean (see AutoencoderTrainConfig)."""
        mean, std = self.encode_moments(audio)
        return self._decode_net(posterior_draw(mean, std, noise_scale, generator)), kl_divergence(mean, std)

    def streaming_decoder(self) -> StreamingDecoder:
        return StreamingDecoder(self)

    def streaming_encoder(self) -> StreamingEncoder:
        return StreamingEncoder(self)


def posterior_draw(mean: Tensor, std: Tensor, scale: float, generator: torch.Generator | None) -> Tensor:
    """mean + scale * std * noise (just the mean when scale is 0)."""
    if not scale:
        return mean
    return mean + scale * std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)


class Autoencoder(LatentAutoencoder):
    """Oobleck VAE: `encoder`, `decoder` and the VAE bottleneck."""

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = c = (config or AutoencoderConfig()).validate()
        self.encoder = OobleckEncoder(c.audio_channels, c.channels, c.c_mults, c.strides, 2 * c.latent_dim)
        self.decoder = OobleckDecoder(c.audio_channels, c.channels, c.c_mults, c.strides, c.latent_dim, c.final_tanh)

    def _encode_net(self, audio: Tensor) -> Tensor:
        return from_channels_last(self.encoder(to_channels_last(audio)))

    def _decode_net(self, latents: Tensor) -> Tensor:
        return from_channels_last(self.decoder(to_channels_last(latents)))

    def _weight(self) -> Tensor:
        return self.decoder.layers[0].weight_v

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
