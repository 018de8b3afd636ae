"""The `lmdm` command line."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import ConfigError, LMDMError, PromptError


def _bench(args) -> int:
    from .bench import compare, format_table, resolve_bench_dtype, run_bench
    if args.compare:
        print(compare(*args.compare))
        return 0
    from .config import check_knob
    check_knob("steps", args.steps, "--steps")
    check_knob("cfg_scale", args.cfg, "--cfg")
    for flag, value, lo in (("--blocks", args.blocks, 1), ("--warmup", args.warmup, 0), ("--batch", args.batch, 1),
                            ("--threads", args.threads, 1), ("--block", args.block, 1), ("--context", args.context, 0)):
        for v in (value if isinstance(value, list) else [value]):   # --threads takes several counts
            if v is not None and v < lo:
                raise ConfigError(f"{flag} must be >= {lo}, got {v}")
    if args.train:
        from .train.bench import bench_training
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
        from .bench_autoencoder import bench_autoencoder
        from .models.autoencoder import AutoencoderConfig
        if args.preset == "default":
            from .checkpoints import default_config
            ae = AutoencoderConfig.from_dict(default_config().autoencoder)
        else:
            ae = (AutoencoderConfig(channels=8, c_mults=[1, 2], strides=[2, 4], latent_dim=8) if args.preset == "tiny"
                  else AutoencoderConfig())
        progress("autoencoder")
        floats = [d for d in report["config"]["dtype"].split("/") if d != "int8"]  # int8 is the DiT's, not the codec's
        report["autoencoder"] = bench_autoencoder(ae, dtypes=tuple(dict.fromkeys(["fp32", *floats])))
    print(json.dumps(report, indent=2) if args.json else format_table(report, preamble=False))
    return 0


# the flag a user typed for each SamplingConfig field, so an error names it
LABELS = {"seconds": "--seconds", "seed": "--seed", "steps": "--steps", "cfg_scale": "--cfg", "block_frames": "--block",
          "sketch_cfg": "--sketch-cfg", "sketch_strength": "--sketch-strength",
          "control_guidance": "--control-guidance", "prompt_guidance": "--prompt-guidance", "beat_cfg": "--beat-cfg",
          "bpm": "--bpm", "cutoff_frames": "--cutoff"}


def _knobs(args, **extra):
    """Every sampling option of a render, checked before anything is loaded or written."""
    from .config import SamplingConfig
    fields = {name: getattr(args, name) for name in ("sketch_cfg", "sketch_strength", "control_guidance",
                                                     "prompt_guidance", "beat_cfg", "bpm") if hasattr(args, name)}
    return SamplingConfig(seconds=args.seconds, seed=args.seed, steps=args.steps, cfg_scale=args.cfg,
                          block_frames=args.block, **fields, **extra).validate(LABELS)


def _check_length(schedule, seconds: float | None, model=None, writer=None) -> None:
    """Timed prompt changes inside the piece, and a piece that fits in a WAV file."""
    if seconds is not None:
        late = [t for t, _ in schedule if t > 0 and t >= seconds]
        if late:
            raise PromptError(f"a prompt change at {late[0]:g} s comes at or after the end of the piece "
                              f"(--seconds {seconds:g}), so it would never play")
    if model is not None and model.autoencoder is not None:
        from .audio.writer import max_seconds
        limit = max_seconds(model.sample_rate, model.autoencoder.config.audio_channels)
        if seconds is not None and seconds > limit:
            raise ConfigError(f"--seconds {seconds:g} is longer than a WAV file can hold at {model.sample_rate} Hz "
                              f"({limit / 3600:.2f} h); render it in parts")


def _generate(args) -> int:
    from .audio.writer import AudioWriter
    from .checkpoints import load, resolve_dtype
    from .engine.prompts import parse_schedule
    if (args.prompt is None) == (not args.prompts):
        raise PromptError('give one prompt, e.g. lmdm generate "funky bass groove, 110 BPM", or --prompts '
                          '"A@0s" "B@30s" (not both)')
    schedule = parse_schedule(args.prompts or [args.prompt])
    knobs = _knobs(args)
    _check_length(schedule, args.seconds)
    with AudioWriter(args.output) as out:   # the path is checked (and a temporary file made) before the model loads
        model = load(args.model, dtype=resolve_dtype(args.dtype), t5_path=args.t5, cache=args.cache)
        if model.autoencoder is None:
            raise ConfigError(f"model {args.model!r} has no autoencoder, so it cannot make audio")
        knobs.samples(model.sample_rate, "--seconds")
        _check_length(schedule, args.seconds, model)
        sketch = None
        if args.sketch:
            from .engine.generate import load_sketch
            sketch = load_sketch(model, args.sketch, args.seconds, args.sketch_strength)
        peak, say = 0.0, (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
        out.start(model.sample_rate, model.autoencoder.config.audio_channels)

        def write(chunk):
            nonlocal peak
            peak = max(peak, float(chunk.abs().max()) if chunk.numel() else 0.0)
            out.write(chunk.numpy())
        model.generate(schedule, args.seconds, seed=args.seed, steps=args.steps, cfg_scale=args.cfg,
                       progress=not args.quiet, on_audio=write, block_frames=args.block,
                       on_change=lambda t, p: say(f"prompt change at {t:.2f} s: {p}"), sketch=sketch,
                       sketch_cfg=args.sketch_cfg, control_guidance=args.control_guidance, bpm=args.bpm,
                       prompt_guidance=args.prompt_guidance, beat_cfg=args.beat_cfg)
    print(f"wrote {args.output}: {out.seconds:g} s at {model.sample_rate} Hz, peak {peak:.3f}"
          + (" (clipped to ±1)" if peak > 1 else "")
          + (f", sketch {args.sketch} ({sketch.shape[-1] * model.config.frame_seconds:.2f} s, strength "
             f"{args.sketch_strength:g})" if sketch is not None else ""))
    return 0


def _accompany(args) -> int:
    from .engine.accompany import accompany, check_model, load_song, mix
    from .audio.writer import AudioWriter
    from .checkpoints import load, resolve_dtype
    from .engine.prompts import parse_schedule
    schedule = parse_schedule(args.prompt)
    _knobs(args, cutoff_frames=args.cutoff)
    _check_length(schedule, args.seconds)
    with AudioWriter(args.output) as writer:   # checked before the song is encoded and the part generated
        model = load(args.model, dtype=resolve_dtype(args.dtype), t5_path=args.t5)
        check_model(model)
        song = load_song(model, args.song)
        _check_length(schedule, args.seconds if args.seconds is not None else song.shape[-1] / model.sample_rate, model)
        say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
        generated = accompany(model, song, schedule, args.seconds, cutoff_frames=args.cutoff, block_frames=args.block,
                              seed=args.seed, steps=args.steps, cfg_scale=args.cfg, progress=not args.quiet,
                              on_change=lambda t, p: say(f"prompt change at {t:.2f} s: {p}"))
        seconds = generated.shape[-1] / model.sample_rate
        if args.mix:
            out, peak = mix(song, generated)
            note = (f"song + generated, peak {peak:.3f}" + (f" (peak-normalised: divided by {peak:.3f})" if peak > 1
                                                             else ""))
        else:
            peak = float(generated.abs().max())
            out, note = generated.clamp(-1, 1), f"generated part, peak {peak:.3f}" + (" (clipped to ±1)" if peak > 1 else "")
        writer.start(model.sample_rate, out.shape[0])
        writer.write(out.numpy())
    print(f"wrote {args.output}: {seconds:.2f} s at {model.sample_rate} Hz, {note}; sample-aligned with {args.song}")
    return 0


def _eval(args) -> int:
    from .checkpoints import load
    from .eval.suite import evaluate, write_report
    from .eval.tagger import SHIPPED, Tagger
    tagger, tagger_eval = Tagger.load(args.tagger or SHIPPED)
    from .eval.embedders import load_embedder
    embedder = load_embedder(args.embedder, tagger)
    import dataclasses
    from .eval.suite import SUITES
    suite = args.suite
    if suite == "judge":
        from .eval.judge_suite import run_judge_only
        return run_judge_only(args)
    if args.seconds is not None:  # the named suite with longer/shorter streams
        window = SUITES[suite].window_seconds
        if not args.seconds >= window:
            raise ConfigError(f"--seconds must be at least one {window:g} s window, got {args.seconds}")
        suite = dataclasses.replace(SUITES[suite], seconds=args.seconds)
    reports = {}
    for path in [args.model, *(args.compare or [])]:
        model = load(path, dtype=args.dtype, t5_path=args.t5)
        if args.steps is not None:
            model.config.steps = args.steps
        if args.cfg is not None:
            model.config.cfg_scale = args.cfg
        if args.sketch_cfg is not None:
            model.config.sketch_cfg_scale = args.sketch_cfg
        if args.control_guidance is not None:
            model.config.control_guidance = args.control_guidance
        if args.prompt_guidance is not None:
            model.config.prompt_guidance = args.prompt_guidance
        if args.beat_cfg is not None:
            model.config.beat_cfg_scale = args.beat_cfg
        model.config.validate()
        say = None if args.quiet else (lambda msg, p=path: print(f"lmdm eval [{p}]: {msg}", file=sys.stderr, flush=True))
        reports[str(path)] = evaluate(model, args.reference, suite, tagger, args.seed, say, embedder=embedder,
                                      baseline=args.baseline, controls=args.controls,
                                      controls_manifest=args.stems_reference, judge=args.judge)
        reports[str(path)]["tagger"] = tagger_eval
    out = write_report(reports, args.out)
    for name, r in reports.items():
        print(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in r["summary"].items() if v is not None))
        if r.get("controls"):
            print(f"{name} controls: " + ", ".join(f"{k}={v:.3f}" for k, v in r["controls"]["summary"].items()
                                                   if v is not None))
    print(f"wrote {out}/report.json, report.md, drift.png, transitions.png")
    return 0


def _tagger(args) -> int:
    from .eval.tagger import SHIPPED, train_tagger
    tagger, evaluation = train_tagger(args.manifest, epochs=args.epochs, seed=args.seed, progress=not args.quiet,
                                      codec=args.codec, codec_seconds=args.codec_seconds)
    out = args.out or SHIPPED
    tagger.save(out, evaluation)
    print(f"wrote {out}: " + json.dumps(evaluation))
    return 0


def _convert(args) -> int:
    from pathlib import Path
    from .authors import is_authors_config
    from .checkpoints import SAO_CONFIG, _read_json, convert_sao, export, from_pretrained, save_pretrained
    src = Path(args.sao_dir)
    authors = (src / SAO_CONFIG).is_file() and not (src / "config.json").is_file() and \
        is_authors_config(_read_json(src / SAO_CONFIG))
    if args.to == "lmdm" and not authors and not (src / "config.json").is_file():
        model = convert_sao(src, args.out_dir, args.pattern or "block-causal", args.block or 48,
                            192 if args.context is None else args.context, args.t5)
        p = model.config.pattern
        print(f"wrote {args.out_dir}: {p.pattern} LMDM (B={p.block_frames}, C={p.context_frames}), context router "
              f"zero-initialised; ready for stage-1 fine-tuning")
        return 0
    if args.pattern or args.block or args.context is not None:
        raise ConfigError("--pattern/--block/--context only apply when adding a context router to a Stable Audio "
                          f"Open model; {src} already has its pattern")
    model = from_pretrained(src, t5_path=args.t5)
    if args.to == "lmdm":
        save_pretrained(model, args.out_dir)
    else:
        export(model, args.out_dir, args.to)
    for note in getattr(model, "load_notes", []):
        print(f"{src}: {note}")
    p = model.config.pattern
    print(f"wrote {args.out_dir} ({args.to} layout): {p.pattern}, B={p.block_frames}, C={p.context_frames}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmdm", description="Live Music Diffusion Models: streaming, "
                                     "interactive latent audio diffusion.")
    sub = parser.add_subparsers(dest="command", required=True)

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

    g = sub.add_parser("generate", help="render music from a text prompt to a WAV file",
                       description="Generate audio for a prompt with the embedded default model (or --model DIR). "
                       "An LMDM streams blocks to the file as they are decoded (progress shows the real-time "
                       "factor); a plain Stable Audio Open directory samples one window offline (8 ping-pong "
                       "steps), as SAO does.",
                       epilog='examples:\n  lmdm generate "funky bass groove with drums, 110 BPM" --seconds 60 -o out.wav\n'
                       '  lmdm generate --prompts "dub techno@0s" "solo piano@30s" --seconds 60\n'
                       '  lmdm generate --prompts "dub techno:0.7|ambient pads:0.3" --block 10',
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("prompt", nargs="?", help='text prompt, e.g. "warm lo-fi piano, 80 BPM"')
    g.add_argument("--prompts", nargs="+", metavar="SPEC",
                   help='timed changes and blends instead of PROMPT: "A@0s" "B@30s" switches at the first block '
                   'boundary at or after 30 s; "A:0.7|B:0.3" blends (weights normalised); both combine: '
                   '"A:0.7|B:0.3@12s"')
    g.add_argument("-o", "--output", default="out.wav", help="WAV file to write (default out.wav)")
    g.add_argument("--model", default="default",
                   help="'default' (the embedded model, no download) or a model directory (lmdm, or a Stable "
                   "Audio Open directory, also after `lmdm convert`)")
    g.add_argument("--t5", default=None, help="local t5-base directory, for models conditioned on T5")
    g.add_argument("--cache", default=None, choices=["exact", "none", "authors"],
                   help="block-causal KV cache: exact (default: lmdm's sliding-window cache), none (recompute the window every "
                   "step, as the authors' use_kv_cache=False and training do), authors (reproduce the authors' released "
                   "cached sampler, which departs from their training mask; docs/authors-interop.md)")
    g.add_argument("--seconds", type=float, default=10.0, help="length of the result (default 10)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=None, help="denoising steps per block (default: the model's)")
    g.add_argument("--cfg", type=float, default=None,
                   help="classifier-free guidance scale (default: the model's; 1 = off, >1 follows the prompt more "
                   "at about half the speed)")
    g.add_argument("--block", type=int, default=None,
                   help="block size in latent frames (default: the model's, 48 = 2.2 s); smaller reacts faster "
                   "to prompt changes (10 = 0.46 s) at a lower real-time factor")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                   help="auto (default): bf16 where the CPU has native bf16 (AVX-512 BF16/AMX) or on a GPU; "
                   "int8: the DiT's blocks with int8 weights, the faster CPU path without native bf16 (lmdm bench)")
    g.add_argument("--sketch", metavar="FILE",
                   help="drive the stream with a sketch from frame 0 (models with a 'sketch' input group): an audio "
                   "file (any format soundfile reads; its loudness, brightness and pitch at the model's latent "
                   "frame rate) or hand-drawn curves (.json / .csv: loudness dB, centroid Hz, pitch Hz over time, "
                   "held past their last point). An audio sketch shorter than --seconds drives only its own "
                   "length; the rest runs without a sketch")
    g.add_argument("--sketch-strength", type=float, default=1.0, metavar="S",
                   help="how closely to follow the sketch, in [0, 1]: 1 (default) follows it frame by frame, lower "
                   "values median-filter it (0: a 31-frame kernel, only its coarse shape)")
    g.add_argument("--sketch-cfg", type=float, default=None, metavar="S",
                   help="guidance on the sketch: each step also runs the model without the sketch and pushes the "
                   "output S times as far towards following it (1 = off; costs one more model call per step). "
                   "Default: the model's sketch_cfg_scale")
    g.add_argument("--control-guidance", type=float, default=None, metavar="G",
                   help="enforce the sketch's loudness and brightness on what is heard: at the last denoising "
                   "steps the block is decoded, its controls compared with the sketch and its latents moved "
                   "towards it by gradient steps of size G (0 = off, 0.3 typical; about 0.2 s of decoder work "
                   "per step and block, so slower). Default: the model's control_guidance")
    g.add_argument("--bpm", type=float, default=None,
                   help="tempo of the beat clock, for models with a 'beat' input group (the default model from "
                   "v0.7): by default the tempo the prompt names ('... 110 BPM'); 0 = none, the model picks its own")
    g.add_argument("--prompt-guidance", type=float, default=None, metavar="G",
                   help="push each block towards the prompt while it is sampled, for models with a prompt probe "
                   "(the default model from v0.9): at the middle denoising steps the block's latents take gradient "
                   "steps of size G towards the prompt's embedding (0 = off). Default: the model's prompt_guidance")
    g.add_argument("--beat-cfg", type=float, default=None, metavar="S",
                   help="guidance on the beat clock while it runs: each step also runs the model without the clock "
                   "and pushes the output S times as far towards following it, so the tempo holds against prompt "
                   "guidance (1 = off; one more model call per step). Default: the model's beat_cfg_scale")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)

    a = sub.add_parser("accompany", help="generate a part that plays along with a song",
                       description="Encode SONG with the model's autoencoder (resampled and mixed to its rate and "
                       "channels) and stream a new part with it as the accompaniment input (models with an "
                       "'accompaniment' input group). Each block sees the song only up to --cutoff latent frames "
                       "before its start. The result is sample-aligned with the song: sample 0 of the output is "
                       "sample 0 of the input (the streaming decoder's delay is latency, not an offset).",
                       epilog='examples:\n  lmdm accompany song.wav --prompt "walking upright bass" -o bass.wav\n'
                       '  lmdm accompany song.wav --prompt "brushed drums" --mix -o jam.wav',
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("song", help="the song to accompany (any format soundfile reads)")
    a.add_argument("--prompt", nargs="+", required=True, metavar="SPEC",
                   help='what to play: "A", a blend "A:0.7|B:0.3", or timed changes "A@0s" "B@30s" (as generate '
                   '--prompts)')
    a.add_argument("-o", "--output", default="out.wav", help="WAV file to write (default out.wav)")
    a.add_argument("--seconds", type=float, default=None,
                   help="length of the result (default: the song's); past the song's end it plays on without it")
    a.add_argument("--mix", action="store_true",
                   help="write song + generated part summed (divided by its peak only if it would clip)")
    a.add_argument("--cutoff", type=int, default=None, metavar="FRAMES",
                   help="latent frames before each block that it may not see (default: one block, as in training; "
                   "0 for block-causal models, which see the song only in the chunk they are finishing)")
    a.add_argument("--model", default="default", help="'default' (the embedded model) or a model directory")
    a.add_argument("--t5", default=None, help="local t5-base directory, for models conditioned on T5")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--steps", type=int, default=None, help="denoising steps per block (default: the model's)")
    a.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    a.add_argument("--block", type=int, default=None, help="block size in latent frames (default: the model's)")
    a.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "int8"], help="as for generate")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_accompany)

    c = sub.add_parser("convert", help="convert between lmdm, Stable Audio Open and the paper authors' formats",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Load a model directory strictly (every key mapped, every shape checked)\n"
                       "and write it in another layout.\n\n"
                       "into lmdm (--to lmdm, the default):\n"
                       "  a Stable Audio Open directory gets the context router (zero-initialised, so the model\n"
                       "  starts as the base model) and the chosen pattern, ready for stage-1 fine-tuning:\n"
                       "    lmdm convert stable-audio-open-small runs/sao-lmdm --pattern block-causal\n"
                       "  a directory written by the paper authors' code (model_config.json with postpend and\n"
                       "  input_add_dims; model.safetensors or model.ckpt; ARC discriminator weights set aside)\n"
                       "  keeps its pattern:\n"
                       "    lmdm convert their_run/ runs/theirs\n\n"
                       "out of lmdm:\n"
                       "  --to authors writes model_config.json + model.safetensors that the authors' code loads\n"
                       "  (enc-dec / block-causal LMDMs conditioned on T5 + seconds_total):\n"
                       "    lmdm convert runs/theirs exported/ --to authors\n"
                       "  --to sao does the same for a plain bidirectional model (stable-audio-tools).\n\n"
                       "docs/authors-interop.md maps every key.")
    c.add_argument("sao_dir", metavar="src_dir",
                   help="lmdm, Stable Audio Open or authors' directory (config.json or model_config.json)")
    c.add_argument("out_dir", help="where to write the converted directory")
    c.add_argument("--to", default="lmdm", choices=["lmdm", "authors", "sao"],
                   help="output layout (default lmdm)")
    c.add_argument("--pattern", default=None, choices=["block-causal", "enc-dec"],
                   help="SAO -> lmdm only: attention pattern (default block-causal)")
    c.add_argument("--block", type=int, default=None, help="SAO -> lmdm only: block size B in latent frames (default 48)")
    c.add_argument("--context", type=int, default=None,
                   help="SAO -> lmdm only: context size C in latent frames (default 192)")
    c.add_argument("--t5", default=None, help="local t5-base directory to record in the config")
    c.set_defaults(func=_convert)

    e = sub.add_parser("eval", help="measure a model offline: drift, prompt adherence, transitions, FD-lmdm",
                       description="Generate text-only and primed streams for held-out corpus captions with fixed "
                       "seeds, then report FD-lmdm drift curves, tagger agreement with the prompt, tempo error, "
                       "prompt-transition timing/continuity and speed (report.json, report.md, PNG plots).")
    e.add_argument("--model", default="default", help="'default' (the embedded model) or a model directory")
    e.add_argument("--compare", nargs="+", help="more model directories, evaluated on the same requests")
    e.add_argument("--reference", required=True, help="corpus manifest.jsonl (held-out captions and audio)")
    e.add_argument("--suite", default="quick", choices=["quick", "full", "judge"],
                   help="quick (default) or full; judge: only the judge section (its full size; --seconds sets its clip "
                   "length, default 10), see --judge")
    e.add_argument("--judge", action="store_true",
                   help="add the judge section (outside listener models: docs/judge.md): natural prompts scored by "
                   "musicnn tags, key/PCP diversity across prompts, seed and same-tempo similarity, codec round "
                   "trip of held-out pieces (needs the judge extra and MIDI scores in the reference corpus)")
    e.add_argument("--out", default="report", help="output folder (default report/)")
    e.add_argument("--tagger", default=None, help="tagger weights (default: the one shipped with lmdm)")
    e.add_argument("--t5", default=None)
    e.add_argument("--embedder", default="lmdm",
                   help="FD embedding: lmdm (default), vggish:/path/vggish.pth (torchvggish state dict), "
                   "clap:/path/dir (transformers ClapModel directory) or openl3 (needs the openl3 package); "
                   "local files only, nothing is downloaded")
    e.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=None,
                   help="also sample the offline-window baseline: the same model generating each 10 s window in "
                   "one go, no streaming (default: on for quick and full)")
    e.add_argument("--controls", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure sketch adherence and accompaniment coherence, for models with those input "
                   "groups (default: on; --no-controls skips it)")
    e.add_argument("--stems-reference", default=None,
                   help="manifest with stems (entry['stems']) for accompaniment coherence (default: --reference)")
    e.add_argument("--seconds", type=float, default=None,
                   help="stream length of the suite's drift/adherence streams (default: quick 30, full 60)")
    e.add_argument("--steps", type=int, default=None, help="denoising steps per block (default: each model's)")
    e.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (default: each model's)")
    e.add_argument("--sketch-cfg", type=float, default=None,
                   help="guidance on the sketch in the controls part (default: each model's sketch_cfg_scale)")
    e.add_argument("--control-guidance", type=float, default=None,
                   help="control guidance strength in the controls part (default: each model's control_guidance)")
    e.add_argument("--prompt-guidance", type=float, default=None,
                   help="prompt guidance strength (default: each model's prompt_guidance; models with a prompt probe)")
    e.add_argument("--beat-cfg", type=float, default=None,
                   help="guidance on the beat clock (default: each model's beat_cfg_scale; models with a 'beat' group)")
    e.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="as for generate (auto: bf16 where the CPU has native bf16 matmuls); the same for every model")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_eval)

    t = sub.add_parser("tagger", help="train lmdm's offline tagger/embedder on a corpus",
                       description="Train the log-mel CNN behind FD-lmdm and prompt adherence on a corpus made by "
                       "`lmdm data synth`, evaluate it on held-out pieces, and save weights + accuracy.")
    t.add_argument("--manifest", required=True)
    t.add_argument("--out", default=None, help="weights file (default: the package's shipped tagger)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--codec", default=None, metavar="MODEL",
                   help="also train on (and report accuracy for) the pieces round-tripped through this model's "
                        "autoencoder, e.g. `default`, so generated audio is not mistaken for one style")
    t.add_argument("--codec-seconds", type=float, default=10.0, help="length of each piece's round-tripped excerpt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_tagger)

    from .data.cli import add_data_parser
    from .eval.judge_cli import add_judge_parser
    from .live.cli import add_live_parser
    from .train.cli import add_train_parser
    add_data_parser(sub)
    add_judge_parser(sub)
    add_train_parser(sub)
    add_live_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 bad usage (argparse's own errors too), 1 a runtime failure, 130 Ctrl-C.
    Every error is one line `lmdm: error: ...`; LMDM_TRACEBACK=1 adds the traceback of an unexpected one."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LMDMError as e:
        print(f"lmdm: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lmdm: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("lmdm: error: out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # a failure we did not foresee: one line, never a wall of traceback
        import os
        if os.environ.get("LMDM_TRACEBACK"):
            import traceback
            traceback.print_exc()
        print(f"lmdm: error: {type(e).__name__}: {e} (an unexpected failure; LMDM_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
