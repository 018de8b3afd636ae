"""`lmdm live`: the model as an instrument — a streaming server, a browser UI, OSC and a Python client.

Heavy dependencies (fastapi, uvicorn, websockets, python-osc) are imported where used, and the
public names on first use (PEP 562), so `import lmdm.live` (and `lmdm live --help`) stays light.
"""
from .._lazy import lazy_names

_PUBLIC = {"Block": ".client", "Client": ".client", "SyncClient": ".client", "Engine": ".engine"}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_names(__name__, _PUBLIC)
