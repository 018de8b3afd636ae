"""lmdm's offline audio tagger and embedder, trained on the built-in corpus.

The standard music metrics (FAD with VGGish/CLAP, PaSST KL, CLAP score) download their weights;
lmdm measures itself offline with this small CNN instead: log-mel input, a 128-d embedding (the
space of "FD-lmdm"), and three heads read from the corpus metadata: style, instrument families
present (General MIDI program // 8, plus drums; multi-label) and tempo class. Shipped as a few-MB
safetensors file with the held-out accuracy it reached, written by `train_tagger`.

Generated audio reaches the tagger through a model's codec, which smears timbre and adds a noise
floor. A tagger trained on clean renders only hears codec output as one style (held-out pieces
round-tripped through the default autoencoder: style 0.08 for the v1 tagger), so `train_tagger` can
train on codec views too (`codec=`: each training piece's excerpt after an encode/decode round
trip, used for half the crops) plus random noise and gain; the held-out accuracy is then reported
both for the clean pieces and for their round trips (`codec_*`).
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.labels import INSTRUMENTS, TEMPO_CLASSES, instruments_of, tempo_class
from ..errors import CheckpointError

SHIPPED = Path(__file__).with_name("tagger.safetensors")


@dataclass
class TaggerConfig:
    styles: list[str] = field(default_factory=list)
    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 512
    mels: int = 64
    channels: int = 32
    embed_dim: int = 128
    crop_seconds: float = 5.0


def mel_filterbank(sr: int, n_fft: int, mels: int, fmin: float = 30.0, fmax: float | None = None) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, (mels, n_fft // 2 + 1)."""
    fmax = fmax or sr / 2
    def mel(f):
        return 2595 * np.log10(1 + np.asarray(f) / 700)
    edges = 700 * (10 ** (np.linspace(mel(fmin), mel(fmax), mels + 2) / 2595) - 1)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return torch.tensor(fb, dtype=torch.float32)


class Tagger(nn.Module):
    def __init__(self, cfg: TaggerConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel", mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.mels), persistent=False)
        c = cfg.channels
        layers, ch = [], 1
        for out in (c, 2 * c, 4 * c, 4 * c):
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            ch = out
        self.conv = nn.Sequential(*layers)
        self.embed = nn.Linear(ch, cfg.embed_dim)
        self.style = nn.Linear(cfg.embed_dim, len(cfg.styles))
        self.instruments = nn.Linear(cfg.embed_dim, len(INSTRUMENTS))
        self.tempo = nn.Linear(cfg.embed_dim, len(TEMPO_CLASSES))

    def features(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """(B, channels, samples) or (B, samples) audio → log-mel (B, 1, mels, frames)."""
        x = audio.float().mean(1) if audio.dim() == 3 else audio.float()
        if sample_rate != self.cfg.sample_rate:
            x = F.interpolate(x[:, None], scale_factor=self.cfg.sample_rate / sample_rate, mode="linear",
                              align_corners=False)[:, 0]
        spec = torch.stft(x, self.cfg.n_fft, self.cfg.hop, window=torch.hann_window(self.cfg.n_fft, device=x.device),
                          return_complex=True).abs() ** 2
        return torch.log(self.mel @ spec + 1e-6)[:, None]

    def forward(self, audio: torch.Tensor, sample_rate: int) -> dict[str, torch.Tensor]:
        h = self.conv(self.features(audio, sample_rate)).mean(dim=(2, 3))
        e = self.embed(h)
        z = F.relu(e)
        return {"embedding": e, "style": self.style(z), "instruments": self.instruments(z), "tempo": self.tempo(z)}

    @torch.no_grad()
    def embed_audio(self, audio: torch.Tensor, sample_rate: int) -> np.ndarray:
        return self.eval()(audio, sample_rate)["embedding"].numpy()

    @torch.no_grad()
    def predict(self, audio: torch.Tensor, sample_rate: int) -> list[dict]:
        """Per clip: style, instrument families (p > 0.5) and tempo class, with probabilities."""
        out = self.eval()(audio, sample_rate)
        style_p, inst_p, tempo_p = out["style"].softmax(-1), out["instruments"].sigmoid(), out["tempo"].softmax(-1)
        return [{"style": self.cfg.styles[int(style_p[i].argmax())], "style_probs": style_p[i].tolist(),
                 "instruments": [n for n, p in zip(INSTRUMENTS, inst_p[i]) if p > 0.5],
                 "tempo": TEMPO_CLASSES[int(tempo_p[i].argmax())]} for i in range(len(style_p))]

    def save(self, path: str | Path, evaluation: dict) -> None:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path),
                  metadata={"config": json.dumps(asdict(self.cfg)), "evaluation": json.dumps(evaluation)})

    @classmethod
    def load(cls, path: str | Path = SHIPPED) -> tuple["Tagger", dict]:
        from safetensors import safe_open
        if not Path(path).is_file():
            raise CheckpointError(f"no tagger at {path}: train one with `lmdm tagger --manifest CORPUS/manifest.jsonl`")
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys()}
        tagger = cls(TaggerConfig(**json.loads(meta["config"])))
        tagger.load_state_dict(state)
        return tagger.eval(), json.loads(meta["evaluation"])


