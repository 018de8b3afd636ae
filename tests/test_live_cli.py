"""`lmdm live` from the command line: a served lmdm directory (subprocess) and a headless session."""
import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import soundfile as sf

pytest.importorskip("fastapi")

from lmdm.errors import ConfigError  # noqa: E402
from lmdm.cli.live import register as add_live_parser  # noqa: E402
from lmdm.live.client import SyncClient  # noqa: E402
from lmdm.live.testmodel import save_tiny_live_model  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(prog="lmdm")
    add_live_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_headless_session_writes_the_script(tmp_path):
    model_dir = save_tiny_live_model(tmp_path / "model", steps=2)
    out = tmp_path / "session.wav"
    args = parse(["live", "--model", str(model_dir), "--headless", "--out", str(out), "--seconds", "3",
                  "--script", "warm piano@0s", "dub techno:1|choir:0.5@1.5s"])
    assert args.func(args) == 0
    audio, rate = sf.read(out)
    assert rate == 44100 and audio.shape == (3 * 44100, 2)


def test_server_subprocess_serves_a_model_directory(tmp_path):
    model_dir = save_tiny_live_model(tmp_path / "model", steps=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys, argparse; from lmdm.cli.live import register as add_live_parser; p = argparse.ArgumentParser(); "
            "add_live_parser(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    proc = subprocess.Popen([sys.executable, "-c", code, "live", "--model", str(model_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):
            try:
                info = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=1))
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        else:
            pytest.fail("server did not come up")
        assert info["block_samples"] == 4096
        with SyncClient(f"ws://127.0.0.1:{port}/ws") as c:
            c.start("a", pace="none")
            blocks = c.read(max_blocks=5)
        assert [b.index for b in blocks] == list(range(5))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
