"""OSC bridge: the session controls as OSC addresses over UDP (python-osc), for Max, Pd, TouchOSC…

    /lmdm/prompt   text weight [text weight …]   weighted prompts (weight optional for one prompt)
    /lmdm/weights  w1 [w2 …]                      new weights for the current prompts, in order
    /lmdm/cfg      scale          /lmdm/steps n          /lmdm/seed n
    /lmdm/play     /lmdm/stop     /lmdm/reset
    /lmdm/mode     text|sketch|accompaniment|generative_delay
    /lmdm/drywet   wet            (dry = 1 - wet)   or   /lmdm/drywet dry wet   (two gains)
    /lmdm/feedback f              /lmdm/cutoff frames    /lmdm/sketch_strength s    /lmdm/sketch_cfg s
    /lmdm/control_guidance g      /lmdm/bpm n    (0: the model picks; no value: the prompt's tempo)
    /lmdm/prompt_guidance g
    /lmdm/guidance name value [steps]          any registered guidance by name (`lmdm.engine.guidance`);
                                  /lmdm/cfg, /lmdm/sketch_cfg, ... are the same as /lmdm/guidance cfg_scale ...
    /lmdm/session  id             send to one session only (0: every session, the default)

Messages go through the same validation as WebSocket controls and reach the engine the same
way, so they apply at the next block boundary and the WebSocket client sees the ack. A rejected
message is answered to the sender as `/lmdm/error <text>`.
"""
from __future__ import annotations

import threading
from collections import deque

from ..config import check_knob
from ..errors import LMDMError
from . import protocol as P
from .engine import Engine

MAX_ERRORS = 100   # the latest rejected messages, for a look from tests or a debugger; older ones go
# every address (under /lmdm/); the guidance aliases are those of the live protocol (`protocol.ALIASES`)
ADDRESSES = ("prompt", "weights", "cfg", "steps", "seed", "play", "stop", "reset", "mode", "drywet", "feedback",
             "cutoff", "sketch_strength", "sketch_cfg", "control_guidance", "prompt_guidance", "guidance", "bpm",
             "session")


class OSCBridge:
    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 9000):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer
        self.engine, self.target = engine, 0
        self.errors: deque[str] = deque(maxlen=MAX_ERRORS)
        self.error_count = 0
        d = Dispatcher()
        for name in ADDRESSES:
            d.map(f"/lmdm/{name}", self._handler(name), needs_reply_address=True)
        d.set_default_handler(self._unknown, needs_reply_address=True)
        # one thread, datagrams in arrival order: a controller's prompt-then-weights must apply in that order
        self.server = BlockingOSCUDPServer((host, port), d)
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, name="lmdm-live-osc", daemon=True)

    def start(self) -> "OSCBridge":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self, name: str):
        def handle(client, address, *args):
            try:
                if name == "session":
                    self.target = check_knob("session", _one(args, address), "/lmdm/session id")
                    return
                msg = _message(name, args)
                sessions = [s for s in list(self.engine.sessions) if self.target in (0, s.id)]
                if not sessions:
                    raise P.ProtocolError(f"no live session{f' with id {self.target}' if self.target else ''} "
                                          "to control: open the page or connect a client first")
                for s in sessions:
                    s.submit(msg)
            except (P.ProtocolError, LMDMError, ValueError, TypeError, OverflowError) as e:
                self._reply_error(client, f"{address}: {e}")
            except Exception as e:   # never let one datagram kill the handler without an answer
                self._reply_error(client, f"{address}: {type(e).__name__}: {e}")
        return handle

    def _unknown(self, client, address, *args):
        self._reply_error(client, f"unknown OSC address {address!r}; see " + ", ".join(f"/lmdm/{a}" for a in ADDRESSES))

    def _reply_error(self, client, text: str) -> None:
        from pythonosc.osc_message_builder import OscMessageBuilder
        self.errors.append(text)
        self.error_count += 1
        builder = OscMessageBuilder("/lmdm/error")
        builder.add_arg(text[:1000])
        try:
            self.server.socket.sendto(builder.build().dgram, client)
        except OSError:
            pass   # the sender is gone or unreachable: nothing more to tell it


def _one(args, address):
    if len(args) != 1:
        raise P.ProtocolError(f"expects one value, got {len(args)}")
    return args[0]


def _message(name: str, args: tuple):
    """OSC arguments → a validated control message (the same pydantic models as the WebSocket)."""
    import json
    if name == "prompt":
        if len(args) == 1:
            args = (args[0], 1.0)
        if len(args) % 2:
            raise P.ProtocolError("expects text weight pairs")
        body = {"type": "prompts", "prompts": [{"text": str(t), "weight": w} for t, w in zip(args[::2], args[1::2])]}
    elif name == "weights":
        body = {"type": "weights", "weights": list(args)}
    elif name in P.ALIASES:
        body = {"type": name, P.ALIASES[name][1]: _one(args, name)}
    elif name == "guidance":
        if len(args) not in (2, 3):
            raise P.ProtocolError(f"expects name value [steps], got {len(args)} values")
        body = {"type": "guidance", "name": str(args[0]), "strength": args[1]} | ({"steps": args[2]} if args[2:] else {})
    elif name in ("steps", "seed", "feedback"):
        body = {"type": name, name: _one(args, name)}
    elif name == "sketch_strength":
        body = {"type": name, "strength": _one(args, name)}
    elif name == "cutoff":
        body = {"type": "cutoff", "frames": _one(args, name)}
    elif name == "bpm":
        body = {"type": "bpm", "bpm": _one(args, name) if args else None}
    elif name == "mode":
        body = {"type": "mode", "mode": str(_one(args, name))}
    elif name == "drywet":
        if len(args) == 1:
            body = {"type": "mix", "dry": 1.0 - float(args[0]), "wet": float(args[0])}
        elif len(args) == 2:
            body = {"type": "mix", "dry": args[0], "wet": args[1]}
        else:
            raise P.ProtocolError(f"expects wet, or dry wet; got {len(args)} values")
    else:
        body = {"type": {"play": "start"}.get(name, name)}
    return P.parse_control(json.dumps(body), strict=False)
