"""lmdm: Live Music Diffusion Models — streaming, interactive latent audio diffusion.

The public names are imported on first use (PEP 562), so `lmdm --help` and the command line's
argument parsing run without importing torch."""
from ._lazy import lazy_names

__version__ = "0.1.0"
_PUBLIC = {"from_pretrained": ".checkpoints", "load": ".checkpoints", "DiTConfig": ".config",
           "ModelConfig": ".config", "PatternConfig": ".config", "SamplingConfig": ".config",
           "TextConfig": ".config", "preset": ".config", "LMDMError": ".errors", "LiveMusicModel": ".engine.model",
           "Stream": ".engine.stream"}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_names(__name__, _PUBLIC)
