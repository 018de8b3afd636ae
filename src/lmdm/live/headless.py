"""`lmdm live --headless`: a scripted session without a browser, written to a WAV file.

Runs the same engine as the server, in process (no sockets). The script is a list of prompt specs
in `lmdm.engine.prompts` syntax ("warm piano@0s" "dub techno:1|choir:0.5@10s"); its changes are
submitted as controls when the audio written so far reaches their time, so they land at the
next block boundary exactly as a live performer's would.
"""
from __future__ import annotations

from ..audio.writer import AudioWriter
from ..config import SamplingConfig
from ..errors import ConfigError
from ..engine.prompts import parse_schedule
from . import protocol as P
from .engine import Engine

def run_headless(model, out: str, script: list[str], seconds: float, *, seed: int = 0, steps: int | None = None,
                 cfg: float | None = None, threads: int | None = None, progress=print) -> dict:
    plan = parse_schedule(script)
    SamplingConfig(seconds=seconds, seed=seed, steps=steps, cfg_scale=cfg).validate()
    writer = AudioWriter(out)   # checked (a temporary file beside it) before the engine starts
    engine = Engine(model, threads=threads).start()
    session = engine.open(None, max_queue=1)  # one block ahead: script changes land on the next block
    changes = []
    try:
        def control(body: dict):
            import json
            session.submit(P.parse_control(json.dumps(body)))

        first = [{"text": t, "weight": w} for t, w in plan[0][1]]
        control({"type": "start", "prompts": first, "seed": seed, "pace": "none", "ahead": 1, "cfg": cfg}
                | ({"steps": steps} if steps else {}))
        pending, written, total = plan[1:], 0, int(round(seconds * engine.sample_rate))
        if total < 1:
            raise ConfigError(f"--seconds {seconds!r} gives no sample at {engine.sample_rate} Hz")
        with writer:
            writer.start(engine.sample_rate, engine.channels)
            while written < total:
                item = session.outbox.get(timeout=120)
                if item[0] == "json":
                    msg = item[1]
                    if msg["type"] == "error":
                        raise ConfigError(f"headless session: {msg['message']}")
                    if msg["type"] == "ack" and msg["cmd"] == "prompts":
                        changes.append({"block": msg["block"], "seconds": written / engine.sample_rate})
                    continue
                audio = item[2][:, : total - written]
                writer.write(audio)
                written += audio.shape[1]
                session.sent()
                while pending and written >= pending[0][0] * engine.sample_rate:
                    _, prompts = pending.pop(0)
                    control({"type": "prompts", "prompts": [{"text": t, "weight": w} for t, w in prompts]})
                    progress(f"{written / engine.sample_rate:6.2f} s: {prompts}")
        rtf = session.audio_total / max(session.compute, 1e-9)
    finally:
        writer.discard() if not writer.done else None
        session.close()
        engine.shutdown()
    return {"out": out, "seconds": written / engine.sample_rate, "rtf": rtf, "changes": changes}