def _labels(entries: list[dict], styles: list[str]) -> list[tuple[int, torch.Tensor, int]]:
    out = []
    for e in entries:
        m = e["metadata"]
        inst = torch.zeros(len(INSTRUMENTS))
        for name in instruments_of(m):
            inst[INSTRUMENTS.index(name)] = 1
        out.append((styles.index(m["style"]), inst, tempo_class(m["tempo"])))
    return out


def _crops(audio: list[np.ndarray], sr: int, seconds: float, rng: random.Random, noisy: bool = False
           ) -> torch.Tensor:
    """Random crops; `noisy`: each gets a random gain (±6 dB) and, half the time, white noise 20-60
    dB under its RMS, so a codec's noise floor is not a style cue."""
    n = int(seconds * sr)
    out = []
    for a in audio:
        start = rng.randrange(max(1, a.shape[-1] - n))
        x = torch.from_numpy(np.ascontiguousarray(a[..., start:start + n])).float()
        if noisy:
            x = x * 10 ** (rng.uniform(-6, 6) / 20)
            if rng.random() < 0.5:
                rms = x.pow(2).mean().sqrt().clamp_min(1e-4)
                x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(rng.randrange(2 ** 31))
                                    ) * rms * 10 ** (-rng.uniform(20, 60) / 20)
        out.append(x)
    return torch.stack(out)


