"""Autoencoder training for our own (smaller) Oobleck VAEs, on the shared trainer core.

Generator loss: multi-resolution STFT (spectral convergence + log-magnitude L1) + optional waveform
L1 + KL (small weight)
+ adversarial and feature-matching terms from a multi-scale complex-STFT discriminator (EnCodec's
MS-STFTD in miniature), switched on at `adv_start`. Two optimizer phases alternate 1:1 on the same
batch: the generator, then the discriminator on the generator's detached reconstruction.
Held-out clips (the manifest's last `heldout_clips`) are reconstructed every `run.eval_every`
steps and scored by SI-SDR and multi-resolution STFT distance.
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from ..models.autoencoder import Autoencoder, AutoencoderConfig
from .config import TrainConfig
from .loop import Objective, Phase, Trainer, init_distributed, item_generator, with_ema


def _stft(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """(B, C, L) -> complex (B, C, F, T), in fp32 whatever the autocast."""
    b, c, n = x.shape
    spec = torch.stft(x.float().reshape(b * c, n), n_fft, n_fft // 4, window=torch.hann_window(n_fft, device=x.device),
                      return_complex=True)
    return spec.view(b, c, *spec.shape[1:])


def mrstft_loss(fake: torch.Tensor, real: torch.Tensor, fft_sizes: list[int]) -> torch.Tensor:
    """Mean over resolutions of spectral convergence + L1 of log magnitudes."""
    total = 0.0
    with torch.autocast(fake.device.type, enabled=False):
        for n in fft_sizes:
            mf, mr = _stft(fake, n).abs(), _stft(real, n).abs()
            sc = torch.linalg.norm(mr - mf) / torch.linalg.norm(mr).clamp_min(1e-7)
            total = total + sc + (torch.log(mf + 1e-5) - torch.log(mr + 1e-5)).abs().mean()
    return total / len(fft_sizes)


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB per item, channels flattened."""
    est, ref = estimate.flatten(1).double(), reference.flatten(1).double()
    est, ref = est - est.mean(1, keepdim=True), ref - ref.mean(1, keepdim=True)
    scale = (est * ref).sum(1, keepdim=True) / ref.square().sum(1, keepdim=True).clamp_min(1e-12)
    target = scale * ref
    return 10 * torch.log10(target.square().sum(1).clamp_min(1e-12) / (est - target).square().sum(1).clamp_min(1e-12))


