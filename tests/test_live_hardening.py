"""Issue 34, the live server as a hostile client or web page would meet it: foreign origins and
missing tokens are refused; one client's controls are bounded, coalesced and cannot delay another
session's next block; saved states are capped; a disconnect drops queued work; OSC answers every
bad datagram and keeps a bounded error log. Real server on loopback, real UDP."""
import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
websockets = pytest.importorskip("websockets")

from lmdm.live import protocol as P  # noqa: E402
from lmdm.live.client import Block, Client  # noqa: E402
from lmdm.live.engine import Engine  # noqa: E402
from lmdm.live.scheduler import CONTROLS_PER_TURN, MAX_CONTROLS  # noqa: E402
from lmdm.live.session import MAX_SLOTS  # noqa: E402
from lmdm.live.server import LiveServer, resolve_token  # noqa: E402
from lmdm.live.testmodel import tiny_live_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tiny_live_model(steps=1)


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def handshake(url, origin=None):
    """The hello of a raw connection, or the HTTP status it was refused with."""
    try:
        async with websockets.connect(url, origin=origin, open_timeout=10) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
    except websockets.exceptions.InvalidStatus as e:
        return e.response.status_code


def test_foreign_origins_are_refused_own_and_allowed_ones_accepted(model):
    with LiveServer(Engine(model, threads=1), allow_origins=["http://studio.example:9000"]) as srv:
        port = srv.port

        async def go():
            assert await handshake(srv.ws_url, "http://evil.example") == 403
            assert await handshake(srv.ws_url, f"http://evil.example:{port}") == 403   # DNS rebinding's origin
            assert await handshake(srv.ws_url, f"http://127.0.0.2:{port}") == 403
            assert await handshake(srv.ws_url, "null") == 403                         # sandboxed iframe, file://
            for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", "http://studio.example:9000"):
                assert await handshake(srv.ws_url, own) == "hello", own
            assert await handshake(srv.ws_url) == "hello"          # no Origin: a script, not a web page
        run(go())
        assert not srv.engine.sessions


def test_a_token_is_required_beyond_loopback(model):
    assert resolve_token("127.0.0.1", None) is None and resolve_token("localhost", None) is None
    assert resolve_token("::1", None) is None
    t1, t2 = resolve_token("0.0.0.0", None), resolve_token("192.0.2.7", None)
    assert t1 and t2 and t1 != t2 and len(t1) >= 16          # a fresh random token per run
    with LiveServer(Engine(model, threads=1), token="s3cret-token") as srv:
        base = f"ws://127.0.0.1:{srv.port}/ws"

        async def go():
            assert await handshake(base) == 403
            assert await handshake(base + "?token=wrong") == 403
            assert await handshake(base + "?token=s3cret-token") == "hello"
            assert srv.ws_url.endswith("?token=s3cret-token") and "token=s3cret-token" in srv.url
        run(go())


def test_superseded_controls_coalesce_and_the_queue_is_bounded(model):
    engine = Engine(model, threads=1)
    s = engine.open(None)
    ctl = lambda body: P.parse_control(json.dumps(body))  # noqa: E731
    s.submit(ctl({"type": "start", "pace": "none", "id": 1}))
    for i in range(500):   # a slider dragged for a long time: only the latest value waits
        s.submit(ctl({"type": "cfg", "scale": 1 + (i % 10) / 10, "id": 100 + i}))
        s.submit(ctl({"type": "prompts", "prompts": [{"text": f"p{i}"}], "id": 1000 + i}))
    assert [m.type for m in s.controls] == ["start", "cfg", "prompts"]
    assert s.controls[1].id == 599 and s.controls[2].prompts[0].text == "p499"
    superseded = [m for _, m in (s.outbox.get_nowait() for _ in range(s.outbox.qsize()))]
    assert len(superseded) == 998 and all(m["superseded"] and m["type"] == "ack" for m in superseded)
    # a barrier keeps order: a save between two cfg values reads the first one
    s.submit(ctl({"type": "save", "slot": "a"}))
    s.submit(ctl({"type": "cfg", "scale": 3}))
    assert [m.type for m in s.controls][-3:] == ["prompts", "save", "cfg"]
    # controls that cannot coalesce fill the bounded queue; the next one is refused, not queued
    with pytest.raises(P.ProtocolError, match="too many controls waiting"):
        for i in range(MAX_CONTROLS + 1):
            s.submit(ctl({"type": "save", "slot": f"s{i}"}))
    assert s.pending == MAX_CONTROLS == len(s.controls) and not s.has_room()


def test_a_flooding_session_never_delays_another_sessions_next_block(model):
    """Turn by turn (no clock): with a full queue of saves in one session, every engine turn still
    generates the other session's next block and applies only CONTROLS_PER_TURN of the flood."""
    engine = Engine(model, threads=1)
    good, flood = engine.open(None), engine.open(None)
    for s in (good, flood):
        s.submit(P.parse_control('{"type": "start", "pace": "none", "ahead": 64}'))
    engine._turn()
    engine._turn()
    assert good.playing and flood.playing
    flood.playing = False   # the flooder only sends controls
    for i in range(MAX_CONTROLS):
        flood.submit(P.parse_control(json.dumps({"type": "save", "slot": f"s{i % MAX_SLOTS}-{i}"})))
    blocks = good.block
    for turn in range(1, 5):
        assert engine._turn()
        assert good.block == blocks + turn                       # one block of the good session each turn
        assert flood.pending == MAX_CONTROLS - turn * CONTROLS_PER_TURN


