"""`lmdm live` against the real server on loopback (random free port, server on a thread)."""
import asyncio
import json
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from lmdm.live import protocol as P  # noqa: E402
from lmdm.live.client import Block, Client  # noqa: E402
from lmdm.live.engine import Engine  # noqa: E402
from lmdm.live.server import LiveServer  # noqa: E402
from lmdm.live.testmodel import tiny_live_model  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with LiveServer(Engine(tiny_live_model(steps=4), threads=1)) as srv:
        yield srv


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_frame_roundtrip_and_limits():
    audio = np.linspace(-1, 1, 2 * 100, dtype=np.float32).reshape(2, 100)
    for fmt, tol in (("f32", 0), ("i16", 1 / 32767)):
        index, rate, back = P.decode_frame(P.encode_frame(audio, 7, 44100, fmt))
        assert (index, rate, back.shape) == (7, 44100, (2, 100))
        np.testing.assert_allclose(back, audio, atol=tol)
    with pytest.raises(P.ProtocolError, match="exceeds"):
        P.decode_frame(b"x" * 100, max_bytes=50)
    with pytest.raises(P.ProtocolError, match="payload"):
        P.decode_frame(P.encode_frame(audio, 0, 44100)[:-4])


@pytest.mark.parametrize("text, reason", [
    ("{not json", "malformed JSON"),
    ('{"type": "cfg", "scale": 2, "volume": 3}', "unknown field 'volume'"),
    ('{"type": "cfg", "scale": 99}', "scale"),
    ('{"type": "steps", "steps": 0}', "steps"),
    ('{"type": "warp"}', "unknown message type 'warp'"),
    ('{"type": "prompts", "prompts": [{"text": "a", "weight": -1}]}', "weight"),
    ('{"type": "mode", "mode": "jam"}', "mode"),
    ('{"type": "feedback", "feedback": 2}', "feedback"),
    ('{"type": "sketch", "curves": {"volume": [1]}}', "curves"),
])
def test_parse_control_rejects(text, reason):
    with pytest.raises(P.ProtocolError, match=reason):
        P.parse_control(text)


def test_thirty_seconds_gapless_with_prompt_changes(server):
    """30 s of audio with two prompt changes: gapless indices, every change in effect at most
    `ahead` + 1 blocks after it was sent, and its ack arrives just before the block it names."""
    ahead = 2

    async def session():
        async with Client(server.ws_url) as c:
            await c.start([("warm piano", 1.0)], pace="none", ahead=ahead)
            order, sent_at, last, samples = [], {}, -1, 0
            changes = {10.0: [("dub techno", 1.0)], 20.0: [("dub techno", 0.3), ("choir", 1.0)]}
            while samples < 30 * c.rate:
                item = await c.recv()
                if isinstance(item, Block):
                    assert item.index == last + 1, "gap in block indices"
                    last, samples = item.index, samples + item.audio.shape[1]
                    assert item.audio.shape[0] == 2 and np.isfinite(item.audio).all()
                    order.append(("block", item.index))
                    due = [t for t in changes if samples >= t * c.rate]
                    for t in due:
                        sent_at[await c.set_prompts(changes.pop(t))] = last
                elif item["type"] == "ack":
                    order.append(("ack", item["id"], item["block"]))
            return c, order, sent_at, samples

    c, order, sent_at, samples = run(session())
    assert samples >= 30 * c.rate and len(sent_at) == 2 and not c.errors
    for id, at in sent_at.items():
        pos, ack = next((i, o) for i, o in enumerate(order) if o[0] == "ack" and o[1] == id)
        assert at < ack[2] <= at + ahead + 1, (at, ack)
        assert ("block", ack[2]) not in order[:pos], "ack arrived after the block it names"


