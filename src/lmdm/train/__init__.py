"""Training: the shared loop (`loop`), stage-1 fine-tuning (`finetune`), LoRA (`lora`),
autoencoder training (`autoencoder`), the `lmdm train` CLI (`cli`) and `bench_training` (`bench`)."""
from .config import TrainConfig, load_config
from .lora import add_lora, merge_lora

__all__ = ["TrainConfig", "load_config", "add_lora", "merge_lora"]