class STFTDiscriminator(nn.Module):
    """One 2-D conv stack per STFT resolution over [real | imag] of every channel."""

    def __init__(self, audio_channels: int, channels: int, fft_sizes: list[int]):
        super().__init__()
        self.fft_sizes = list(fft_sizes)
        self.scales = nn.ModuleList()
        for _ in self.fft_sizes:
            layers = [nn.Conv2d(2 * audio_channels, channels, (3, 9), padding=(1, 4))]
            layers += [nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))
                       for d in (1, 2, 4)]
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.Conv2d(channels, 1, 3, padding=1)]
            self.scales.append(nn.ModuleList(layers))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Per scale: (logits, feature maps)."""
        out = []
        for n, layers in zip(self.fft_sizes, self.scales):
            spec = _stft(x, n)                                     # (B, C, F, T)
            h = torch.cat((spec.real, spec.imag), 1).transpose(2, 3).to(layers[0].weight.dtype)  # (B, 2C, T, F)
            feats = []
            for i, layer in enumerate(layers):
                h = layer(h)
                if i < len(layers) - 1:
                    h = F.leaky_relu(h, 0.2)
                    feats.append(h)
            out.append((h, feats))
        return out


def load_clips(manifest: str, sample_rate: int, channels: int, crop: int) -> tuple[list[dict], list]:
    """Every clip of the manifest in memory as (path, audio (C, L) tensor); short clips are an error."""
    from ..audio.io import load_audio
    from ..data.dataset import read_manifest
    entries = read_manifest(manifest)
    if not entries:
        raise DataError(f"manifest {manifest} lists no clips")
    root = Path(manifest).parent
    clips = [(e["path"], torch.from_numpy(load_audio(root / e["path"], sample_rate, channels))) for e in entries]
    short = [f"{p} ({a.shape[-1] / sample_rate:.2f} s)" for p, a in clips if a.shape[-1] < crop]
    if short:
        raise DataError(f"{len(short)} clip(s) in {manifest} are shorter than the training crop of "
                        f"{crop / sample_rate:.2f} s (autoencoder.crop_seconds): {', '.join(short[:10])}")
    return entries, clips


class AutoencoderObjective(Objective):
    def __init__(self, ae: Autoencoder, clips: list, heldout: list, cfg: TrainConfig):
        a = cfg.autoencoder
        self.ae, self.clips, self.heldout, self.cfg, self.a = ae, clips, heldout, cfg, a
        ratio = ae.downsampling_ratio
        self.crop = max(ratio, round(a.crop_seconds * ae.sample_rate) // ratio * ratio)
        self.modules = {"autoencoder": ae}
        trained = [(n, p) for n, p in ae.named_parameters() if any(fnmatch.fnmatch(n, pat) for pat in a.trainable)]
        if not trained:
            raise ConfigError(f"autoencoder.trainable {a.trainable} matches no parameter (names look like "
                              f"'encoder.layers.0.weight', 'decoder.layers.0.weight')")
        names = {n for n, _ in trained}
        for n, p in ae.named_parameters():
            p.requires_grad_(n in names)
        self.encoder_frozen = not any(n.startswith("encoder.") for n, _ in trained)
        if a.latent_noise and not self.encoder_frozen:
            raise ConfigError("autoencoder.latent_noise applies to decoder-only training (trainable: ['decoder.*']); "
                              "a trained encoder has noise_scale")
        if self.encoder_frozen and a.unit_latents:
            raise ConfigError("autoencoder.unit_latents rescales the latents, which a frozen encoder must keep: "
                              "set it to false when training only the decoder")
        self.phases = [Phase("generator", trained)]
        self.disc = None
        if a.adv_weight > 0:
            self.disc = STFTDiscriminator(ae.config.audio_channels, a.disc_channels, a.disc_fft_sizes or a.fft_sizes[:3])
            self.modules["discriminator"] = self.disc
            self.phases.append(Phase("discriminator", list(self.disc.named_parameters()), lr=a.disc_lr,
                                     betas=(0.5, 0.9)))
        self.frames_per_item = self.crop // ratio
        self.seconds_per_item = self.crop / ae.sample_rate
        self._fake: dict[int, torch.Tensor] = {}

    def num_items(self) -> int:
        return len(self.clips)

    def load_batch(self, indices, epochs, keys) -> dict:
        crops, paths, starts = [], [], []
        for i, key in zip(indices, keys):
            path, audio = self.clips[i]
            g = item_generator(self.cfg.run.seed, key)
            start = int(torch.randint(0, audio.shape[-1] - self.crop + 1, (1,), generator=g))
            crops.append(audio[:, start:start + self.crop])
            paths.append(path)
            starts.append(start)
        return {"audio": torch.stack(crops), "paths": paths, "start": starts, "keys": list(keys)}

    def describe(self, batch: dict) -> str:
        return ", ".join(f"{p}@{s}" for p, s in zip(batch["paths"], batch["start"]))

    def _disc_view(self, x: torch.Tensor, key: int) -> torch.Tensor:
        """What the discriminator sees of a batch: with `disc_crop_seconds`, one window of the crop
        (drawn from the batch key, the same for real and fake in both phases), which cuts its cost
        by crop / window; otherwise all of it."""
        n = round(self.a.disc_crop_seconds * self.ae.sample_rate)
        if not 0 < n < x.shape[-1]:
            return x
        start = int(torch.randint(0, x.shape[-1] - n + 1, (1,), generator=item_generator(self.cfg.run.seed, key, 1)))
        return x[..., start:start + n]

    def _adv(self, step: int) -> bool:
        return self.disc is not None and step >= self.a.adv_start

    def loss(self, phase: str, batch: dict, step: int):
        a, real = self.a, batch["audio"].to(self.ae.device)
        if self.disc is not None:
            self.disc.requires_grad_(phase == "discriminator")
        key = batch["keys"][0]
        if phase == "generator":
            gen = torch.Generator(device=real.device).manual_seed(self.cfg.run.seed * 31 + key)
            if self.encoder_frozen:   # the latents are fixed: no encoder graph, no KL to train
                with torch.no_grad():
                    z = self.ae.encode(real)
                    if a.latent_noise:   # a decoder robust to the near-misses a DiT generates
                        z = z + a.latent_noise * torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
                fake, kl = self.ae.decode(z)[..., :real.shape[-1]], torch.zeros((), device=real.device)
            else:
                fake, kl = self.forward_train(real, gen)
            fake = fake.to(real.dtype)
            self._fake[key] = fake.detach()
            loss, metrics = self.reconstruction_terms(fake, real)
            loss = loss + a.kl_weight * kl
            metrics["kl"] = float(kl.detach())
            if self._adv(step):
                d_fake, d_real = self.disc(self._disc_view(fake, key)), self.disc(self._disc_view(real, key))
                adv = sum((F.relu(1 - lf).mean() if a.adv_loss == "hinge" else (lf - 1).square().mean())
                          for lf, _ in d_fake) / len(d_fake)
                fm = sum(F.l1_loss(ff, fr.detach()) for (_, fs), (_, rs) in zip(d_fake, d_real)
                         for ff, fr in zip(fs, rs)) / sum(len(fs) for _, fs in d_fake)
                loss = loss + a.adv_weight * adv + a.fm_weight * fm
                metrics.update(adv=float(adv.detach()), fm=float(fm.detach()))
            return loss, metrics
        fake = self._fake.pop(key)
        if not self._adv(step):
            return torch.zeros((), requires_grad=True), {}
        d_fake, d_real = self.disc(self._disc_view(fake, key)), self.disc(self._disc_view(real, key))
        if a.adv_loss == "hinge":
            loss = sum(F.relu(1 + lf).mean() + F.relu(1 - lr).mean() for (lf, _), (lr, _) in zip(d_fake, d_real))
        else:
            loss = sum(lf.square().mean() + (lr - 1).square().mean() for (lf, _), (lr, _) in zip(d_fake, d_real))
        return loss / len(d_fake), {}

    def forward_train(self, real: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL) of a batch with a trained encoder."""
        return self.ae(real, generator=gen, noise_scale=self.a.noise_scale)

    def reconstruction_terms(self, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's reconstruction loss (weighted) and its parts: MR-STFT and the waveform L1."""
        a = self.a
        stft = mrstft_loss(fake, real, a.fft_sizes)
        loss, metrics = a.stft_weight * stft, {"stft": float(stft.detach())}
        if a.wave_weight:
            wave = (fake.float() - real.float()).abs().mean() / real.float().abs().mean().clamp_min(1e-5)
            loss = loss + a.wave_weight * wave
            metrics["wave"] = float(wave.detach())
        return loss, metrics

    def on_step(self, step: int) -> None:
        self._fake.clear()

    @torch.no_grad()
    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        was = self.ae.training
        self.ae.eval()
        out = self.ae.decode(self.ae.encode(audio[None].to(self.ae.device)))[0, :, :audio.shape[-1]]
        self.ae.train(was)
        return out.float().cpu()

    def evaluate(self, step: int) -> dict[str, float]:
        """Mean SI-SDR (dB) and multi-resolution STFT distance over the held-out clips (first 10 s)."""
        if not self.heldout:
            return {}
        sdr, dist = [], []
        for _, audio in self.heldout:
            audio = audio[:, :10 * self.ae.sample_rate]
            rec = self.reconstruct(audio)
            sdr.append(float(si_sdr(rec[None], audio[None])[0]))
            dist.append(float(mrstft_loss(rec[None], audio[None], self.a.fft_sizes)))
        return {"heldout_si_sdr_db": sum(sdr) / len(sdr), "heldout_mrstft": sum(dist) / len(dist)}

    def demo(self, step: int, folder: Path) -> None:
        import soundfile as sf
        if not self.heldout:
            return
        folder.mkdir(parents=True, exist_ok=True)
        path, audio = self.heldout[0]
        rec = self.reconstruct(audio[:, :10 * self.ae.sample_rate])
        sf.write(str(folder / f"step-{step:08d}-recon.wav"), rec.clamp(-1, 1).T.numpy(), self.ae.sample_rate)

    def export(self, folder: Path, ema: dict[str, torch.Tensor] | None) -> None:
        """autoencoder.safetensors + autoencoder.json (AutoencoderConfig); EMA weights when EMA is on.
        With `autoencoder.unit_latents`, the latents are rescaled to unit standard deviation over the
        training clips first (exactly, in the weights: `Autoencoder.rescale_latents`), so a diffusion
        model trained on them sees the scale its noise schedule assumes."""
        from safetensors.torch import save_file
        ae = with_ema(self.ae, ema)
        if self.a.unit_latents:
            std = latent_std(ae, self.clips)
            ae.rescale_latents(1.0 / std)
            (folder / "latent_scale.json").parent.mkdir(parents=True, exist_ok=True)
            (folder / "latent_scale.json").write_text(json.dumps({"measured_std": std, "rescaled_by": 1 / std}) + "\n")
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(folder / "autoencoder.safetensors"))
        (folder / "autoencoder.json").write_text(json.dumps(ae.config.to_dict(), indent=2) + "\n")


