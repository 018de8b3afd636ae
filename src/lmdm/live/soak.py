"""Soak benchmark (not a test): N concurrent real-time sessions against the real server.

Each simulated listener behaves like the browser player: it starts its playhead after a prebuffer
and counts an underrun whenever the audio received falls behind the playhead (then re-buffers).
It also moves a knob every `control_every` seconds and times each control's ack (the control
latency a performer feels, up to the block boundary where it lands).

`--flood` runs the same listeners twice on one server, side by side in one run: alone, then beside
a hostile client that sends saves to many slots, knob moves and prompt changes as fast as its
socket takes them and reads nothing. The report compares the well-behaved sessions' blocks,
underruns and ack latency percentiles between the two phases.

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


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q / 100 * len(v)))], 1)


def soak(model_dir: str | None, sessions: int = 1, seconds: float = 60.0, *, threads: int = 1,
         prebuffer: float = 0.2, lead: float = 0.6, sample_every: float = 1.0, model=None,
         control_every: float = 1.0, flood: bool = False) -> dict:
    """Returns {"sessions": [{rtf, underruns, blocks, seconds, ack_ms_p50/p95/p99}], "rss_mb": [(t, MB)], ...}.
    `model_dir=None` with `model=` given uses that model object (e.g. the tiny test model).
    `flood`: run the listeners alone and then beside a flooding client (`"phases"` in the report)."""
    from .engine import Engine
    from .server import LiveServer
    if model is None:
        from ..checkpoints import from_pretrained
        model = from_pretrained(model_dir)
    rss = [(0.0, rss_mb())]
    t0 = time.monotonic()

    async def sampler(stop: asyncio.Event):
        while not stop.is_set():
            await asyncio.sleep(sample_every)
            rss.append((round(time.monotonic() - t0, 2), round(rss_mb(), 1)))

    async def phase(url, flooding: bool):
        flooder = None
        if flooding:
            import multiprocessing
            ctx = multiprocessing.get_context("spawn")
            count, ready = ctx.Value("q", 0), ctx.Event()
            flooder = ctx.Process(target=_flood_process, args=(url, count, ready), daemon=True)
            flooder.start()
            await asyncio.get_running_loop().run_in_executor(None, ready.wait, 120)
            await asyncio.sleep(0.5)   # the flood is under way before the listeners start
        start = time.monotonic()
        results = await asyncio.gather(*(_listener(url, i, seconds, prebuffer, lead, control_every)
                                         for i in range(sessions)))
        wall = time.monotonic() - start
        flood_report = None
        if flooder:
            # messages the flooder's socket took (much of it sits in TCP buffers, unread by the server)
            flood_report = {"messages_sent": count.value}
            flooder.terminate()
            flooder.join(10)
        summary = _summary(results, wall)
        return {"sessions": results, "wall_s": round(wall, 2), **summary,
                **({"flood": flood_report} if flood_report else {})}

    async def main(url):
        stop = asyncio.Event()
        task = asyncio.create_task(sampler(stop))
        if flood:
            out = {"phases": {"no_flood": await phase(url, False), "flood": await phase(url, True)}}
            a, b = out["phases"]["no_flood"], out["phases"]["flood"]
            out["flood_block_rate_ratio"] = round(b["blocks_per_s"] / a["blocks_per_s"], 3) if a["blocks_per_s"] else None
            out["sessions"] = a["sessions"] + b["sessions"]
        else:
            out = await phase(url, False)
        stop.set()
        await task
        return out

    with LiveServer(Engine(model, threads=threads)) as srv:
        report = asyncio.run(main(srv.ws_url))
    return report | {"wall_s": round(time.monotonic() - t0, 2), "rss_mb": rss,
                     "rss_growth_mb": round(rss[-1][1] - rss[1][1], 1) if len(rss) > 1 else 0.0}


async def _listener(url: str, i: int, seconds: float, prebuffer: float, lead: float, control_every: float) -> dict:
    from .client import Block, Client
    async with Client(url) as c:
        await c.start(f"soak session {i}", pace="realtime", lead=lead, ahead=4, seed=i)
        received, underruns, play_start, base = 0.0, 0, None, 0.0
        sent: dict[int, float] = {}
        acks, gaps, last_block, next_control, n = [], [], None, time.monotonic() + control_every, 0
        while True:
            item = await c.recv(timeout=60)
            now = time.monotonic()
            if isinstance(item, dict):
                if item.get("type") == "ack" and item.get("id") in sent:
                    acks.append(1000 * (now - sent.pop(item["id"])))
                continue
            if now >= next_control:   # a performer nudging a knob
                n += 1
                sent[await c.set_cfg(1.0 + 0.1 * (n % 2))] = time.monotonic()
                next_control = now + control_every
            if last_block is not None:
                gaps.append(1000 * (now - last_block))
            last_block = now
            received += item.audio.shape[1] / c.rate
            if play_start is None:
                if received >= prebuffer:
                    play_start, base = now, received   # playhead starts; position = now - play_start
            elif now - play_start > received - base + prebuffer:  # playhead passed the end of the audio
                underruns += 1
                play_start, base = None, received
            if received >= seconds:
                status = c.status[-1] if c.status else {}
                return {"session": i, "rtf": status.get("rtf"), "underruns": underruns, "seconds": round(received, 2),
                        "blocks": item.index + 1, "controls": len(acks), "ack_ms_p50": _pct(acks, 50),
                        "ack_ms_p95": _pct(acks, 95), "ack_ms_p99": _pct(acks, 99),
                        "block_gap_ms_p50": _pct(gaps, 50), "block_gap_ms_p99": _pct(gaps, 99)}


async def _flooder(url: str, count, ready) -> None:
    """A hostile client: plays until its first block (so it has a state to save), stops, then sends
    saves to 50 slots, knob moves and prompt changes as fast as its socket takes them, reading
    nothing. The server must neither queue for it without bound nor let it delay the others."""
    import json

    import websockets
    async with websockets.connect(url, max_size=2 ** 24, close_timeout=1) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "start", "prompts": [{"text": "flood"}], "pace": "none", "ahead": 1}))
        while not isinstance(await ws.recv(), bytes):
            pass
        await ws.send(json.dumps({"type": "stop"}))
        ready.set()
        n = 0
        while True:
            kind = n % 3
            msg = ({"type": "save", "slot": f"s{n % 50}"} if kind == 0 else
                   {"type": "cfg", "scale": 1 + (n % 7) / 10} if kind == 1 else
                   {"type": "prompts", "prompts": [{"text": f"flood {n}"}]})
            await ws.send(json.dumps(msg))
            n += 1
            count.value = n
            # as fast as TCP takes it: the websockets client would buffer without bound in memory (so
            # would a browser's WebSocket.send), and spin a core doing it, when the server stops reading
            while ws.transport.get_write_buffer_size() > 65536:
                await asyncio.sleep(0.005)


def _flood_process(url: str, count, ready) -> None:
    """The flooder in a process of its own, as a real one would be (not sharing the server's GIL)."""
    asyncio.run(_flooder(url, count, ready))


def _summary(results: list[dict], wall: float) -> dict:
    blocks = sum(r["blocks"] for r in results)
    acks = [r[k] for r in results for k in ("ack_ms_p50", "ack_ms_p95", "ack_ms_p99") if r[k] is not None]
    return {"blocks": blocks, "blocks_per_s": round(blocks / wall, 2) if wall else 0.0,
            "underruns": sum(r["underruns"] for r in results),
            "ack_ms_p50_max": max((r["ack_ms_p50"] or 0) for r in results),
            "ack_ms_p95_max": max((r["ack_ms_p95"] or 0) for r in results),
            "ack_ms_p99_max": max((r["ack_ms_p99"] or 0) for r in results) if acks else None}


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
    p.add_argument("--flood", action="store_true",
                   help="run the sessions alone, then beside a client flooding the server with controls; compare")
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
    report = soak(None, args.sessions, args.seconds, threads=args.threads, model=model, flood=args.flood)
    report.update(rss_summary(report["rss_mb"], args.warmup), model=args.model, steps=model.config.steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "rss_mb"}, indent=1))
    if args.flood:
        print(flood_table(report))


def flood_table(report: dict) -> str:
    """The well-behaved sessions alone and beside the flood, side by side."""
    a, b = report["phases"]["no_flood"], report["phases"]["flood"]
    rows = [("blocks", "blocks"), ("blocks/s", "blocks_per_s"), ("underruns", "underruns"),
            ("ack ms p50 (worst session)", "ack_ms_p50_max"), ("ack ms p95", "ack_ms_p95_max"),
            ("ack ms p99", "ack_ms_p99_max")]
    lines = [f"{'':28} {'no flood':>10} {'flood':>10}"]
    lines += [f"{name:28} {a[k]!s:>10} {b[k]!s:>10}" for name, k in rows]
    lines.append(f"flood messages sent: {b['flood']['messages_sent']}; block rate ratio flood/no flood: "
                 f"{report['flood_block_rate_ratio']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