def test_bad_clients_get_errors_and_others_keep_streaming(server):
    async def scenario():
        async with Client(server.ws_url) as good:
            await good.start("steady", pace="none", ahead=2)
            got = [b.index async for b in good.blocks(max_blocks=3)]
            async with Client(server.ws_url) as bad:
                for text in ("{oops", '{"type": "cfg", "scale": 1, "extra": 1}', '{"type": "cfg", "scale": -5}',
                             '{"type": "mode", "mode": "accompaniment"}', '{"type": "weights", "weights": [1, 2]}'):
                    await bad.send_raw(text)
                await bad.send_raw(b"\0" * (P.MAX_INPUT_BYTES + 1))         # oversized: error, stays open
                await bad.send_raw(b"LMDM" + b"\0" * 30)                     # bad header
                await bad.send_input(np.zeros((1, 480), np.float32), 0, 48000)  # fine: counted, ignored
                await bad.send_raw('{"type": "load", "slot": "nothing"}')
                async with asyncio.timeout(20):
                    while len(bad.errors) < 8:
                        await bad.recv()
                text = " | ".join(e["message"] for e in bad.errors)
                for reason in ("malformed JSON", "unknown field 'extra'", "scale", "no 'accompaniment' input "
                               "group", "2 weights for 1 prompts", "exceeds the limit", "magic",
                               "no saved state in slot 'nothing'"):
                    assert reason in text
                await bad.start("doomed", pace="none")
                async for _ in bad.blocks(max_blocks=2):
                    pass
            # `bad` vanished mid-stream; a third one sends a frame over the transport limit
            huge = Client(server.ws_url)
            await huge.connect()
            # refused: a 1009 close ("message too big") once the header is read; when the server closes with
            # the rest of the 5 MB still unsent into its fixed 512 KB receive buffer, the client's send sees
            # the connection reset instead (server.listen_socket)
            with pytest.raises(Exception) as refused:
                await huge.send_raw(b"\0" * (5 * 1024 * 1024))
                for _ in range(10):
                    await huge.recv(timeout=10)
            assert huge._ws.close_code == 1009 or isinstance(refused.value, ConnectionResetError), refused.value
            async for b in good.blocks(max_blocks=20):
                got.append(b.index)
            assert got == list(range(len(got)))
            assert not good.errors
        for _ in range(100):  # the server forgets closed sessions
            if json.load(urllib.request.urlopen(server.url + "/api/info"))["sessions"] == 0:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("sessions were not cleaned up")

    run(scenario())


def test_controls_ack_and_state_restore_is_exact(server):
    async def scenario():
        async with Client(server.ws_url) as c:
            await c.start([("a", 1.0), ("b", 0.5)], pace="none", ahead=1, seed=3)
            blocks = {}

            async def until(n):
                while max(blocks, default=-1) < n:
                    item = await c.recv()
                    if isinstance(item, Block):
                        blocks[item.index] = item.audio

            await until(2)
            for send in (c.set_weights([1.0, 2.0]), c.set_cfg(1.5), c.set_steps(3), c.set_seed(9),
                         c.send({"type": "mix", "wet": 0.8}), c.send({"type": "mode", "mode": "text"})):
                await c.wait_for("ack", await send)
            saved = (await c.wait_for("ack", await c.send({"type": "save", "slot": "x"})))["block"]
            await until(saved + 3)
            await c.reset()
            loaded = (await c.wait_for("ack", await c.send({"type": "load", "slot": "x"})))["block"]
            await until(loaded + 3)
            assert not c.errors
            for i in range(3):  # the restored stream continues exactly as it did after the save
                np.testing.assert_array_equal(blocks[loaded + i], blocks[saved + i])
            assert not np.array_equal(blocks[saved], blocks[saved + 1])

    run(scenario())


def test_index_page_and_static_files(server):
    html = urllib.request.urlopen(server.url + "/").read().decode()
    assert "lmdm" in html
    info = json.load(urllib.request.urlopen(server.url + "/api/info"))
    assert info["sample_rate"] == 44100 and info["block_samples"] == 4096


def test_block_size_changes_live_in_text_mode(server):
    """A block-size control lands at a block boundary: gapless indices, blocks of the new size from
    the acked block on; input modes refuse it and return to the model's block size."""
    B, hop = server.engine.block_frames, server.engine.hop

    async def scenario():
        async with Client(server.ws_url) as c:
            sizes = {}

            async def reply(msg_id):   # like wait_for, but keeps the audio
                while True:
                    for m in c.acks + c.errors:
                        if m.get("id") == msg_id:
                            return m
                    item = await c.recv()
                    if isinstance(item, Block):
                        sizes[item.index] = item.audio.shape[1]

            async def until(n):
                while max(sizes, default=-1) < n:
                    item = await c.recv()
                    if isinstance(item, Block):
                        sizes[item.index] = item.audio.shape[1]

            await reply(await c.start("a", pace="none", ahead=1, seed=1, block=B // 2))
            await until(2)
            at = (await reply(await c.set_block(B // 4)))["block"]
            await until(at + 2)
            too_big = await reply(await c.send({"type": "block", "frames": 4 * B}))  # C' = (C // 4B) * 4B = 0
            assert too_big["type"] == "error"
            delay = await reply(await c.set_mode("generative_delay"))
            refused = await reply(await c.set_block(B // 2))
            assert refused["type"] == "error" and "text mode only" in refused["message"], refused
            await c.send_input(np.zeros((server.engine.channels, 3 * B * hop), np.float32), 0)
            await until(delay["block"] + 1)
            return sizes, at, delay["block"]

    sizes, at, delay_at = run(scenario())
    assert sorted(sizes) == list(range(len(sizes)))                   # gapless
    assert all(sizes[i] == B // 2 * hop for i in range(1, at))       # block 0 is shorter by the decoder's delay
    assert all(sizes[i] == B // 4 * hop for i in range(at, delay_at))
    assert sizes[delay_at + 1] == B * hop                             # input modes: the model's block
