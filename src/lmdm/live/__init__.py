"""`lmdm live`: the model as an instrument — a streaming server, a browser UI, OSC and a Python client.

Heavy dependencies (fastapi, uvicorn, websockets, python-osc) are imported where used, and the
public names on first use (PEP 562), so `import lmdm.live` (and `lmdm live --help`) stays light.
"""
from importlib import import_module

_PUBLIC = {"Block": ".client", "Client": ".client", "SyncClient": ".client", "Engine": ".engine"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module 'lmdm.live' has no attribute {name!r}")