def test_saved_states_are_capped_per_session_and_in_total(model):
    engine = Engine(model, threads=1, max_saved_mb=1e-3)   # ~1 KB: one tiny-model state does not fit twice
    s = engine.open(None)
    s.submit(P.parse_control('{"type": "start", "pace": "none"}'))
    engine._turn()
    engine._apply_controls(s)
    s.submit(P.parse_control('{"type": "save", "slot": "a"}'))
    engine._apply_controls(s)
    replies = [s.outbox.get_nowait()[1] for _ in range(s.outbox.qsize())]
    errors = [m for m in replies if isinstance(m, dict) and m.get("type") == "error"]
    assert errors and "saved states on this server would take" in errors[-1]["message"]
    assert "--max-saved-mb" in errors[-1]["message"] and engine.saved_bytes == 0

    engine = Engine(model, threads=1)
    s = engine.open(None)
    s.submit(P.parse_control('{"type": "start", "pace": "none"}'))
    engine._turn()
    for i in range(MAX_SLOTS + 2):
        s.submit(P.parse_control(json.dumps({"type": "save", "slot": f"slot{i}", "id": i})))
        engine._apply_controls(s)
    s.submit(P.parse_control('{"type": "save", "slot": "slot0", "id": 99}'))   # saving over one is fine
    engine._apply_controls(s)
    replies = [m for _, m in (s.outbox.get_nowait()[:2] for _ in range(s.outbox.qsize())) if isinstance(m, dict)]
    by_id = {m.get("id"): m for m in replies if m.get("id") is not None}
    assert all(by_id[i]["type"] == "ack" for i in range(MAX_SLOTS)) and by_id[99]["type"] == "ack"
    for i in (MAX_SLOTS, MAX_SLOTS + 1):
        assert by_id[i]["type"] == "error" and f"already has {MAX_SLOTS} saved slots" in by_id[i]["message"]
    assert len(s.slots) == MAX_SLOTS and engine.saved_bytes == sum(s.slot_bytes.values()) > 0
    s.close()
    assert engine.saved_bytes == 0 and not s.slots


def test_a_flood_over_the_socket_is_bounded_and_a_disconnect_drops_its_work(model):
    """A client that sends thousands of saves and reads nothing: the server stops reading it (its
    queue never passes MAX_CONTROLS), its slots stay capped, a well-behaved client keeps streaming
    in order, and when the flooder disconnects its queued work and saved states are gone."""
    engine = Engine(model, threads=1)
    with LiveServer(engine) as srv:
        async def go():
            flooder = await websockets.connect(srv.ws_url, max_size=2 ** 24, close_timeout=1)
            await flooder.recv()
            await flooder.send(json.dumps({"type": "start", "pace": "none", "ahead": 1}))
            peak = 0

            async def flood():
                for i in range(3000):
                    await flooder.send(json.dumps({"type": "save", "slot": f"s{i % 50}"}))
            task = asyncio.create_task(flood())
            async with Client(srv.ws_url) as good:
                await good.start("steady", pace="none", ahead=2)
                indices = []
                while len(indices) < 40:
                    item = await good.recv(timeout=60)
                    if isinstance(item, Block):
                        indices.append(item.index)
                    for s in list(engine.sessions):
                        peak = max(peak, s.pending)
                assert indices == list(range(40)) and not good.errors
            flooded = [s for s in engine.sessions]
            assert len(flooded) == 1 and len(flooded[0].slots) <= MAX_SLOTS
            task.cancel()
            await flooder.close()
            for _ in range(500):
                if not engine.sessions:
                    break
                await asyncio.sleep(0.01)
            assert not engine.sessions and engine.saved_bytes == 0
            assert not flooded[0].controls and flooded[0].pending == 0
            return peak
        assert run(go(), 180) <= MAX_CONTROLS


def test_osc_answers_bad_session_ids_and_keeps_a_bounded_error_log(model):
    pytest.importorskip("pythonosc")
    from pythonosc.osc_message import OscMessage
    from pythonosc.udp_client import SimpleUDPClient
    from lmdm.live.osc import MAX_ERRORS, OSCBridge
    engine = Engine(model, threads=1)
    bridge = OSCBridge(engine, "127.0.0.1", 0).start()
    try:
        osc = SimpleUDPClient("127.0.0.1", bridge.port)
        osc._sock.settimeout(10)
        for value in (float("inf"), float("nan"), -1, 2.5, "abc", 2 ** 40):
            osc.send_message("/lmdm/session", value)
            reply = OscMessage(osc._sock.recvfrom(4096)[0])
            assert reply.address == "/lmdm/error" and "session" in reply.params[0], (value, reply.params)
        assert bridge.target == 0
        osc.send_message("/lmdm/session", 3)
        osc.send_message("/lmdm/cfg", 2.0)   # no session 3: an error, and the bridge still answers
        assert "no live session with id 3" in OscMessage(osc._sock.recvfrom(4096)[0]).params[0]
        for i in range(MAX_ERRORS + 50):
            osc.send_message("/lmdm/nothing", i)
            osc._sock.recvfrom(4096)
        assert len(bridge.errors) == MAX_ERRORS and bridge.error_count == MAX_ERRORS + 57
    finally:
        bridge.stop()


def test_every_control_message_has_a_handler():
    """The dispatch table covers the protocol: a message the parser accepts is never left unhandled."""
    from lmdm.live.dispatch import HANDLERS
    assert set(HANDLERS) == set(P.Control.__origin__.__args__)
