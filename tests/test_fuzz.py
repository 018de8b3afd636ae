"""Issue 34: property-based fuzzing (hypothesis, derandomized so CI sees the same cases) of the
command line's option values, the live protocol's control messages and the OSC bridge. The oracle
is written here from the documented ranges, independently of `config.KNOBS`: no traceback, no hang,
no out-of-range value accepted, no in-range value refused, nothing written over the user's file."""
import asyncio
import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmdm.cli import main
from lmdm.live.testmodel import save_tiny_live_model

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
OLD = b"the user's previous render"
SPECIAL = [0.0, -0.0, -1.0, 1e-7, float("nan"), float("inf"), float("-inf"), 1e9, 1e308]


def in_range(x, lo, hi, lo_open=False):
    return isinstance(x, (int, float)) and math.isfinite(x) and (x > lo if lo_open else x >= lo) and x <= hi


def num(lo, hi):
    """Numbers around a range, its edges and the values users mistype."""
    return st.one_of(st.floats(lo - 2, hi + 2), st.sampled_from(SPECIAL + [lo, hi]))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_live_model(tmp_path_factory.mktemp("fuzz") / "tiny", block_frames=64, steps=1)


# per option: values anywhere (edges, specials, mistypes) and values that are fine, so one option at a
# time is off (the others valid) and each example tests that one option's check
ANY = {"seconds": st.one_of(st.floats(-0.2, 0.12), st.sampled_from(SPECIAL)), "cfg": num(0, 20),
       "steps": st.sampled_from([-2, 0, 1, 2, 65, 1000]), "seed": st.sampled_from([-1, 0, 7, 2 ** 63, 2 ** 64]),
       "block": st.sampled_from([None, -1, 0, 64, 4097]), "beat_cfg": num(0, 20),
       "prompt_guidance": st.sampled_from([0.0, 0.5, -1.0, float("nan")]), "weight": num(0, 100)}
FINE = {"seconds": st.floats(0.01, 0.1), "cfg": st.floats(0, 20), "steps": st.sampled_from([1, 2]),
        "seed": st.integers(0, 2 ** 63 - 1), "block": st.sampled_from([None, 64]), "beat_cfg": st.floats(0, 20),
        "prompt_guidance": st.just(0.0), "weight": st.floats(0.001, 100)}


@FUZZ
@given(data=st.data(), off=st.sampled_from([None] + sorted(ANY)))
def test_fuzz_generate_options(model_dir, tmp_path_factory, capsys, data, off):
    v = {name: data.draw(ANY[name] if name == off else FINE[name], label=name) for name in ANY}
    seconds, cfg, steps, seed, block = v["seconds"], v["cfg"], v["steps"], v["seed"], v["block"]
    beat_cfg, prompt_guidance, weight = v["beat_cfg"], v["prompt_guidance"], v["weight"]
    folder = tmp_path_factory.mktemp("out")
    out = folder / "song.wav"
    out.write_bytes(OLD)
    # --opt=VALUE: argparse takes "-1e-05" after a bare --opt for an option, not a value
    argv = ["generate", "--prompts", f"a:{weight!r}|b:1", "--model", str(model_dir), "-o", str(out), "--quiet",
            f"--seconds={seconds!r}", f"--cfg={cfg!r}", f"--steps={steps}", f"--seed={seed}",
            f"--beat-cfg={beat_cfg!r}", f"--prompt-guidance={prompt_guidance!r}"]
    if block is not None:
        argv += [f"--block={block}"]
    capsys.readouterr()
    ok = (in_range(seconds, 0, 86400, lo_open=True) and round(seconds * 44100) >= 1 and in_range(cfg, 0, 20)
          and 1 <= steps <= 64 and 0 <= seed < 2 ** 63 and block in (None, 64) and in_range(beat_cfg, 0, 20)
          and prompt_guidance == 0.0           # the tiny model has no prompt probe
          and in_range(weight, 0, 100, lo_open=True))
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if ok:
        assert code == 0, err
        import soundfile as sf
        assert sf.info(str(out)).frames == round(seconds * 44100)
    else:
        assert code == 2 and err.startswith("lmdm: error: ") and err.count("\n") == 1, (argv, err)
        assert out.read_bytes() == OLD
    assert sorted(p.name for p in folder.iterdir()) == ["song.wav"]


# -- the live protocol over a real WebSocket ------------------------------------------------

KNOB_FIELDS = {"cfg": ("scale", 0, 20, False), "steps": ("steps", 1, 64, True), "seed": ("seed", 0, 2 ** 63 - 1, True),
               "feedback": ("feedback", 0, 1, False), "cutoff": ("frames", 0, 65536, True),
               "sketch_strength": ("strength", 0, 1, False), "sketch_cfg": ("scale", 0, 20, False),
               "control_guidance": ("strength", 0, 2, False), "prompt_guidance": ("strength", 0, 2, False),
               "block": ("frames", 1, 4096, True)}
VALUES = st.one_of(st.integers(-10, 70000), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(
    [2 ** 63, -(2 ** 63), 1e308, 0, 1, 0.5, 20, 20.000001, 64, 65]), st.text(max_size=5), st.none(),
    st.lists(st.integers(), max_size=2))


def protocol_ok(kind, value) -> bool:
    field, lo, hi, integer = KNOB_FIELDS[kind]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if integer and isinstance(value, float) and not value.is_integer():
        return False
    return lo <= value <= hi


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("fastapi")
    from lmdm.live.engine import Engine
    from lmdm.live.server import LiveServer
    from lmdm.live.testmodel import tiny_live_model
    with LiveServer(Engine(tiny_live_model(steps=1), threads=1)) as srv:
        yield srv


