"""Training: the shared loop (`loop`), stage-1 fine-tuning (`finetune`), LoRA (`lora`),
autoencoder training (`autoencoder`) and `bench_training` (`bench`); the `lmdm train` command is
`lmdm.cli.train`.
Public names are imported on first use (PEP 562), so `lmdm train --help` does not import torch."""
from importlib import import_module

_PUBLIC = {"TrainConfig": ".config", "load_config": ".config", "add_lora": ".lora", "merge_lora": ".lora"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module 'lmdm.train' has no attribute {name!r}")
