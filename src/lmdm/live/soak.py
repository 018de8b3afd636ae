"""Soak benchmark (not a test): N concurrent real-time sessions against the real server.

Each simulated listener behaves like the browser player: it starts its playhead after a prebuffer
and counts an underrun whenever the audio received falls behind the playhead (then re-buffers).

    from lmdm.live.soak import soak
    report = soak("path/to/model", sessions=2, seconds=30)
"""
from __future__ import annotations

import asyncio
import os
import time


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def soak(model_dir: str | None, sessions: int = 1, seconds: float = 60.0, *, threads: int = 1,
         prebuffer: float = 0.2, lead: float = 0.6, sample_every: float = 1.0, model=None) -> dict:
    """Returns {"sessions": [{rtf, underruns, blocks, seconds}], "rss_mb": [(t, MB)], ...}.
    `model_dir=None` with `model=` given uses that model object (e.g. the tiny test model)."""
    from .client import Block, Client
    from .engine import Engine
    from .server import LiveServer
    if model is None:
        from ..checkpoints import from_pretrained
        model = from_pretrained(model_dir)
    rss = [(0.0, rss_mb())]
    t0 = time.monotonic()

    async def listener(url: str, i: int) -> dict:
        async with Client(url) as c:
            await c.start(f"soak session {i}", pace="realtime", lead=lead, ahead=4, seed=i)
            received, underruns, play_start = 0.0, 0, None
            while True:
                item = await c.recv(timeout=60)
                if not isinstance(item, Block):
                    continue
                now = time.monotonic()
                received += item.audio.shape[1] / c.rate
                if play_start is None:
                    if received >= prebuffer:
                        play_start = now - 0.0  # playhead starts; position = now - play_start
                        base = received
                else:
                    played = now - play_start
                    if played > received - base + prebuffer:  # playhead passed the end of the audio
                        underruns += 1
                        play_start, base = None, received
                if received >= seconds:
                    status = c.status[-1] if c.status else {}
                    return {"session": i, "rtf": status.get("rtf"), "underruns": underruns,
                            "seconds": received, "blocks": item.index + 1}

    async def sampler(stop: asyncio.Event):
        while not stop.is_set():
            await asyncio.sleep(sample_every)
            rss.append((round(time.monotonic() - t0, 2), round(rss_mb(), 1)))

    async def main(url):
        stop = asyncio.Event()
        task = asyncio.create_task(sampler(stop))
        results = await asyncio.gather(*(listener(url, i) for i in range(sessions)))
        stop.set()
        await task
        return results

    with LiveServer(Engine(model, threads=threads)) as srv:
        results = asyncio.run(main(srv.ws_url))
    return {"sessions": results, "wall_s": round(time.monotonic() - t0, 2), "rss_mb": rss,
            "rss_growth_mb": round(rss[-1][1] - rss[1][1], 1) if len(rss) > 1 else 0.0}


if __name__ == "__main__":
    import json
    import sys

    from .testmodel import tiny_live_model
    # python -m lmdm.live.soak SESSIONS SECONDS [STEPS]: the random test model (a real one: call soak())
    n, secs = int(sys.argv[1]), float(sys.argv[2])
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    print(json.dumps(soak(None, n, secs, model=tiny_live_model(steps=steps)), indent=1))
