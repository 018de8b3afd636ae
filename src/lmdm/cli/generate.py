"""`lmdm generate` (a prompt, or timed prompt changes, to a WAV file) and `lmdm accompany` (a part
that plays along with a song). Every option is checked before the model loads."""
from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError, PromptError


# the flag a user typed for each SamplingConfig field, so an error names it
LABELS = {"seconds": "--seconds", "seed": "--seed", "steps": "--steps", "cfg_scale": "--cfg", "block_frames": "--block",
          "sketch_cfg": "--sketch-cfg", "sketch_strength": "--sketch-strength",
          "control_guidance": "--control-guidance", "prompt_guidance": "--prompt-guidance", "beat_cfg": "--beat-cfg",
          "bpm": "--bpm", "cutoff_frames": "--cutoff"}


# `--cache` of generate and live: how a block-causal stream uses its KV cache (PatternConfig.cache)
CACHE_MODES = ["exact", "none", "authors"]
CACHE_HELP = ("block-causal KV cache: exact (default: lmdm's sliding-window cache), none (recompute the window every "
              "step, as the authors' use_kv_cache=False and training do), authors (reproduce the authors' released "
              "cached sampler, which departs from their training mask; docs/authors-interop.md)")


def _knobs(args, **extra):
    """Every sampling option of a render, checked before anything is loaded or written."""
    from ..config import SamplingConfig
    fields = {name: getattr(args, name) for name in ("sketch_cfg", "sketch_strength", "control_guidance",
                                                     "prompt_guidance", "beat_cfg", "bpm") if hasattr(args, name)}
    return SamplingConfig(seconds=args.seconds, seed=args.seed, steps=args.steps, cfg_scale=args.cfg,
                          block_frames=args.block, **fields, **extra).validate(LABELS)


def _check_length(schedule, seconds: float | None, model=None) -> None:
    """Timed prompt changes inside the piece, and a piece that fits in a WAV file."""
    if seconds is not None:
        late = [t for t, _ in schedule if t > 0 and t >= seconds]
        if late:
            raise PromptError(f"a prompt change at {late[0]:g} s comes at or after the end of the piece "
                              f"(--seconds {seconds:g}), so it would never play")
    if model is not None and model.autoencoder is not None:
        from ..audio.writer import max_seconds
        limit = max_seconds(model.sample_rate, model.autoencoder.config.audio_channels)
        if seconds is not None and seconds > limit:
            raise ConfigError(f"--seconds {seconds:g} is longer than a WAV file can hold at {model.sample_rate} Hz "
                              f"({limit / 3600:.2f} h); render it in parts")


def _generate(args) -> int:
    from ..audio.writer import AudioWriter
    from ..checkpoints import load, resolve_dtype
    from ..engine.prompts import parse_schedule
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
            from ..engine.generate import load_sketch
            sketch = load_sketch(model, args.sketch, args.seconds, args.sketch_strength)
        peak, say = 0.0, (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
        out.start(model.sample_rate, model.autoencoder.config.audio_channels)

        def write(chunk):
            nonlocal peak
            peak = max(peak, float(chunk.abs().max()) if chunk.numel() else 0.0)
            out.write(chunk.numpy())
        model.generate(schedule, sampling=knobs, progress=not args.quiet, on_audio=write, sketch=sketch,
                       on_change=lambda t, p: say(f"prompt change at {t:.2f} s: {p}"))
    print(f"wrote {args.output}: {out.seconds:g} s at {model.sample_rate} Hz, peak {peak:.3f}"
          + (" (clipped to ±1)" if peak > 1 else "")
          + (f", sketch {args.sketch} ({sketch.shape[-1] * model.config.frame_seconds:.2f} s, strength "
             f"{args.sketch_strength:g})" if sketch is not None else ""))
    return 0


def _accompany(args) -> int:
    from ..engine.accompany import accompany, check_model, load_song, mix
    from ..audio.writer import AudioWriter
    from ..checkpoints import load, resolve_dtype
    from ..engine.prompts import parse_schedule
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


def register(sub) -> None:
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
    g.add_argument("--cache", default=None, choices=CACHE_MODES, help=CACHE_HELP)
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
