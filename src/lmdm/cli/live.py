"""`lmdm live`: the live server (browser UI, WebSocket, OSC) or a scripted headless session."""
from __future__ import annotations

import sys

from .generate import CACHE_HELP, CACHE_MODES, LABELS


def _load_model(args):
    if args.test_model:
        from ..live.testmodel import tiny_live_model
        return tiny_live_model()
    from ..checkpoints import load, resolve_dtype
    return load(args.model, dtype=resolve_dtype(args.dtype), t5_path=args.t5, cache=args.cache)


def _live(args) -> int:
    from ..config import SamplingConfig
    from ..errors import ConfigError
    if not 1 <= args.max_sessions <= 256:
        raise ConfigError(f"--max-sessions must be in [1, 256], got {args.max_sessions}")
    if not 0 <= args.port <= 65535 or (args.osc_port is not None and not 0 <= args.osc_port <= 65535):
        raise ConfigError(f"ports must be in [0, 65535], got --port {args.port}, --osc-port {args.osc_port}")
    if not args.max_saved_mb > 0 or args.max_saved_mb != args.max_saved_mb:
        raise ConfigError(f"--max-saved-mb must be a positive number, got {args.max_saved_mb}")
    for origin in args.allow_origin:
        if not origin.startswith(("http://", "https://")):
            raise ConfigError(f"--allow-origin takes an origin like http://mybox.local:8000, got {origin!r}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.headless:   # every option and the output path are checked before the model loads
        from ..audio.writer import check_output
        from ..engine.prompts import parse_schedule
        if not args.script:
            raise ConfigError('--headless needs --script, e.g. --script "warm piano@0s" "dub techno@10s"')
        SamplingConfig(seconds=args.seconds, seed=args.seed, steps=args.steps, cfg_scale=args.cfg).validate(LABELS)
        parse_schedule(args.script)
        check_output(args.out, "--out")
    model = _load_model(args)
    if args.headless:
        from ..live.headless import run_headless
        log = lambda msg: print(f"lmdm live: {msg}", file=sys.stderr, flush=True)  # noqa: E731
        report = run_headless(model, args.out, args.script, args.seconds, seed=args.seed, steps=args.steps,
                              cfg=args.cfg, threads=args.threads, progress=log)
        print(f"wrote {report['out']}: {report['seconds']:.2f} s at {model.sample_rate} Hz, "
              f"real-time factor {report['rtf']:.2f}")
        return 0
    from ..live.engine import Engine
    from ..live.server import resolve_token, serve
    engine = Engine(model, max_sessions=args.max_sessions, threads=args.threads, max_saved_mb=args.max_saved_mb)
    token = resolve_token(args.host, args.token)
    print(f"lmdm live: open http://{args.host}:{args.port}/" + (f"?token={token}" if token else "")
          + f" (block {engine.block_seconds * 1000:.0f} ms, {model.sample_rate} Hz)", flush=True)
    serve(engine, args.host, args.port, args.osc_port, allow_origins=args.allow_origin, token=token)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "live", help="play the model live: browser UI, WebSocket, OSC, or a scripted headless session",
        description="Start the live server (FastAPI + WebSocket) and open http://HOST:PORT in a browser. "
        "One generation thread serves all sessions; each streams raw PCM blocks generated just ahead of "
        "the playhead. With --headless, run a scripted session to a WAV file instead.")
    p.add_argument("--model", default="default",
                   help="'default' (the embedded model) or a model directory (lmdm or Stable Audio Open)")
    p.add_argument("--test-model", action="store_true",
                   help="use a small random model (noise; to try the UI and the protocol without weights)")
    p.add_argument("--t5", default=None, help="local t5-base directory, for models conditioned on T5")
    p.add_argument("--cache", default=None, choices=CACHE_MODES, help=CACHE_HELP)
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                   help="auto (default): bf16 where the CPU has native bf16 or on a GPU; int8: int8 DiT blocks, "
                   "the faster CPU path without native bf16")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the generation thread (default 1: fastest on a small shared CPU; "
                   "raise it for big models on a machine of their own)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP/WebSocket port (default 8000)")
    p.add_argument("--osc-port", type=int, default=None, help="also listen for OSC on this UDP port (e.g. 9000)")
    p.add_argument("--max-sessions", type=int, default=8)
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept WebSocket connections from pages of this origin, e.g. http://mybox.local:8000 "
                   "(repeatable; the server's own origin is always accepted, other sites' pages never)")
    p.add_argument("--token", default=None,
                   help="the token clients must pass (?token=...) when listening beyond loopback (default: a "
                   "random one per run, printed in the URL); ignored on loopback unless given")
    p.add_argument("--max-saved-mb", type=float, default=256.0,
                   help="saved states (save/load) of all sessions together, in MB (default 256)")
    h = p.add_argument_group("headless")
    h.add_argument("--headless", action="store_true", help="no server: run --script and write --out")
    h.add_argument("--out", default="session.wav", help="WAV file of the headless session (default session.wav)")
    h.add_argument("--script", nargs="+", default=None, metavar="SPEC",
                   help='prompt changes as in `lmdm generate --prompts`: "warm piano@0s" "dub techno:1|choir:0.5@10s"')
    h.add_argument("--seconds", type=float, default=30.0, help="length of the headless session (default 30)")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--steps", type=int, default=None, help="denoising steps per block (model default)")
    h.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    p.set_defaults(func=_live)