@torch.no_grad()
def codec_views(audio: list[np.ndarray], autoencoder, seconds: float, progress: bool = True) -> list[np.ndarray]:
    """The centre `seconds` of each piece after an encode/decode round trip through `autoencoder`
    (audio already at its sample rate and channel count)."""
    n = int(seconds * autoencoder.sample_rate)
    dtype = next(autoencoder.parameters()).dtype
    out = []
    items = audio
    if progress:
        from tqdm import tqdm
        items = tqdm(audio, desc="codec round trips")
    for a in items:
        x = torch.from_numpy(np.ascontiguousarray(a[..., max(0, (a.shape[-1] - n) // 2):][..., :n]))[None]
        y = autoencoder.decode(autoencoder.encode(x.to(dtype)))[0, :, :x.shape[-1]]
        out.append(y.float().numpy())
    return out


def train_tagger(manifest: str | Path, epochs: int = 30, batch: int = 16, holdout: float = 0.2, seed: int = 0,
                 progress: bool = True, codec: str | Path | None = None, codec_seconds: float = 10.0
                 ) -> tuple[Tagger, dict]:
    """Train on a corpus manifest (`lmdm data synth`); pieces are split train/held-out by index.
    `codec`: a model (directory or "default") whose autoencoder round-trips every piece's centre
    `codec_seconds`; training then draws half its crops from those views and adds noise and gain."""
    from ..audio.io import load_audio
    from ..data.dataset import read_manifest
    entries = read_manifest(manifest)
    root = Path(manifest).parent
    styles = sorted({e["metadata"]["style"] for e in entries})
    rng = random.Random(seed)
    torch.manual_seed(seed)
    order = list(range(len(entries)))
    rng.shuffle(order)
    n_test = max(1, int(len(entries) * holdout))
    test_idx, train_idx = order[:n_test], order[n_test:]
    cfg = TaggerConfig(styles=styles)
    views, ae = None, None
    if codec is not None:
        from ..checkpoints import load
        ae = load(codec, dtype=torch.bfloat16).autoencoder
    sr = ae.sample_rate if ae else entries[0]["sample_rate"]
    audio = [load_audio(root / e["path"], sr, ae.config.audio_channels if ae else None) for e in entries]
    if ae:
        views = codec_views(audio, ae, codec_seconds, progress)
    labels = _labels(entries, styles)
    model = Tagger(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train_idx) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc="training tagger")
    for _ in range(epochs):
        rng.shuffle(train_idx)
        for i in range(0, len(train_idx), batch):
            idx = train_idx[i:i + batch]
            pick = [views[j] if views and rng.random() < 0.5 else audio[j] for j in idx]
            x = _crops(pick, sr, cfg.crop_seconds, rng, noisy=views is not None)
            out = model.train()(x, sr)
            loss = (F.cross_entropy(out["style"], torch.tensor([labels[j][0] for j in idx]))
                    + F.binary_cross_entropy_with_logits(out["instruments"], torch.stack([labels[j][1] for j in idx]))
                    + F.cross_entropy(out["tempo"], torch.tensor([labels[j][2] for j in idx])))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    if bar:
        bar.close()
    evaluation = evaluate_tagger(model, [audio[j] for j in test_idx], [labels[j] for j in test_idx], sr, cfg)
    evaluation.update({"train_pieces": len(train_idx), "heldout_pieces": n_test, "epochs": epochs,
                       "manifest": str(manifest)})
    if views:
        through = evaluate_tagger(model, [views[j] for j in test_idx], [labels[j] for j in test_idx], sr, cfg)
        evaluation.update({f"codec_{k}": v for k, v in through.items()})
        evaluation["codec"] = {"model": str(codec), "seconds": codec_seconds, "p_codec_crop": 0.5,
                               "noise": "gain ±6 dB; white noise 20-60 dB under the RMS on half the crops"}
    return model, evaluation


@torch.no_grad()
def evaluate_tagger(model: Tagger, audio: list[np.ndarray], labels: list, sr: int, cfg: TaggerConfig) -> dict:
    """Held-out accuracy on the centre crop of each piece."""
    n = int(cfg.crop_seconds * sr)
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(a[..., max(0, (a.shape[-1] - n) // 2):][..., :n])).float()
                     for a in audio])
    out = model.eval()(x, sr)
    style = (out["style"].argmax(-1) == torch.tensor([l[0] for l in labels])).float().mean().item()
    inst_true = torch.stack([l[1] for l in labels]).bool()
    inst_pred = out["instruments"].sigmoid() > 0.5
    tempo = (out["tempo"].argmax(-1) == torch.tensor([l[2] for l in labels])).float().mean().item()
    return {"style_accuracy": round(style, 4),
            "instrument_accuracy": round((inst_pred == inst_true).float().mean().item(), 4),
            "instrument_f1": round(_f1(inst_pred, inst_true), 4), "tempo_class_accuracy": round(tempo, 4)}


def _f1(pred: torch.Tensor, true: torch.Tensor) -> float:
    tp = (pred & true).sum().item()
    return 2 * tp / max(1, pred.sum().item() + true.sum().item())