@FUZZ
@given(messages=st.lists(st.one_of(
    st.tuples(st.sampled_from(sorted(KNOB_FIELDS)), VALUES).map(lambda kv: ("knob", kv)),
    st.dictionaries(st.sampled_from(["type", "id", "prompts", "slot", "mode", "x"]), VALUES, max_size=3)
    .map(lambda d: ("junk", d)),
    st.text(max_size=20).map(lambda t: ("raw", t))), min_size=1, max_size=12))
def test_fuzz_live_controls(server, messages):
    from lmdm.live.client import Client

    async def go():
        async with Client(server.ws_url) as c:
            expected = {}
            for n, (kind, body) in enumerate(messages):
                mid = 10_000 + n
                if kind == "knob":
                    name, value = body
                    field = KNOB_FIELDS[name][0]
                    await c.send_raw(json.dumps({"type": name, field: value, "id": mid}))
                    expected[mid] = protocol_ok(name, value)
                elif kind == "junk":
                    await c.send_raw(json.dumps({k: v for k, v in body.items() if k != "id"} | {"id": mid}))
                    expected[mid] = None   # either answer, but an answer
                else:
                    await c.send_raw(body)   # malformed text: an error without an id
            answers = {}
            async with asyncio.timeout(60):
                while not set(expected) <= set(answers):
                    m = await c.recv()
                    if isinstance(m, dict) and m.get("id") in expected:
                        answers[m["id"]] = m
            for mid, ok in expected.items():
                # an engine-level refusal (e.g. a block size this model cannot take) is an error with its
                # cmd; a protocol refusal has no cmd. An out-of-range value must never be acked.
                if ok is False:
                    assert answers[mid]["type"] == "error", answers[mid]
                elif ok:
                    assert answers[mid]["type"] == "ack" or answers[mid].get("cmd"), answers[mid]
            await c.start("still alive", pace="none", ahead=1)
            async for block in c.blocks(max_blocks=2):
                assert block.audio.shape[0] == 2
    asyncio.run(asyncio.wait_for(go(), 120))
    assert server.engine.errors == 0


# -- OSC over real UDP ------------------------------------------------------------------------

OSC_KNOBS = {"cfg": (0, 20, False), "sketch_cfg": (0, 20, False), "steps": (1, 64, True), "feedback": (0, 1, False),
             "cutoff": (0, 65536, True), "sketch_strength": (0, 1, False), "control_guidance": (0, 2, False),
             "prompt_guidance": (0, 2, False), "session": (0, 2 ** 31 - 1, True)}
# OSC carries 32-bit ints and floats: the values drawn are exactly what the bridge receives
OSC_ARGS = st.lists(st.one_of(st.integers(-2 ** 31, 2 ** 31 - 1), st.floats(width=32),
                              st.sampled_from(["abc", "", "1e999", 0, 1, 0.5, 20.0, 64, 65])), max_size=3)


def _number(v, lo, hi, lo_open=False, integer=False) -> bool:
    if isinstance(v, str) or not math.isfinite(v) or (integer and not float(v).is_integer()):
        return False
    return (v > lo if lo_open else v >= lo) and v <= hi


def osc_ok(name, args) -> bool:
    """Whether the bridge accepts the message (engine-level refusals go to the session, not OSC)."""
    if name == "nope" or name == "mode":     # no drawn value is a mode's name
        return False
    if name == "prompt":
        if len(args) == 1:
            return True                      # any value is a prompt's text, weight 1
        return len(args) == 2 and _number(args[1], 0, 100, lo_open=True)
    if name == "weights":
        return len(args) >= 1 and all(_number(v, 0, 100, lo_open=True) for v in args)
    if name == "drywet":
        if len(args) == 1:
            return _number(args[0], 0, 1)
        return len(args) == 2 and all(_number(v, 0, 1) for v in args)
    lo, hi, integer = OSC_KNOBS[name]
    return len(args) == 1 and _number(args[0], lo, hi, integer=integer)


@FUZZ
@given(messages=st.lists(st.tuples(st.sampled_from(sorted(OSC_KNOBS) + ["prompt", "weights", "mode", "drywet", "nope"]),
                                   OSC_ARGS), min_size=1, max_size=15))
def test_fuzz_osc(messages):
    pytest.importorskip("pythonosc")
    from pythonosc.udp_client import SimpleUDPClient
    from lmdm.live.engine import Engine
    from lmdm.live.osc import OSCBridge
    from lmdm.live.testmodel import tiny_live_model
    engine = Engine(tiny_live_model(steps=1), threads=1).start()
    engine.open(None)   # a session to control (not playing: the engine applies controls at once)
    bridge = OSCBridge(engine, "127.0.0.1", 0).start()
    try:
        osc = SimpleUDPClient("127.0.0.1", bridge.port)
        osc._sock.settimeout(30)
        # a valid session id other than 0 would point later messages at a missing session, and the
        # bridge answers datagrams on threads (in any order): those are left out
        messages = [(n, a) for n, a in messages if not (n == "session" and osc_ok(n, a) and a[0] != 0)]
        expected = sum(not osc_ok(n, a) for n, a in messages)
        for name, args in messages:
            osc.send_message("/lmdm/" + name, args)
        for _ in range(expected):   # every refused datagram is answered to its sender
            osc._sock.recvfrom(65536)
        time.sleep(0.3)             # room for a wrong extra answer to show up in the count below
        assert bridge.error_count == expected, (messages, list(bridge.errors))
        assert engine.errors == 0 and bridge._thread.is_alive()
    finally:
        bridge.stop()
        engine.shutdown()
