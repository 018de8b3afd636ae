"""lmdm: Live Music Diffusion Models — streaming, interactive latent audio diffusion."""
from .checkpoints import from_pretrained, load
from .config import DiTConfig, ModelConfig, PatternConfig, TextConfig, preset
from .errors import LMDMError
from .model import LiveMusicModel
from .stream import Stream

__version__ = "0.1.0"
__all__ = ["DiTConfig", "LMDMError", "LiveMusicModel", "ModelConfig", "PatternConfig", "Stream", "TextConfig",
           "from_pretrained", "load", "preset"]
