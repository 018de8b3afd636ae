"""Training: the shared loop (`loop`), stage-1 fine-tuning (`finetune`), LoRA (`lora`),
autoencoder training (`autoencoder`) and `bench_training` (`bench`); the `lmdm train` command is
`lmdm.cli.train`.
Public names are imported on first use (PEP 562), so `lmdm train --help` does not import torch."""
from .._lazy import lazy_names

_PUBLIC = {"TrainConfig": ".config", "load_config": ".config", "add_lora": ".lora", "merge_lora": ".lora"}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_names(__name__, _PUBLIC)
