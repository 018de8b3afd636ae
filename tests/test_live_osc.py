"""The OSC bridge with a real UDP client on 127.0.0.1: controls reach the WebSocket session."""
import asyncio

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("pythonosc")

from pythonosc.osc_message import OscMessage  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402

from lmdm.live.client import Client  # noqa: E402
from lmdm.live.engine import Engine  # noqa: E402
from lmdm.live.osc import OSCBridge  # noqa: E402
from lmdm.live.server import LiveServer  # noqa: E402
from lmdm.live.testmodel import tiny_live_model  # noqa: E402


def test_osc_controls_a_session():
    engine = Engine(tiny_live_model(steps=2), threads=1)
    with LiveServer(engine) as srv:
        bridge = OSCBridge(engine, "127.0.0.1", 0).start()
        try:
            osc = SimpleUDPClient("127.0.0.1", bridge.port)
            osc._sock.settimeout(10)

            async def scenario():
                async with Client(srv.ws_url) as c:
                    await c.start("a", pace="none", ahead=1)
                    await c.wait_for("ack")
                    osc.send_message("/lmdm/prompt", ["dub techno", 1.0, "choir", 0.5])
                    osc.send_message("/lmdm/weights", [0.5, 1.0])
                    osc.send_message("/lmdm/cfg", 2.0)
                    osc.send_message("/lmdm/steps", 3)
                    osc.send_message("/lmdm/seed", 7)
                    osc.send_message("/lmdm/reset", [])
                    osc.send_message("/lmdm/stop", [])
                    async with asyncio.timeout(30):
                        while len(c.acks) < 8:
                            await c.recv()
                    assert [a["cmd"] for a in c.acks] == ["start", "prompts", "weights", "cfg", "steps", "seed",
                                                          "reset", "stop"]
                    assert not c.errors
                    osc.send_message("/lmdm/steps", 0)          # out of range: an error back to the sender
                    reply = OscMessage(osc._sock.recvfrom(4096)[0])
                    assert reply.address == "/lmdm/error" and "steps" in reply.params[0]
                    osc.send_message("/lmdm/volume", 1.0)       # unknown address
                    assert "unknown OSC address" in OscMessage(osc._sock.recvfrom(4096)[0]).params[0]

            asyncio.run(asyncio.wait_for(scenario(), 60))
        finally:
            bridge.stop()
