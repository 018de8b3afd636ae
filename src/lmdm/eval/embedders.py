"""Audio embedders for Fréchet distance: lmdm's own tagger by default, standard ones from LOCAL weights.

An embedder is any callable `embed(audio, sample_rate) -> (N, D) np.ndarray` where `audio` is a batch
(N, channels, samples) or (N, samples) (numpy or torch, any sample rate, any channel count): one
embedding per clip. Every embedder here mixes to mono first (a mono signal and the same signal copied
to both stereo channels embed identically) and resamples to its own rate. Nothing downloads: a spec
names a local file or directory, and a missing one is an error that says what to pass.

Specs (`lmdm eval --embedder SPEC`):
- `lmdm` or `lmdm:/path/tagger.safetensors`: the tagger's 128-d embedding (FD-lmdm);
- `vggish:/path/vggish.pth`: the torchvggish (harritaylor) state dict, e.g. vggish-10086976.pth;
  clips are cut into 0.96 s log-mel examples and the 128-d pre-PCA embeddings (last ReLU removed,
  as FAD implementations do) are averaged per clip. Checked against torchvggish f3f9096: the same 18
  state-dict keys and shapes (strict load), the same flatten order, log-mel examples equal to its
  `vggish_input` to 1e-7. One embedding per clip (FD over clips) differs from published FAD, which
  takes the statistics over every 0.96 s example, so FD-vggish here is not comparable to FAD tables;
- `clap:/path/dir`: a transformers `ClapModel` directory (config.json + weights, optionally
  preprocessor_config.json), loaded with `local_files_only=True`; the projected audio embedding;
- `openl3[:content_type]`: needs the `openl3` package (not a dependency of lmdm).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError

Embedder = Callable[[object, int], np.ndarray]


def _mono(audio, dim_ok=(2, 3)) -> torch.Tensor:
    """(N, C, T) or (N, T) numpy/torch -> (N, T) float32 mono mix."""
    x = torch.as_tensor(np.asarray(audio) if not isinstance(audio, torch.Tensor) else audio).float()
    if x.dim() not in dim_ok:
        raise ConfigError(f"audio must be (clips, channels, samples) or (clips, samples), got {tuple(x.shape)}")
    return x.mean(1) if x.dim() == 3 else x


def _resample(x: torch.Tensor, sr: int, target: int) -> np.ndarray:
    x = x.numpy()
    if sr == target:
        return x
    from scipy.signal import resample_poly
    g = math.gcd(int(sr), int(target))
    return resample_poly(x, target // g, sr // g, axis=-1).astype(np.float32)


class NamedEmbedder:
    """A callable embedder with a `name` (used in report keys, e.g. FD-vggish) and its embedding `dim`."""

    def __init__(self, name: str, fn: Callable[[torch.Tensor, int], np.ndarray], dim: int | None = None):
        self.name, self._fn, self.dim = name, fn, dim

    def __call__(self, audio, sample_rate: int) -> np.ndarray:
        x = _mono(audio)
        if len(x) == 0:
            return np.zeros((0, self.dim or 0))
        return np.asarray(self._fn(x, int(sample_rate)), dtype=np.float64)

    def __repr__(self) -> str:
        return f"NamedEmbedder({self.name!r})"


# -- lmdm ------------------------------------------------------------------------------------

def lmdm_embedder(tagger=None) -> NamedEmbedder:
    """The tagger's embedding (the space of FD-lmdm); `tagger` is a Tagger, a weights path or None (shipped)."""
    from .tagger import Tagger
    if tagger is None:
        tagger = Tagger.load()[0]
    elif isinstance(tagger, (str, Path)):
        tagger = Tagger.load(tagger)[0]
    return NamedEmbedder("lmdm", lambda x, sr: tagger.embed_audio(x, sr), tagger.cfg.embed_dim)


# -- VGGish ----------------------------------------------------------------------------------

