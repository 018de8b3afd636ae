"""lmdm: Live Music Diffusion Models — streaming, interactive latent audio diffusion.

The public names are imported on first use (PEP 562), so `lmdm --help` and the command line's
argument parsing run without importing torch."""
from importlib import import_module

__version__ = "0.1.0"
_PUBLIC = {"from_pretrained": ".checkpoints", "load": ".checkpoints", "DiTConfig": ".config",
           "ModelConfig": ".config", "PatternConfig": ".config", "TextConfig": ".config", "preset": ".config",
           "LMDMError": ".errors", "LiveMusicModel": ".engine.model", "Stream": ".engine.stream"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module 'lmdm' has no attribute {name!r}")
