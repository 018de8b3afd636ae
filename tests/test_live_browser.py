"""The browser UI in a real Chromium (Debian's, driven by playwright): play, move the controls, and
check correctness, not speed: no page errors, every block in order, the underrun counter counts a
real stall of the server and the stream resumes after it. Throughput (real-time factor, underruns
under load) is measured by the soak benchmark (`python -m lmdm.live.soak`), never asserted here:
it depends on the machine.

The screenshot is kept as a test artifact: $LMDM_TEST_ARTIFACTS/live-ui-{tiny,default}.png (default: the system
temp dir's lmdm-live-test/live-ui.png)."""
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

import lmdm  # noqa: E402
from lmdm.live.engine import Engine  # noqa: E402
from lmdm.live.server import LiveServer  # noqa: E402
from lmdm.live.testmodel import tiny_live_model  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream"]


def artifact_dir() -> Path:
    d = Path(os.environ.get("LMDM_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "lmdm-live-test"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def live_model(name: str):
    return tiny_live_model(steps=4) if name == "tiny" else lmdm.load("default", dtype="auto")


# the random tiny model (93 ms blocks) stresses block rate; the embedded default model (2.2 s blocks,
# bf16 where the CPU has it) is what a user hears on 2 cores
def stall_once(engine, after_blocks: int):
    """Make the real engine stall once, as a slow machine would: the block generated after
    `after_blocks` blocks sleeps first, longer than any buffer the page can hold (the server runs
    at most lead 0.6 s + one block ahead). Returns an event set when the stall is over."""
    seconds = 3.0 + 2 * engine.block_seconds
    real, over, count = engine._next_audio, threading.Event(), [0]

    def next_audio(s):
        count[0] += 1
        if count[0] == after_blocks + 1:
            time.sleep(seconds)
            over.set()
        return real(s)
    engine._next_audio = next_audio
    return over


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_browser_plays_in_order_counts_an_underrun_and_resumes(name):
    model = live_model(name)
    engine = Engine(model, threads=1)
    with LiveServer(engine) as srv, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            console = []
            page.on("console", lambda m: console.append(m.text))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(srv.url + "/")
            page.wait_for_function("window.lmdmStats && window.lmdmStats.sampleRate > 0", timeout=15000)
            page.fill("#new-prompt", "dub techno, 120 BPM")
            page.click("#add-form button")
            page.click("#play")
            page.wait_for_function("window.lmdmStats.blocksReceived > 1", timeout=30000)
            # the sketch-guidance slider starts at the model's default and its change reaches the session
            assert float(page.input_value("#sketch-cfg")) == model.config.sketch_cfg_scale
            page.eval_on_selector("#sketch-cfg", "el => { el.value = 2.5; el.dispatchEvent(new Event('change')); }")
            page.wait_for_function("window.lmdmStats.acks >= 2", timeout=15000)
            assert float(page.input_value("#control-guidance")) == 0.0   # off live by default
            page.eval_on_selector("#control-guidance", "el => { el.value = 0.3; el.dispatchEvent(new Event('change')); }")
            page.wait_for_function("window.lmdmStats.acks >= 3", timeout=15000)
            # the BPM field is live only for a model with a beat clock; a typed tempo reaches the session
            has_clock = "beat" in model.config.dit.input_groups
            assert page.is_disabled("#bpm") != has_clock
            if has_clock:
                page.eval_on_selector("#bpm", "el => { el.value = 100; el.dispatchEvent(new Event('change')); }")
                page.wait_for_function("window.lmdmStats.acks >= 4", timeout=15000)
            # the prompt-guidance slider is live only for a model with a prompt probe, from the model's default
            has_probe = model.prompt_probe is not None
            assert page.is_disabled("#prompt-guidance") != has_probe
            if has_probe:
                assert float(page.input_value("#prompt-guidance")) == pytest.approx(model.config.prompt_guidance)
                page.eval_on_selector("#prompt-guidance", "el => { el.value = 0.2; el.dispatchEvent(new Event('change')); }")
                page.wait_for_function(f"window.lmdmStats.acks >= {3 + has_clock + 1}", timeout=15000)
            # move the second prompt's weight slider as a user would (input events while dragging)
            page.eval_on_selector_all(".weight", """els => { const w = els[1];
                for (const v of [0.6, 0.9, 1.4]) { w.value = v; w.dispatchEvent(new Event('input')); } }""")
            # a stall of the server: the page's buffer runs dry, the counter counts it, the stream resumes
            received = page.evaluate("window.lmdmStats.blocksReceived")
            stalled = stall_once(engine, after_blocks=0)
            while not stalled.is_set():
                page.wait_for_timeout(200)
            page.wait_for_function("window.lmdmStats.underruns >= 1", timeout=30000)
            after_stall = page.evaluate("window.lmdmStats.blocksReceived")
            page.wait_for_function(f"window.lmdmStats.blocksReceived >= {after_stall + 3}", timeout=60000)
            stats = page.evaluate("window.lmdmStats")
            page.screenshot(path=str(artifact_dir() / f"live-ui-{name}.png"))
            sketch_cfg = [x.sketch_cfg for x in srv.engine.sessions]
            guidance = [x.control_guidance for x in srv.engine.sessions]
            bpm = [x.bpm for x in srv.engine.sessions]
            prompt_guidance = [x.prompt_guidance for x in srv.engine.sessions]
            page.click("#stop")
        finally:
            browser.close()
    print("browser stats:", stats)
    assert not [c for c in console if "pageerror" in c], console
    assert stats["outOfOrder"] == 0 and stats["lastBlockIndex"] == stats["blocksReceived"] - 1, stats  # in order
    assert stats["blocksReceived"] >= after_stall + 3 > received, stats    # it resumed after the stall
    assert stats["underruns"] >= 1, stats                                 # and the stall was counted
    assert stats["acks"] >= 3 and stats["errors"] == 0, stats
    assert sketch_cfg == [2.5], sketch_cfg
    assert guidance == [0.3], guidance
    assert bpm == ([100.0] if has_clock else [None]), bpm
    assert prompt_guidance == ([0.2] if has_probe else [0.0]), prompt_guidance
