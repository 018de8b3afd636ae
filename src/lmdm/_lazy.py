"""Public names of a package imported on first use (PEP 562), so that importing the package (and
`lmdm --help`, which imports several) stays light: torch, numpy and friends load only when a name
that needs them is touched."""
from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_names(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """The module-level `__getattr__` for `package`: `names` maps a public name to the module,
    relative to the package, that defines it; anything else is an AttributeError as usual.
    Use: `__getattr__ = lazy_names(__name__, {"Engine": ".engine"})`."""
    def __getattr__(name: str):
        if name in names:
            return getattr(import_module(names[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