VGGISH_RATE, VGGISH_WIN, VGGISH_HOP, VGGISH_FFT, VGGISH_MELS, VGGISH_FRAMES = 16000, 400, 160, 512, 64, 96


def _hz_to_mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)


def vggish_mel_matrix() -> np.ndarray:
    """The (257, 64) mel weights of VGGish's mel_features.spectrogram_to_mel_matrix (125-7500 Hz, HTK)."""
    bins = VGGISH_FFT // 2 + 1
    spec_mel = _hz_to_mel(np.linspace(0.0, VGGISH_RATE / 2, bins))
    edges = np.linspace(_hz_to_mel(125.0), _hz_to_mel(7500.0), VGGISH_MELS + 2)
    w = np.empty((bins, VGGISH_MELS))
    for i in range(VGGISH_MELS):
        lo, mid, hi = edges[i:i + 3]
        w[:, i] = np.maximum(0.0, np.minimum((spec_mel - lo) / (mid - lo), (hi - spec_mel) / (hi - mid)))
    w[0, :] = 0.0
    return w


def vggish_examples(wave: np.ndarray) -> np.ndarray:
    """Mono 16 kHz waveform -> (n, 96, 64) log-mel examples (25 ms / 10 ms frames, log(mel + 0.01))."""
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) < VGGISH_WIN:
        wave = np.pad(wave, (0, VGGISH_WIN - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, VGGISH_WIN)[::VGGISH_HOP]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(VGGISH_WIN) / VGGISH_WIN)  # periodic Hann
    spec = np.abs(np.fft.rfft(frames * window, VGGISH_FFT))
    logmel = np.log(spec @ vggish_mel_matrix() + 0.01)
    if len(logmel) < VGGISH_FRAMES:  # a clip shorter than one example: repeat it (no silence bias)
        logmel = np.resize(logmel, (VGGISH_FRAMES, VGGISH_MELS))
    n = len(logmel) // VGGISH_FRAMES
    return logmel[: n * VGGISH_FRAMES].reshape(n, VGGISH_FRAMES, VGGISH_MELS).astype(np.float32)


class VGGish(nn.Module):
    """The VGGish network with torchvggish's module names (features.*, embeddings.*), so its
    published state dict loads strictly. Input (n, 1, 96, 64) log-mel examples -> (n, 128)."""

    def __init__(self):
        super().__init__()
        layers, ch = [], 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(ch, v, 3, padding=1), nn.ReLU(inplace=True)]
                ch = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True), nn.Linear(4096, 4096),
                                        nn.ReLU(True), nn.Linear(4096, 128), nn.ReLU(True))

    def forward(self, x: torch.Tensor, final_relu: bool = True) -> torch.Tensor:
        x = self.features(x)                       # (n, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(len(x), -1)  # torchvggish's transpose(1,3), transpose(1,2)
        head = self.embeddings if final_relu else self.embeddings[:-1]
        return head(x)


