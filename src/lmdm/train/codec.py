"""Training of the spectral codec (`"kind": "spectral"`, lmdm.models.codec) on the autoencoder loop.

Same data, phases, checkpoints, held-out scoring and export as the Oobleck trainer
(`lmdm.train.autoencoder`), selected by `autoencoder.model.kind`; the generator's reconstruction
loss differs:
- multi-resolution STFT (spectral convergence + log-magnitude L1) over `fft_sizes`, which for the
  codec should include long windows (4096-8192): only they resolve the partials that carry pitch;
- log-mel L1 (`mel_weight`) at every STFT size >= 512, as DAC and Vocos train (the mel bands weight
  the spectrum as hearing does, so the high octaves do not dominate);
- both computed without the decode's last n_fft - hop samples, which frames past the crop would
  still add to (`SpectralCodec.tail_samples`);
- L1 of the decoder's predicted log magnitudes against the input's STFT in the codec's own framing
  (`spectral_weight`): frame by frame and bin by bin, the most direct signal for pitch, independent
  of the phases;
- with `phase_weight`, the anti-wrapped phase losses of APNet (Ai & Ling 2023) against the same STFT:
  instantaneous phase, group delay (difference across bins) and instantaneous frequency (difference
  across frames), each weighted by the input's magnitude (a silent bin's phase means nothing).
  Measured on held-out pieces, resynthesising the *true* magnitudes: zero phases give chroma 0.64 /
  0.29 / -0.28 on three pieces, bin-centre phase advance 0.87 / 0.61 / 0.04, the true phases 1.0:
  for the judge's pitch figures the phases matter as much as the magnitudes.
The adversarial part (multi-scale STFT discriminator, hinge + feature matching, on from `adv_start`)
is the Oobleck trainer's; `disc_fft_sizes` picks its scales.
"""
from __future__ import annotations

import math

import torch

from ..models.codec import CodecConfig, SpectralCodec, stft
from .autoencoder import AutoencoderObjective, _stft, mrstft_loss, train_autoencoder
from .config import TrainConfig


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 30.0) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, evenly spaced on the HTK mel scale, each
    normalised to unit area (Slaney-style), so wide high bands do not outweigh narrow low ones."""
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)
    edges_mel = torch.linspace(mel(f_min), mel(sample_rate / 2), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = torch.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)).clamp_min(0)
    return (tri * (2.0 / (hi - lo))).float()


def mel_loss(fake: torch.Tensor, real: torch.Tensor, fft_sizes: list[int], banks: dict[int, torch.Tensor]
             ) -> torch.Tensor:
    """Mean over resolutions of the L1 distance of log-mel magnitudes (fp32)."""
    total = 0.0
    with torch.autocast(fake.device.type, enabled=False):
        for n in fft_sizes:
            fb = banks[n].to(fake.device)
            mf = torch.einsum("mf,bcft->bcmt", fb, _stft(fake, n).abs())
            mr = torch.einsum("mf,bcft->bcmt", fb, _stft(real, n).abs())
            total = total + (torch.log(mf + 1e-5) - torch.log(mr + 1e-5)).abs().mean()
    return total / len(fft_sizes)


def _anti_wrap(x: torch.Tensor) -> torch.Tensor:
    """|x| after wrapping into [-pi, pi]: the distance between two angles."""
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()


def phase_losses(spec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Instantaneous phase + group delay + instantaneous frequency distances (APNet's anti-wrapped
    losses) between complex spectra (B, Ca, T, bins), weighted by the target's relative magnitude."""
    p, q = torch.angle(spec), torch.angle(target)
    w = target.abs()
    w = w / w.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
    ip = (w * _anti_wrap(p - q)).mean()
    gd = (w[..., 1:] * _anti_wrap(p.diff(dim=-1) - q.diff(dim=-1))).mean()
    iaf = (w[..., 1:, :] * _anti_wrap(p.diff(dim=-2) - q.diff(dim=-2))).mean()
    return ip + gd + iaf


class CodecObjective(AutoencoderObjective):
    def __init__(self, ae: SpectralCodec, clips: list, heldout: list, cfg: TrainConfig):
        super().__init__(ae, clips, heldout, cfg)
        sr = ae.sample_rate
        self.mel_sizes = [n for n in self.a.fft_sizes if n >= 512]
        # mel bands: about one per 16 bins, 40..160 (DAC uses 5..320 over its windows)
        self.mel_banks = {n: mel_filterbank(n, min(160, max(40, n // 16)), sr) for n in self.mel_sizes}

    def forward_train(self, real: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if not (self.a.spectral_weight or self.a.phase_weight):
            return super().forward_train(real, gen)
        fake, kl, self._spectra = self.ae(real, generator=gen, noise_scale=self.a.noise_scale, spectra=True)
        return fake, kl

    def reconstruction_terms(self, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        spec, self._spectra = getattr(self, "_spectra", None), None
        keep = real.shape[-1] - self.ae.tail_samples
        loss, metrics = super().reconstruction_terms(fake[..., :keep], real[..., :keep])
        if spec is not None:   # frame by frame against the input's own STFT: the densest signal for magnitudes
            c = self.ae.config
            with torch.autocast(real.device.type, enabled=False):
                target = stft(real, c.n_fft, c.hop)
                direct = (torch.log(spec.abs() + 1e-4) - torch.log(target.abs() + 1e-4)).abs().mean()
                phase = phase_losses(spec, target) if self.a.phase_weight else None
            loss = loss + self.a.spectral_weight * direct
            metrics["spectral"] = float(direct.detach())
            if phase is not None:
                loss = loss + self.a.phase_weight * phase
                metrics["phase"] = float(phase.detach())
        fake, real = fake[..., :keep], real[..., :keep]
        if self.a.mel_weight and self.mel_sizes:
            mel = mel_loss(fake, real, self.mel_sizes, self.mel_banks)
            loss = loss + self.a.mel_weight * mel
            metrics["mel"] = float(mel.detach())
        return loss, metrics

    def evaluate(self, step: int) -> dict[str, float]:
        out = super().evaluate(step)
        if self.heldout:   # the mel distance too: it tracks what the judge hears better than SI-SDR
            dist = []
            for _, audio in self.heldout:
                audio = audio[:, :10 * self.ae.sample_rate]
                rec = self.reconstruct(audio)
                dist.append(float(mel_loss(rec[None], audio[None], self.mel_sizes, self.mel_banks)))
            out["heldout_mel"] = sum(dist) / len(dist)
        return out


def train_codec(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict:
    """`lmdm train autoencoder` for a config whose autoencoder.model has "kind": "spectral"."""
    return train_autoencoder(cfg, resume=resume, stop_at=stop_at,
                             build=lambda d: SpectralCodec(CodecConfig.from_dict(d)), objective=CodecObjective)
