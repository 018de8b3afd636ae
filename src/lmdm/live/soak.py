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


def rss_summary(rss: list, warmup: float) -> dict:
    """Memory flatness: RSS at the end against RSS once warm (the first sample at or after `warmup`
    seconds; model load, first-block allocations and caches come before that), and the slope
    after warm-up by least squares, in MB per minute."""
    warm = [(t, mb) for t, mb in rss if t >= warmup] or rss[-1:]
    t0, mb0 = warm[0]
    slope = 0.0
    if len(warm) > 2:
        ts = [t for t, _ in warm]
        ms = [m for _, m in warm]
        tm, mm = sum(ts) / len(ts), sum(ms) / len(ms)
        var = sum((t - tm) ** 2 for t in ts)
        slope = 60 * sum((t - tm) * (m - mm) for t, m in zip(ts, ms)) / var if var else 0.0
    return {"rss_start_mb": rss[0][1], "rss_warm_mb": mb0, "rss_warm_at_s": t0, "rss_end_mb": rss[-1][1],
            "rss_max_mb": max(m for _, m in rss), "rss_growth_after_warmup_mb": round(rss[-1][1] - mb0, 1),
            "rss_slope_mb_per_min": round(slope, 3)}


def main(argv=None) -> None:
    import argparse
    import json
    p = argparse.ArgumentParser(prog="python -m lmdm.live.soak", description=(
        "Soak benchmark of the live server (not a test): SESSIONS simulated real-time listeners on one "
        "loopback server for SECONDS of audio each; prints real-time factor, underruns and memory over time."))
    p.add_argument("sessions", type=int, help="concurrent sessions")
    p.add_argument("seconds", type=float, help="seconds of audio each session plays")
    p.add_argument("--model", default="test", help="'default' (the embedded model), a model directory, or 'test' "
                   "(the random tiny test model; default)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="real models only")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the generation thread")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds before memory counts as warm (default 30)")
    p.add_argument("--json", metavar="FILE", help="also write the whole report (with the RSS curve) here")
    args = p.parse_args(argv)
    if args.model == "test":
        from .testmodel import tiny_live_model
        model = tiny_live_model(steps=args.steps or 8)
    else:
        from ..checkpoints import load
        model = load(args.model, dtype=args.dtype)
        if args.steps:
            model.config.steps = args.steps
    report = soak(None, args.sessions, args.seconds, threads=args.threads, model=model)
    report.update(rss_summary(report["rss_mb"], args.warmup), model=args.model, steps=model.config.steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "rss_mb"}, indent=1))


if __name__ == "__main__":
    main()
