"""Loading and saving models: lmdm's own format, Stable Audio Open (`lmdm.sao`) and the paper authors' (`lmdm.authors`) directories, conversion.

lmdm format: a directory with `config.json` (ModelConfig) and `model.safetensors` (every part of
the model in one file, dtype preserved). SAO format: `model_config.json` plus `model.safetensors`
(or `model.ckpt`, read with weights_only=True) with keys `model.model.*` (DiT),
`conditioner.conditioners.*` (number conditioners) and `pretransform.model.*` (autoencoder).

Every load is strict: every key is mapped, every shape checked, every value finite; anything
missing, unexpected or mismatched is reported as one CheckpointError naming the keys.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .config import ModelConfig, PatternConfig
from .errors import CheckpointError, ConfigError
from .engine.model import LiveMusicModel
from .sao import config_from_sao, from_sao_keys, sao_config, to_sao_keys

WEIGHTS, CONFIG, SAO_CONFIG = "model.safetensors", "config.json", "model_config.json"


# -- reading --------------------------------------------------------------------------------

def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict in `folder`: model.safetensors, else model.ckpt (weights only)."""
    st, ckpt = folder / WEIGHTS, folder / "model.ckpt"
    if st.is_file():
        from safetensors.torch import load_file
        try:
            return load_file(str(st))
        except Exception as e:  # safetensors raises its own error type on corrupt files
            raise CheckpointError(f"{st} is not a readable safetensors file: {e}") from e
    if ckpt.is_file():
        try:
            data = torch.load(str(ckpt), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{ckpt} could not be read as a weights-only checkpoint: {e}") from e
        data = data.get("state_dict", data) if isinstance(data, dict) else data
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise CheckpointError(f"{ckpt} does not hold a state dict of tensors")
        return data
    raise CheckpointError(f"no weights in {folder}: expected {WEIGHTS} (or model.ckpt)")


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, refusing anything but an exact match of keys and shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    problems = [(label, keys) for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                ("shape mismatches", mismatched), ("non-finite values in", nonfinite)) if keys]
    if problems:
        lines = [f"{label} ({len(keys)}): " + ", ".join(keys[:8]) + (" …" if len(keys) > 8 else "")
                 for label, keys in problems]
        raise CheckpointError(f"{source} does not match the model:\n  " + "\n  ".join(lines))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


# -- lmdm format ----------------------------------------------------------------------------

def save_pretrained(model: LiveMusicModel, folder: str | Path) -> Path:
    """Write config.json + model.safetensors atomically (temp files renamed into place)."""
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return _write_files(folder, ((WEIGHTS, lambda p: save_file(state, p, metadata={"format": "lmdm"})),
                                 (CONFIG, lambda p: model.config.save(p))))


def directory_layout(folder: str | Path) -> str | None:
    """Which model directory `folder` is: "lmdm" (config.json), "authors" (the paper authors'
    model_config.json) or "sao" (Stable Audio Open's); None when it holds neither config."""
    folder = Path(folder)
    if (folder / CONFIG).is_file():
        return "lmdm"
    if (folder / SAO_CONFIG).is_file():
        from .authors import is_authors_config
        return "authors" if is_authors_config(_read_json(folder / SAO_CONFIG)) else "sao"
    return None


def from_pretrained(folder: str | Path, dtype: torch.dtype | str | None = None, t5_path: str | None = None
                    ) -> LiveMusicModel:
    """Load an lmdm directory (config.json), an official SAO directory or one written by the paper
    authors' code (model_config.json; `lmdm.authors`).
    `dtype`: a torch dtype or "auto" / "fp32" / "bf16" / "int8" (`resolve_dtype`; int8 = torch.qint8: fp32
    with the DiT blocks' linear layers quantized, `LiveMusicModel.quantize_int8`); None keeps the stored one."""
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype)
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model directory {str(folder)!r} does not exist")
    notes: list[str] = []
    if (folder / CONFIG).is_file():
        config = ModelConfig.from_dict(_read_json(folder / CONFIG))
        if t5_path and config.text.kind == "t5":
            config.text.path = t5_path
        state, source = read_weights(folder), str(folder)
    elif (folder / SAO_CONFIG).is_file():
        from .authors import config_from_authors, from_authors_keys, is_authors_config
        raw = _read_json(folder / SAO_CONFIG)
        if is_authors_config(raw):
            config = config_from_authors(raw, t5_path or "")
            state, notes = from_authors_keys(read_weights(folder))
            source = f"{folder} (the paper authors' layout)"
        else:
            config = config_from_sao(raw, t5_path or "")
            state, source = from_sao_keys(read_weights(folder)), f"{folder} (Stable Audio Open layout)"
    else:
        raise CheckpointError(f"{folder} has neither {CONFIG} (lmdm) nor {SAO_CONFIG} (Stable Audio Open)")
    model = LiveMusicModel(config)
    model.load_notes = notes   # what the load set aside, and why (shown by `lmdm convert`)
    stored = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    model.to(stored)
    load_strict(model, state, source)
    if dtype == torch.qint8:
        return model.to(torch.float32).eval().quantize_int8()
    return model.to(dtype) if dtype else model.eval()


# -- Stable Audio Open ----------------------------------------------------------------------