@torch.no_grad()
def latent_std(ae: Autoencoder, clips: list, max_clips: int = 48, seconds: float = 10.0) -> float:
    """Standard deviation of the posterior mean over (the first `seconds` of) up to `max_clips` clips."""
    was, total, square, count = ae.training, 0.0, 0.0, 0
    ae.eval()
    step = max(1, len(clips) // max_clips)
    for _, audio in clips[::step][:max_clips]:
        z = ae.encode(audio[None, :, : round(seconds * ae.sample_rate)].to(ae.device, ae.dtype)).double()
        total, square, count = total + float(z.sum()), square + float(z.square().sum()), count + z.numel()
    ae.train(was)
    mean = total / count
    return max(square / count - mean * mean, 1e-12) ** 0.5


def train_autoencoder(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None,
                      build=None, objective=AutoencoderObjective) -> dict:
    """Train the Oobleck VAE of `autoencoder.model`; `build(model_dict)` / `objective`: another codec
    and its objective on the same data and loop (lmdm.train.codec)."""
    a = cfg.autoencoder
    if not a.manifest:
        raise ConfigError("autoencoder.manifest is not set: point it at a manifest.jsonl of audio clips")
    torch.manual_seed(cfg.run.seed)
    ae = (build or (lambda d: Autoencoder(AutoencoderConfig.from_dict(d))))(a.model).float()
    if a.init:
        from safetensors.torch import load_file
        from ..checkpoints import load_strict
        load_strict(ae, load_file(a.init), a.init)
    crop = max(ae.downsampling_ratio, round(a.crop_seconds * ae.sample_rate) // ae.downsampling_ratio
               * ae.downsampling_ratio)
    _, clips = load_clips(a.manifest, ae.sample_rate, ae.config.audio_channels, crop)
    if len(clips) <= a.heldout_clips:
        raise DataError(f"manifest {a.manifest} has {len(clips)} clip(s); autoencoder.heldout_clips="
                        f"{a.heldout_clips} leaves none to train on")
    train, held = clips[:len(clips) - a.heldout_clips], clips[len(clips) - a.heldout_clips:]
    ddp = init_distributed()
    ae.to(ddp.device)
    obj = objective(ae, train, held, cfg)
    if obj.disc is not None:
        obj.disc.to(ddp.device)
    return Trainer(obj, cfg, ddp).fit(resume=resume, stop_at=stop_at)
