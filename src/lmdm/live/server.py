"""`lmdm live`'s server: FastAPI + one WebSocket per session + the browser UI as static files.

The event loop only parses, validates and forwards: generation happens on the engine thread
(`scheduler.py`), so a slow block never delays another session's sends or a control message.

Who may connect (checked before the WebSocket is accepted; refused with HTTP 403):
- Origin: a browser always sends one, so a page from another site that the user has open cannot
  drive a session (cross-site WebSocket hijacking). Accepted: no Origin (scripts, OSC tools, curl),
  the server's own origin (http(s)://HOST:PORT for the address the connection came in on, and
  localhost / 127.0.0.1 / [::1] when it listens on loopback), and `allow_origins` (`--allow-origin`).
- Token: a server that listens beyond loopback makes a random token per run (or takes `--token`)
  and accepts only connections with `?token=...`; the printed URL carries it and the page passes it on.
Backpressure: the server reads a client's next message only while its control queue has room
(`Session.has_room`), its outbox is not backed up and it stays under MESSAGE_RATE messages per
second, so a flooding client is slowed by its own TCP window; the engine applies a few controls
per session per turn, so no queue delays another block.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import secrets
import socket
import threading
from pathlib import Path

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from . import protocol as P
from .engine import Engine
from .session import Session

WEB = Path(__file__).parent / "web"
WS_MAX_BYTES = 4 * 1024 * 1024  # the transport's hard limit (close 1009); P.MAX_INPUT_BYTES is the soft one
MAX_OUTBOX = 256                # messages waiting for a client that does not read: stop reading its controls
# messages per second read from one client, with bursts of MESSAGE_BURST: a UI sends a slider's moves
# at display rate (<= ~60/s) and microphone frames at ~20/s; a flood is read no faster, so parsing it
# costs the other sessions next to nothing (measured by `python -m lmdm.live.soak --flood`)
MESSAGE_RATE, MESSAGE_BURST = 120.0, 120.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "::1", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token a server on `host` requires: the one given, else a fresh random one beyond loopback."""
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(16)


def own_origins(scope: dict) -> set[str]:
    """Origins a page served by this server has, for the address this connection came in on."""
    host, port = (scope.get("server") or ("127.0.0.1", 80))[:2]
    names = {f"[{host}]" if ":" in host else host}
    if is_loopback(host):
        names |= set(LOOPBACK_NAMES)
    out = set()
    for name in names:
        for scheme, default in (("http", 80), ("https", 443)):
            out.add(f"{scheme}://{name}:{port}")
            if port == default:
                out.add(f"{scheme}://{name}")
    return out


def refusal(websocket: WebSocket, allow_origins: set[str], token: str | None) -> str | None:
    """Why this connection may not open a session, or None."""
    origin = websocket.headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() not in own_origins(websocket.scope) | allow_origins:
        return f"origin {origin!r} is not allowed (lmdm live --allow-origin {origin})"
    if token is not None and not hmac.compare_digest(websocket.query_params.get("token", "").encode(),
                                                     token.encode()):
        return "missing or wrong ?token= (it is printed by lmdm live when it listens beyond loopback)"
    return None


def create_app(engine: Engine, allow_origins=(), token: str | None = None) -> FastAPI:
    app = FastAPI(title="lmdm live", docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.refused = 0
    allowed = {o.rstrip("/").lower() for o in allow_origins}

    @app.get("/")
    async def index():
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info():
        return JSONResponse(engine.info() | {"sessions": len(engine.sessions)})

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        if refusal(websocket, allowed, token):
            app.state.refused += 1
            await websocket.close(code=1008)   # before accept: the handshake is answered with HTTP 403
            return
        await websocket.accept()
        try:
            session = engine.open(asyncio.get_running_loop())
        except Exception as e:
            await websocket.send_json({"type": "error", "message": str(e)})
            await websocket.close(code=1013)
            return
        sender = asyncio.create_task(_send_loop(websocket, session))
        bucket = _Bucket(MESSAGE_RATE, MESSAGE_BURST)
        try:
            await websocket.send_json(engine.info() | {"session": session.id})
            while True:
                # backpressure: this client waits (its TCP window fills), nobody else does
                while not (session.has_room() and session.outbox.qsize() < MAX_OUTBOX):
                    if sender.done():   # sending failed: the client is gone (it stopped reading and left)
                        return
                    await asyncio.sleep(0.01)
                await bucket.take()
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
        session.submit(msg)
    except P.ProtocolError as e:
        return {"type": "error", "id": _id_of(text), "message": str(e)}
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


RECV_BUFFER = 512 * 1024   # per connection; see listen_socket
# No permessage-deflate: audio blocks barely compress (zlib on every block costs the server CPU), and
# a flood of repetitive JSON compresses ~10x, so megabytes of buffers would hold a million messages.


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket whose connections have a fixed 512 KB receive buffer. Linux otherwise grows
    it up to net.ipv4.tcp_rmem's maximum (32 MB here): a flooding client then writes megabytes the
    server will not read for minutes, at full speed, and its CPU is taken from the other sessions;
    with the cap its send blocks within a fraction of a second. 512 KB still carries a full input
    frame and far more than live audio needs at any round-trip time a performer would play at."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)   # inherited by accepted sockets
    sock.bind((host.strip("[]"), port))
    return sock


class _Bucket:
    """A token bucket: `take` returns at once while the client stays under `rate` messages per second
    (bursts of `burst`), else sleeps until it is."""

    def __init__(self, rate: float, burst: float):
        import time
        self.rate, self.burst, self.tokens, self.clock = rate, burst, burst, time.monotonic
        self.t = self.clock()

    async def take(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self.tokens, self.t = 1.0, self.clock()
        self.tokens -= 1


class LiveServer:
    """The server on a background thread (tests, soak, headless tools). `port=0` picks a free port."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 allow_origins=(), token: str | None = None):
        import uvicorn
        self.engine, self.token = engine, resolve_token(host, token)
        self.sock = listen_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(create_app(engine, allow_origins, self.token), log_level=log_level, ws_max_size=WS_MAX_BYTES,
                                ws="websockets-sansio", lifespan="off",
                                ws_per_message_deflate=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: self.server.run(sockets=[self.sock]), daemon=True,
                                       name="lmdm-live-http")

    @property
    def url(self) -> str:
        """The page's address (with the token, when one is required, for the page to pass on)."""
        return f"http://{self.host}:{self.port}" + (f"/?token={self.token}" if self.token else "")

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws" + (f"?token={self.token}" if self.token else "")

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


def serve(engine: Engine, host: str, port: int, osc_port: int | None = None, log_level: str = "info",
          allow_origins=(), token: str | None = None) -> None:
    """Run until Ctrl-C (the `lmdm live` command). `token`: as `resolve_token` made it."""
    import uvicorn
    engine.start()
    bridge = None
    if osc_port is not None:
        from .osc import OSCBridge
        bridge = OSCBridge(engine, host, osc_port).start()
        print(f"lmdm live: OSC on udp://{bridge.host}:{bridge.port} (/lmdm/prompt, /lmdm/cfg, /lmdm/mode, …)",
              flush=True)
    sock = listen_socket(host, port)
    try:
        config = uvicorn.Config(create_app(engine, allow_origins, token), log_level=log_level,
                                ws_max_size=WS_MAX_BYTES, ws="websockets-sansio", lifespan="off",
                                ws_per_message_deflate=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if bridge:
            bridge.stop()
        engine.shutdown()
