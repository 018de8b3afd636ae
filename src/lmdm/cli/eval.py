"""`lmdm eval` (a model offline: drift, prompt adherence, transitions, FD-lmdm), `lmdm judge` (what
outside listener models hear in audio files) and `lmdm tagger` (train lmdm's own tagger)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..errors import ConfigError


# eval's sampling flags (argparse dest) and the ModelConfig field each one overrides
CONFIG_OVERRIDES = (("steps", "steps"), ("cfg", "cfg_scale"), ("sketch_cfg", "sketch_cfg_scale"),
                    ("control_guidance", "control_guidance"), ("prompt_guidance", "prompt_guidance"),
                    ("beat_cfg", "beat_cfg_scale"))


def _eval(args) -> int:
    from ..checkpoints import load
    from ..eval.embedders import load_embedder
    from ..eval.suite import SUITES, evaluate, write_report
    from ..eval.tagger import SHIPPED, Tagger
    tagger, tagger_eval = Tagger.load(args.tagger or SHIPPED)
    embedder = load_embedder(args.embedder, tagger)
    suite = args.suite
    if suite == "judge":
        return _judge_only(args)
    if args.seconds is not None:  # the named suite with longer/shorter streams
        window = SUITES[suite].window_seconds
        if not args.seconds >= window:
            raise ConfigError(f"--seconds must be at least one {window:g} s window, got {args.seconds}")
        suite = dataclasses.replace(SUITES[suite], seconds=args.seconds)
    reports = {}
    for path in [args.model, *(args.compare or [])]:
        model = load(path, dtype=args.dtype, t5_path=args.t5)
        for flag, field in CONFIG_OVERRIDES:   # a flag left out keeps each model's own setting
            if getattr(args, flag) is not None:
                setattr(model.config, field, getattr(args, flag))
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


def _judge_only(args) -> int:
    """`lmdm eval --suite judge`: the judge section alone (full size) for --model and --compare models."""
    from pathlib import Path

    from ..checkpoints import load
    from ..eval.judge_suite import JUDGE_SUITES, JudgeSuite, evaluate_judge, judge_table
    reports = {}
    for path in [args.model, *(args.compare or [])]:
        model = load(path, dtype=args.dtype, t5_path=args.t5)
        say = None if args.quiet else (lambda msg, p=path: print(f"lmdm eval [{p}]: {msg}", flush=True,
                                                                 file=sys.stderr))
        spec = JUDGE_SUITES["full"] if args.seconds is None else JudgeSuite(seconds=args.seconds)
        reports[str(path)] = {"judge": evaluate_judge(model, args.reference, spec, args.seed, say)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(reports, indent=2, default=float))
    (out / "report.md").write_text("\n".join(["# lmdm eval report (judge)", "", *judge_table(reports)]))
    for name, r in reports.items():
        print(f"{name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in r["judge"]["summary"].items() if v is not None))
    print(f"wrote {out}/report.json, report.md")
    return 0


def _tagger(args) -> int:
    from ..eval.tagger import SHIPPED, train_tagger
    tagger, evaluation = train_tagger(args.manifest, epochs=args.epochs, seed=args.seed, progress=not args.quiet,
                                      codec=args.codec, codec_seconds=args.codec_seconds)
    out = args.out or SHIPPED
    tagger.save(out, evaluation)
    print(f"wrote {out}: " + json.dumps(evaluation))
    return 0


def _fmt(v, spec=".2f"):
    return "–" if v is None else format(v, spec)


def _print_judgement(res: dict) -> None:
    print(f"{res['file']}: {res['seconds']:.1f} s, {res['sample_rate']} Hz, {res['channels']} ch")
    for name in ("tags", "chroma", "notes", "tempo", "timbre"):
        part = res.get(name)
        if part is None:
            continue
        if "unavailable" in part:
            print(f"  {name}: unavailable — {part['unavailable']}")
        elif name == "tags":
            for d, probs in part.items():
                print(f"  tags ({d.upper()}): " + ", ".join(f"{t} {p:.2f}" for t, p in probs.items()))
        elif name == "chroma":
            print(f"  key (chroma): {part['key']} (r={part['key_correlation']:.2f})")
        elif name == "notes":
            print(f"  notes (basic-pitch): {part['count']}, key {part['key']} (r={part['key_correlation']:.2f}), "
                  f"pitch range {part['pitch_range']}")
        elif name == "tempo":
            print(f"  tempo: {part['bpm']:.1f} BPM, {part['beats']} beats")
        else:
            print(f"  timbre: centroid {part['centroid_hz']:.0f} Hz, 95% roll-off {part['rolloff95_hz']:.0f} Hz, "
                  f"loudness {_fmt(part['loudness_lufs'], '.1f')} LUFS")
    p = res.get("prompt")
    if p:
        tags = p["tags"]
        if "unavailable" not in tags:
            words = ", ".join(f"{w}→{v['tag']} (rank {v['rank'] + 1}, p {v['p']:.2f}){'' if v['agrees'] else ' ✗'}"
                              for w, v in tags["words"].items())
            print(f"  prompt tags: agreement {_fmt(tags['agreement'])} over {len(tags['words'])} mapped words"
                  + (f": {words}" if words else ""))
        if "tempo" in p:
            t = p["tempo"]
            print(f"  prompt tempo: named {t['named_bpm']:g}, read {t['read_bpm']:.1f}: error {t['error']:.1%} "
                  f"({t['error_octave_folded']:.1%} allowing double/half)")
        if "key" in p:
            k = p["key"]
            print(f"  prompt key: named {k['named']}, read {k['read']} ({k['relation']}); notes read {k['notes_read']}")


def _judge(args) -> int:
    from ..eval.judge import judge_file
    results = [judge_file(path, prompt=args.prompt) for path in args.files]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for res in results:
            _print_judgement(res)
    return 0



def register(sub) -> None:
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

    j = sub.add_parser("judge", help="what outside listener models hear in audio files: tags, notes, key, tempo, timbre",
                       description="Judge audio with models nobody on the project trained: musicnn's MagnaTagATune "
                       "and Million Song Dataset taggers (ported to torch, weights shipped), basic-pitch's "
                       "transcriber (its bundled ONNX model), librosa's key-profile chroma and beat tracker, "
                       "spectral centroid / 95 % roll-off and EBU R128 loudness. Nothing is downloaded. With "
                       "--prompt: tag agreement with the prompt's words (docs/judge.md lists the word→tag "
                       "mapping), tempo error against a named BPM, key agreement with a named key.",
                       epilog='example:\n  lmdm judge out.wav --prompt "heavy metal, 140 BPM, E minor" --json',
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    j.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format soundfile reads)")
    j.add_argument("--prompt", default=None, help="the text the audio was asked for")
    j.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    j.set_defaults(func=_judge)
