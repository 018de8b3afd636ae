"""`lmdm bench`: speed of the streaming DiT (each attention pattern, dtype and thread count side by
side), end to end with decoding, the autoencoder, or training throughput."""
from __future__ import annotations

import json
import sys

from ..errors import ConfigError


def _bench(args) -> int:
    from ..bench.streams import compare, format_table, resolve_bench_dtype, run_bench
    if args.compare:
        print(compare(*args.compare))
        return 0
    from ..config import check_knob
    check_knob("steps", args.steps, "--steps")
    check_knob("cfg_scale", args.cfg, "--cfg")
    for flag, value, lo in (("--blocks", args.blocks, 1), ("--warmup", args.warmup, 0), ("--batch", args.batch, 1),
                            ("--threads", args.threads, 1), ("--block", args.block, 1), ("--context", args.context, 0)):
        for v in (value if isinstance(value, list) else [value]):   # --threads takes several counts
            if v is not None and v < lo:
                raise ConfigError(f"{flag} must be >= {lo}, got {v}")
    if args.train:
        from ..train.bench import bench_training
        dtype = resolve_bench_dtype(args.dtype[0])
        if len(args.dtype) > 1 or dtype not in ("fp32", "bf16"):
            raise ConfigError(f"--train times one training precision, fp32 or bf16, got --dtype {' '.join(args.dtype)}")
        result = bench_training(args.preset, dtype, steps=args.blocks, warmup=max(args.warmup, 1))
        print(json.dumps(result, indent=2) if args.json else
              "lmdm bench --train: " + ", ".join(f"{k}={v}" for k, v in result.items()))
        return 0
    # progress and running medians on stderr, flushed, in --json mode too: a killed run leaves figures
    progress = lambda msg: print(msg if msg.startswith("lmdm bench") else f"lmdm bench: {msg}",  # noqa: E731
                                 file=sys.stderr, flush=True)
    emit = progress if args.json else (lambda line: print(line, flush=True))
    report = run_bench(args.preset, args.dtype, steps=args.steps, blocks=args.blocks, warmup=args.warmup,
                       patterns=tuple(args.patterns), block_frames=args.block, context_frames=args.context,
                       threads=args.threads, progress=progress, emit=emit, end_to_end=args.end_to_end, batch=args.batch,
                       device=args.device, cfg_scale=args.cfg,
                       sketch={"sketch_cfg": args.sketch_cfg, "control_guidance": args.control_guidance}
                       if args.sketch else None, prompt_guidance=args.prompt_guidance, beat_cfg=args.beat_cfg)
    if args.autoencoder:
        from ..bench.autoencoder import bench_autoencoder, preset_autoencoder
        progress("autoencoder")
        floats = [d for d in report["config"]["dtype"].split("/") if d != "int8"]  # int8 is the DiT's, not the codec's
        report["autoencoder"] = bench_autoencoder(preset_autoencoder(args.preset),
                                                  dtypes=tuple(dict.fromkeys(["fp32", *floats])))
    print(json.dumps(report, indent=2) if args.json else format_table(report, preamble=False))
    return 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="time the streaming DiT for each attention pattern",
                       description="Per-block DiT latency of the bidirectional (outpainting) baseline, enc-dec "
                       "and block-causal patterns, measured side by side in one run with random weights. "
                       "Reports median/p90 block time, bootstrap/prefill, fused-first-step and subsequent-step "
                       "times, tokens per block, real-time factor (audio seconds per compute second; >1 is "
                       "faster than real time) and each pattern's speedup over the baseline.")
    b.add_argument("--preset", default="tiny", choices=["tiny", "small", "sao-small", "default"],
                   help="model shape (default = the embedded default model's, with its own autoencoder; weights are random either way: speed does not depend on them)")
    b.add_argument("--dtype", nargs="+", default=["fp32"], choices=["auto", "fp32", "bf16", "int8"],
                   help="one or more, timed side by side (default fp32): int8 = the DiT blocks' linear layers "
                   "with int8 weights (dynamic quantization); auto = as generate resolves it")
    b.add_argument("--steps", type=int, default=8, help="denoising steps per block (default 8)")
    b.add_argument("--blocks", type=int, default=5, help="timed blocks per pattern (default 5)")
    b.add_argument("--warmup", type=int, default=2, help="untimed blocks first, the bootstrap included (default 2)")
    b.add_argument("--block", type=int, default=None, help="block size B in latent frames (preset default)")
    b.add_argument("--context", type=int, default=None, help="context size C in latent frames (preset default)")
    b.add_argument("--patterns", nargs="+", default=["bidirectional", "enc-dec", "block-causal"],
                   choices=["bidirectional", "enc-dec", "block-causal"])
    b.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch threads, one or more counts timed side by side (default: torch's choice)")
    b.add_argument("--end-to-end", action="store_true",
                   help="time whole audio blocks (DiT + streaming decode with SAO-small's autoencoder shape; default: its own; tiny: "
                   "a toy one) and the cost of a prompt change")
    b.add_argument("--batch", type=int, default=1, help="concurrent streams generated as one batch (default 1)")
    b.add_argument("--cfg", type=float, default=1.0,
                   help="classifier-free guidance scale of the timed streams (1 = off; otherwise every step runs "
                   "a conditional and an unconditional pass)")
    b.add_argument("--prompt-guidance", type=float, default=None, metavar="G",
                   help="prompt guidance strength of the timed streams (default: the preset's; the default model "
                   "has it on from v0.9, so --prompt-guidance 0 times it without)")
    b.add_argument("--beat-cfg", type=float, default=None, metavar="S",
                   help="beat guidance scale of the timed streams, whose prompt names a tempo (default: the preset's; "
                   "the default model has it on from v0.11, so --beat-cfg 1 times it without)")
    b.add_argument("--sketch", action="store_true",
                   help="time sketched streams (slow random loudness/brightness curves; models with a sketch input "
                   "group, e.g. --preset default), with --sketch-cfg and --control-guidance")
    b.add_argument("--sketch-cfg", type=float, default=1.0, help="with --sketch: guidance on it (default 1 = off)")
    b.add_argument("--control-guidance", type=float, default=0.0,
                   help="with --sketch --end-to-end: control guidance strength (default 0 = off)")
    b.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N: the DiT, its cache and the codec "
                   "run there, the stream's small buffers stay on the CPU (timings wait for the GPU)")
    b.add_argument("--train", action="store_true",
                   help="instead: stage-1 training throughput (ms/step, latent frames/s, audio s/s) at batch 2 "
                   "with random data; --blocks sets the timed steps")
    b.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print B/A ratios of two --json reports")
    b.add_argument("--autoencoder", action="store_true",
                   help="also time the autoencoder (SAO-small's shape; default: its own; tiny: a toy one): offline and streaming "
                   "decode/encode, and the bf16-vs-fp32 decode SNR")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    b.set_defaults(func=_bench)
