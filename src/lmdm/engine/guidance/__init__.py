"""Guidance (the protocol and registry: `base`). The built-in guidance, registered in this order
(the order of the branches in the model batch and of the refiners on the clean estimate):
branches `cfg` (CFG), `sketch_cfg`, `beat_cfg`; refiners `prompt`, then `control`.
A new guidance is one module like these plus its import here (or anywhere before its streams start)."""
# isort: off   (the order of these imports is the registration order)
from . import cfg, sketch_cfg, beat_cfg, prompt, control  # noqa: F401
# isort: on
from .base import REGISTRY, Branch, Guidance, Refiner, Scale, branches, drops, get, refiners, register, unregister

__all__ = ["REGISTRY", "Branch", "Guidance", "Refiner", "Scale", "branches", "drops", "get", "refiners", "register", "unregister"]
