"""`lmdm live`: the model as an instrument — a streaming server, a browser UI, OSC and a Python client.

Heavy dependencies (fastapi, uvicorn, websockets, python-osc) are imported where used, so
`import lmdm.live` works without them.
"""
from .client import Block, Client, SyncClient
from .engine import Engine

__all__ = ["Block", "Client", "Engine", "SyncClient"]
