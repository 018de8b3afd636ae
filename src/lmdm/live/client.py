"""`lmdm.live.Client`: a Python client for scripts and tests (asyncio, `websockets`).

    async with Client("ws://127.0.0.1:8000/ws") as c:
        await c.start([("warm piano", 1.0)], pace="none")
        async for block in c.blocks(max_blocks=100):   # Block(index, sample_rate, audio (ch, n))
            ...
        await c.set_prompts([("dub techno", 1.0)])       # returns the control's id; its ack arrives
                                                          # in `c.acks` before the block it names

`SyncClient` wraps it for plain scripts: `with SyncClient(url) as c: c.start(...); c.read(seconds=5)`.
"""
from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field

import numpy as np

from . import protocol as P


@dataclass
class Block:
    index: int
    sample_rate: int
    audio: np.ndarray  # float32 (channels, samples)


@dataclass
class Client:
    url: str
    open_timeout: float = 10.0
    info: dict = field(default_factory=dict)          # the server's hello
    acks: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    status: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self._ws = None
        self._ids = itertools.count(1)

    async def connect(self) -> "Client":
        import websockets
        self._ws = await websockets.connect(self.url, open_timeout=self.open_timeout, max_size=2 ** 24)
        self.info = json.loads(await asyncio.wait_for(self._ws.recv(), self.open_timeout))
        if self.info.get("type") != "hello":
            raise P.ProtocolError(f"server did not say hello: {self.info}")
        return self

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()

    # -- controls (each returns the message id; the ack or error comes back with that id) ---

    async def send(self, msg: dict) -> int:
        msg = {"id": next(self._ids)} | msg
        await self._ws.send(json.dumps(msg))
        return msg["id"]

    async def send_raw(self, data: str | bytes) -> None:
        """Anything, unvalidated (tests of the server's error handling)."""
        await self._ws.send(data)

    async def start(self, prompts=None, **options) -> int:
        msg = {"type": "start", **{k: v for k, v in options.items() if v is not None}}
        if prompts is not None:
            msg["prompts"] = _prompts(prompts)
        return await self.send(msg)

    async def stop(self) -> int:
        return await self.send({"type": "stop"})

    async def set_prompts(self, prompts) -> int:
        return await self.send({"type": "prompts", "prompts": _prompts(prompts)})

    async def set_weights(self, weights) -> int:
        return await self.send({"type": "weights", "weights": list(weights)})

    async def set_cfg(self, scale: float) -> int:
        return await self.send({"type": "cfg", "scale": scale})

    async def set_guidance(self, name: str, strength: float, steps: int | None = None) -> int:
        """Any registered guidance by name (`info["guidance"]` lists them): its strength, and steps where it has them."""
        return await self.send({"type": "guidance", "name": name, "strength": strength}
                               | ({} if steps is None else {"steps": steps}))

    async def set_steps(self, steps: int) -> int:
        return await self.send({"type": "steps", "steps": steps})

    async def set_seed(self, seed: int) -> int:
        return await self.send({"type": "seed", "seed": seed})

    async def reset(self) -> int:
        return await self.send({"type": "reset"})

    async def set_block(self, frames: int) -> int:
        """Block size in latent frames (text mode; `Stream.set_block_frames`): the control latency."""
        return await self.send({"type": "block", "frames": frames})

    async def set_mode(self, mode: str) -> int:
        """"text", "sketch", "accompaniment" or "generative_delay" (see `info["supported_modes"]`)."""
        return await self.send({"type": "mode", "mode": mode})

    async def set_mix(self, dry: float = 0.0, wet: float = 1.0) -> int:
        return await self.send({"type": "mix", "dry": dry, "wet": wet})

    async def set_feedback(self, feedback: float) -> int:
        return await self.send({"type": "feedback", "feedback": feedback})

    async def set_cutoff(self, frames: int) -> int:
        return await self.send({"type": "cutoff", "frames": frames})

    async def set_sketch(self, curves: dict | None, seconds: float | None = None) -> int:
        """Drawn curves {"loudness": [...], "centroid": [...], "pitch": [...]} (None: follow the input)."""
        msg = {"type": "sketch", "curves": curves}
        if seconds is not None:
            msg["seconds"] = seconds
        return await self.send(msg)

    async def set_sketch_strength(self, strength: float) -> int:
        return await self.send({"type": "sketch_strength", "strength": strength})

    async def set_sketch_cfg(self, scale: float) -> int:
        return await self.send({"type": "sketch_cfg", "scale": scale})

    async def set_control_guidance(self, strength: float) -> int:
        return await self.send({"type": "control_guidance", "strength": strength})

    async def send_input(self, audio: np.ndarray, index: int, sample_rate: int | None = None,
                         fmt: str = "f32") -> None:
        """Upstream audio (channels, samples) for the input modes; rate defaults to the model's."""
        await self._ws.send(P.encode_frame(audio, index, sample_rate or self.rate, fmt))

    # -- receiving ---------------------------------------------------------------------------

    async def recv(self, timeout: float = 30.0):
        """The next message: a Block, or a JSON dict (also recorded in acks / errors / status)."""
        data = await asyncio.wait_for(self._ws.recv(), timeout)
        if isinstance(data, bytes):
            index, rate, audio = P.decode_frame(data)
            return Block(index, rate, audio)
        msg = json.loads(data)
        {"ack": self.acks, "error": self.errors, "status": self.status}.get(msg.get("type"), []).append(msg)
        return msg

    async def blocks(self, max_blocks: int | None = None, seconds: float | None = None, timeout: float = 30.0):
        """Yield audio blocks until `max_blocks` blocks or `seconds` of audio have arrived."""
        n, samples = 0, 0
        while (max_blocks is None or n < max_blocks) and (seconds is None or samples < seconds * self.rate):
            item = await self.recv(timeout)
            if isinstance(item, Block):
                n, samples = n + 1, samples + item.audio.shape[1]
                yield item

    async def wait_for(self, kind: str, id: int | None = None, timeout: float = 10.0) -> dict:
        """Read (and drop audio) until a message of `kind` (with `id`) arrives."""
        seen = {"ack": self.acks, "error": self.errors, "status": self.status}[kind]
        async with asyncio.timeout(timeout):
            while True:
                for m in seen:
                    if id is None or m.get("id") == id:
                        return m
                await self.recv(timeout)

    @property
    def rate(self) -> int:
        return self.info["sample_rate"]


def _prompts(prompts) -> list[dict]:
    if isinstance(prompts, str):
        return [{"text": prompts, "weight": 1.0}]
    return [p if isinstance(p, dict) else {"text": p[0], "weight": float(p[1])} for p in prompts]


class SyncClient:
    """Blocking wrapper: runs a private event loop; methods mirror `Client`'s."""

    def __init__(self, url: str, **kwargs):
        self._loop = asyncio.new_event_loop()
        self.client = Client(url, **kwargs)

    def __enter__(self):
        self._loop.run_until_complete(self.client.connect())
        return self

    def __exit__(self, *exc):
        self._loop.run_until_complete(self.client.close())
        self._loop.close()

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if asyncio.iscoroutinefunction(attr):
            return lambda *a, **k: self._loop.run_until_complete(attr(*a, **k))
        return attr

    def read(self, max_blocks: int | None = None, seconds: float | None = None) -> list[Block]:
        async def collect():
            return [b async for b in self.client.blocks(max_blocks, seconds)]
        return self._loop.run_until_complete(collect())