def load_autoencoder_dir(folder: str | Path):
    """An autoencoder export folder of `lmdm train autoencoder` (autoencoder.json +
    autoencoder.safetensors), loaded strictly, in eval mode."""
    from safetensors.torch import load_file

    from .models.codec import build_autoencoder   # Oobleck, or the spectral codec by "kind"
    folder = Path(folder)
    ae = build_autoencoder(json.loads((folder / "autoencoder.json").read_text()))
    load_strict(ae, load_file(str(folder / "autoencoder.safetensors")), str(folder))
    return ae.eval()


def export(model: LiveMusicModel, folder: str | Path, to: str) -> Path:
    """Write `model` as the authors' code ("authors") or stable-audio-tools ("sao") reads it:
    model_config.json + model.safetensors, written atomically; dtype preserved."""
    from safetensors.torch import save_file
    from .authors import authors_config, to_authors_keys
    if to == "authors":
        cfg, state = authors_config(model.config), to_authors_keys(model)
    elif to == "sao":
        if model.config.pattern.pattern != "bidirectional":
            raise ConfigError(f"a {model.config.pattern.pattern!r} LMDM has no Stable Audio Open equivalent; "
                              "use --to authors")
        cfg, state = sao_config(model.config), to_sao_keys(model)
    else:
        raise ConfigError(f"export format must be 'authors' or 'sao', got {to!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in state.items()}
    return _write_files(folder, ((WEIGHTS, lambda p: save_file(state, p, metadata={"format": "pt"})),
                                 (SAO_CONFIG, lambda p: Path(p).write_text(json.dumps(cfg, indent=2) + "\n"))))


def _write_files(folder: Path, writers) -> Path:
    """Each (name, write(path)) writes a temporary file in `folder` that replaces `name` only once
    it is complete, so an interrupted save never leaves a half-written checkpoint."""
    for name, write in writers:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, folder / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return folder


def convert_sao(sao_folder: str | Path, out_folder: str | Path, pattern: str = "block-causal",
                block_frames: int = 48, context_frames: int = 192, t5_path: str | None = None) -> LiveMusicModel:
    """SAO → LMDM ready for stage-1 fine-tuning: the context router is added zero-initialised, so
    before fine-tuning the model reproduces the base model's output for a fully noisy window."""
    base = from_pretrained(sao_folder, t5_path=t5_path)
    if base.config.dit.input_groups:
        raise ConfigError(f"{sao_folder} is already an LMDM")
    config = ModelConfig.from_dict(base.config.to_dict())
    config.dit.input_groups = {"context": config.dit.io_channels + 1}
    config.pattern = PatternConfig(pattern, block_frames, context_frames)
    config.validate()
    model = LiveMusicModel(config).to(next(base.parameters()).dtype)
    state = base.state_dict()
    state["dit.input_groups.context.weight"] = torch.zeros_like(model.dit.input_groups["context"].weight)
    load_strict(model, state, str(sao_folder))
    save_pretrained(model, out_folder)
    return model


# -- the embedded default model -----------------------------------------------------------------

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"


def default_config() -> ModelConfig:
    """The embedded default model's config (its shape, for benchmarks), without loading weights."""
    if not (DEFAULT_MODEL_DIR / CONFIG).is_file():
        raise CheckpointError(f"the embedded default model is missing from this installation ({DEFAULT_MODEL_DIR} "
                              "has no config.json); reinstall lmdm or pass a model directory")
    return ModelConfig.load(DEFAULT_MODEL_DIR / CONFIG)


def load(name: str | Path = "default", dtype: torch.dtype | str | None = None, t5_path: str | None = None,
         cache: str | None = None) -> LiveMusicModel:
    """`load("default")`: the model shipped inside the package (no network); anything else is a
    model directory for `from_pretrained` (lmdm or Stable Audio Open layout). The default model is
    stored in bf16 for size; without a `dtype` it runs in `resolve_dtype("auto")`, because emulated
    bf16 on a CPU without native bf16 kernels is ~7x slower than fp32 (measured on an AVX2 core).
    `cache` overrides the model's `pattern.cache` (exact / none / authors)."""
    if str(name) == "default":
        default_config()  # a clear error when the weights are missing
        model = from_pretrained(DEFAULT_MODEL_DIR, dtype=resolve_dtype("auto") if dtype is None else dtype)
    else:
        model = from_pretrained(name, dtype=dtype, t5_path=t5_path)
    if cache is not None:   # how streams use the KV cache (PatternConfig.cache): exact, none, authors
        model.config.pattern.cache = cache
        model.config.pattern.validate()
    return model


def resolve_dtype(name: str) -> torch.dtype:
    """'auto' = bf16 where the CPU has native bf16 matmuls (AVX-512 BF16 / AMX) or on a GPU, else fp32.
    'int8' gives torch.qint8, which `from_pretrained` reads as: fp32 with int8 DiT blocks (CPU only)."""
    if name == "auto":
        fast = torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        name = "bf16" if fast else "fp32"
    if name == "int8":
        return torch.qint8
    if name not in ("fp32", "bf16"):
        raise ConfigError(f"dtype must be auto, fp32, bf16 or int8, got {name!r}")
    if name == "bf16" and not (torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        warnings.warn("bf16 asked for on a CPU without native bf16 kernels (AVX-512 BF16 / AMX): it is emulated, "
                      "several times slower than fp32; --dtype auto picks fp32 here", stacklevel=2)
    return torch.float32 if name == "fp32" else torch.bfloat16
