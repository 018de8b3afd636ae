"""Training: the shared loop (`loop`), stage-1 fine-tuning (`finetune`), LoRA (`lora`),
autoencoder training (`autoencoder`), the `lmdm train` CLI (`cli`) and `bench_training` (`bench`).
Public names are imported on first use (PEP 562), so `lmdm train --help` does not import torch."""
from .._lazy import lazy_names

_PUBLIC = {"TrainConfig": ".config", "load_config": ".config", "add_lora": ".lora", "merge_lora": ".lora"}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_names(__name__, _PUBLIC)
