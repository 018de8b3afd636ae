"""`lmdm live`'s server: FastAPI + one WebSocket per session + the browser UI as static files.

The event loop only parses, validates and forwards: generation happens on the engine thread
(`engine.py`), so a slow block never delays another session's sends or a control message.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from . import protocol as P
from .engine import Engine, Session

WEB = Path(__file__).parent / "web"
WS_MAX_BYTES = 4 * 1024 * 1024  # the transport's hard limit (close 1009); P.MAX_INPUT_BYTES is the soft one


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="lmdm live", docs_url=None, redoc_url=None)
    app.state.engine = engine

    @app.get("/")
    async def index():
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info():
        return JSONResponse(engine.info() | {"sessions": len(engine.sessions)})

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        try:
            session = engine.open(asyncio.get_running_loop())
        except Exception as e:
            await websocket.send_json({"type": "error", "message": str(e)})
            await websocket.close(code=1013)
            return
        sender = asyncio.create_task(_send_loop(websocket, session))
        try:
            await websocket.send_json(engine.info() | {"session": session.id})
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                error = _handle(session, message)
                if error:
                    session._emit(("json", error))
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away mid-stream: clean up below, other sessions carry on
        finally:
            session.close()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


def _handle(session: Session, message: dict) -> dict | None:
    """One incoming frame → None (accepted) or an error message for the client."""
    if message.get("bytes") is not None:
        data = message["bytes"]
        try:
            _, rate, audio = P.decode_frame(data, P.MAX_INPUT_BYTES, finite=True)
            session.submit_input(audio, rate)  # in order with the controls; the engine's mode consumes it
        except P.ProtocolError as e:
            return {"type": "error", "cmd": "input", "message": str(e)}
        return None
    text = message.get("text")
    if text is None:
        return {"type": "error", "message": "empty WebSocket message"}
    try:
        msg = P.parse_control(text)
    except P.ProtocolError as e:
        return {"type": "error", "id": _id_of(text), "message": str(e)}
    session.submit(msg)
    return None


def _id_of(text: str):
    """Best-effort id of a rejected message, so the client can match the error to its request."""
    import json
    try:
        value = json.loads(text).get("id")
        return value if isinstance(value, int) else None
    except Exception:
        return None


async def _send_loop(websocket, session: Session) -> None:
    while True:
        item = await session.outbox.get()
        if item[0] == "json":
            await websocket.send_json(item[1])
            continue
        _, index, audio = item
        try:
            await websocket.send_bytes(P.encode_frame(audio, index, session.engine.sample_rate, session.format))
        finally:
            session.sent()


class LiveServer:
    """The server on a background thread (tests, soak, headless tools). `port=0` picks a free port."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn
        self.engine = engine
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(create_app(engine), log_level=log_level, ws_max_size=WS_MAX_BYTES,
                                ws="websockets-sansio", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: self.server.run(sockets=[self.sock]), daemon=True,
                                       name="lmdm-live-http")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def start(self, timeout: float = 20.0) -> "LiveServer":
        if not self.engine._thread.is_alive():
            self.engine.start()
        self.thread.start()
        import time
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("lmdm live server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.engine.shutdown()
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def serve(engine: Engine, host: str, port: int, osc_port: int | None = None, log_level: str = "info") -> None:
    """Run until Ctrl-C (the `lmdm live` command)."""
    import uvicorn
    engine.start()
    bridge = None
    if osc_port is not None:
        from .osc import OSCBridge
        bridge = OSCBridge(engine, host, osc_port).start()
        print(f"lmdm live: OSC on udp://{bridge.host}:{bridge.port} (/lmdm/prompt, /lmdm/cfg, /lmdm/mode, …)",
              flush=True)
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level=log_level, ws_max_size=WS_MAX_BYTES,
                    ws="websockets-sansio", lifespan="off")
    finally:
        if bridge:
            bridge.stop()
        engine.shutdown()
