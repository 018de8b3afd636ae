"""`lmdm judge FILE... [--prompt TEXT] [--json]`."""
from __future__ import annotations

import argparse
import json


def _fmt(v, spec=".2f"):
    return "–" if v is None else format(v, spec)


def _print(res: dict) -> None:
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
    from .judge import judge_file
    results = [judge_file(path, prompt=args.prompt) for path in args.files]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for res in results:
            _print(res)
    return 0


def add_judge_parser(sub) -> None:
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