def load_vggish(path: str | Path) -> VGGish:
    """A torchvggish state dict (.pth), loaded strictly: a wrong layout names the missing/unexpected keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no VGGish weights at {path}: pass --embedder vggish:/path/to/vggish.pth "
                              "(the torchvggish state dict, e.g. vggish-10086976.pth; lmdm never downloads it)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read VGGish weights {path}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a state dict (got {type(state).__name__})")
    net = VGGish()
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
           if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or bad:
        raise CheckpointError(f"{path} is not a torchvggish VGGish state dict: missing keys {missing}, "
                              f"unexpected keys {unexpected}" + (f", wrong shapes {bad}" if bad else ""))
    net.load_state_dict(state, strict=True)
    return net.eval()


def vggish_embedder(path: str | Path) -> NamedEmbedder:
    net = load_vggish(path)

    @torch.no_grad()
    def embed(x: torch.Tensor, sr: int) -> np.ndarray:
        waves = _resample(x, sr, VGGISH_RATE)
        out = []
        for w in waves:
            ex = torch.from_numpy(vggish_examples(w))[:, None]
            out.append(net(ex, final_relu=False).mean(0).numpy())
        return np.stack(out)

    return NamedEmbedder("vggish", embed, 128)


# -- CLAP ------------------------------------------------------------------------------------

def clap_embedder(path: str | Path) -> NamedEmbedder:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"no CLAP model at {path}: pass --embedder clap:/path/to/dir, a transformers "
                              "ClapModel directory (config.json + weights) already on disk; lmdm never downloads it")
    try:
        from transformers import ClapFeatureExtractor, ClapModel
    except ImportError as e:
        raise ConfigError(f"the CLAP embedder needs transformers: pip install transformers ({e})") from e
    try:
        model = ClapModel.from_pretrained(str(path), local_files_only=True).eval()
    except Exception as e:
        raise CheckpointError(f"cannot load a ClapModel from {path}: {e}") from e
    acfg = model.config.audio_config
    if (path / "preprocessor_config.json").is_file():
        fe = ClapFeatureExtractor.from_pretrained(str(path), local_files_only=True)
    else:
        fe = ClapFeatureExtractor(feature_size=acfg.num_mel_bins)
    truncation = "fusion" if getattr(acfg, "enable_fusion", False) else "rand_trunc"

    @torch.no_grad()
    def embed(x: torch.Tensor, sr: int) -> np.ndarray:
        waves = _resample(x, sr, fe.sampling_rate)
        inputs = fe(list(waves), sampling_rate=fe.sampling_rate, return_tensors="pt", truncation=truncation)
        out = model.get_audio_features(input_features=inputs["input_features"], is_longer=inputs.get("is_longer"))
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return out.float().numpy()

    return NamedEmbedder("clap", embed, model.config.projection_dim)


# -- OpenL3 ----------------------------------------------------------------------------------

def openl3_embedder(content_type: str | None = None) -> NamedEmbedder:
    try:
        import openl3
    except ImportError as e:
        raise ConfigError("the openl3 embedder needs the `openl3` package, which lmdm does not install: "
                          "pip install openl3 (its weights ship inside the package)") from e
    content_type = content_type or "music"

    def embed(x: torch.Tensor, sr: int) -> np.ndarray:
        out = []
        for w in x.numpy():
            emb, _ = openl3.get_audio_embedding(w, sr, content_type=content_type, verbose=False)
            out.append(np.asarray(emb).mean(0))
        return np.stack(out)

    return NamedEmbedder("openl3", embed)


# -- registry --------------------------------------------------------------------------------

EMBEDDERS: dict[str, Callable[[str | None], NamedEmbedder]] = {
    "lmdm": lambda arg: lmdm_embedder(arg),
    "vggish": lambda arg: vggish_embedder(_need(arg, "vggish", "/path/to/vggish.pth")),
    "clap": lambda arg: clap_embedder(_need(arg, "clap", "/path/to/clap_dir")),
    "openl3": lambda arg: openl3_embedder(arg),
}


def _need(arg: str | None, name: str, example: str) -> str:
    if not arg:
        raise ConfigError(f"the {name} embedder needs local weights: pass --embedder {name}:{example}")
    return arg


def load_embedder(spec: str | None = None, tagger=None) -> NamedEmbedder:
    """`name` or `name:path` -> an embedder. `lmdm` without a path uses `tagger` (a Tagger or path) if given."""
    spec = spec or "lmdm"
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name not in EMBEDDERS:
        raise ConfigError(f"unknown embedder {name!r}: choose one of {sorted(EMBEDDERS)} "
                          "(e.g. --embedder vggish:/path/to/vggish.pth)")
    if name == "lmdm" and not arg and tagger is not None:
        return lmdm_embedder(tagger)
    return EMBEDDERS[name](arg or None)
