"""The Oobleck encoder and decoder networks of Stable Audio Open's VAE, with stable-audio-tools'
structure and parameter names (`models/autoencoders.py`, `models/blocks.py`): `layers.N...`, convs
as `weight_g` / `weight_v` / `bias`, SnakeBeta as `alpha` / `beta`. Each module streams exactly
through its `streaming()` twin (`streaming_conv.py`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .autoencoder_config import DILATIONS
from .streaming_conv import StreamingResidual, WNConv1d, WNConvTranspose1d, streaming

Tensor = torch.Tensor


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
