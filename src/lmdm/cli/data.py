"""`lmdm data …`: synth (built-in corpus), manifest (index a folder of audio), encode (latents).
Also runnable as `python -m lmdm.data synth --hours 0.05 --out /tmp/synth`."""
from __future__ import annotations

import argparse


def _synth(args) -> int:
    from ..data.synth import format_summary, generate_corpus
    from ..errors import ConfigError
    from ..data.synth.v1.styles import STYLES as V1
    from ..data.synth.v2.styles import STYLES as V2
    book = V2 if args.renderer == "v2" else V1
    unknown = [s for s in args.styles or [] if s not in book]
    if unknown:
        raise ConfigError(f"unknown {args.renderer} style(s) {', '.join(unknown)}; choose from {', '.join(book)}")
    summary = generate_corpus(args.out, hours=args.hours, seed=args.seed, styles=args.styles, stems=args.stems,
                              clip_seconds=args.clip_seconds, backend=args.backend, workers=args.workers,
                              audio_format=args.format, progress=not args.quiet, renderer=args.renderer)
    print(format_summary(summary))
    print(f"\nwrote {args.out}/manifest.jsonl")
    return 0


def _manifest(args) -> int:
    from ..data.dataset import build_manifest
    report = build_manifest(args.dir, args.out, progress=not args.quiet)
    hours = sum(e["duration"] for e in report.entries) / 3600
    captioned = sum(bool(e["captions"]) for e in report.entries)
    print(f"indexed {len(report.entries)} clips ({hours:.2f} h, {captioned} with captions) -> {report.manifest}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable file(s):")
        for path, reason in report.skipped:
            print(f"  {path}: {reason}")
    return 0


def _encode(args) -> int:
    from pathlib import Path

    from ..checkpoints import from_pretrained, load_autoencoder_dir
    from ..errors import DataError
    from ..data.dataset import encode_dataset
    if (Path(args.model) / "autoencoder.json").is_file():   # an export of `lmdm train autoencoder`
        ae = load_autoencoder_dir(args.model)
    else:
        ae = from_pretrained(args.model).autoencoder
        if ae is None:
            raise DataError(f"the model in {args.model} has no autoencoder (config.autoencoder is empty), so it "
                            "cannot encode audio; use a model directory that includes one")
    import torch
    ae = ae.to(torch.bfloat16 if args.dtype == "bf16" else torch.float32)   # a bf16-stored model runs fp32 when asked
    path = encode_dataset(args.manifest, ae.eval(), args.out, stems=not args.no_stems,
                          controls=not args.no_controls, chunk_seconds=args.chunk_seconds, progress=not args.quiet,
                          accompaniment_every=args.accompaniment_every, augment_copies=args.augment_copies,
                          augment_seed=args.augment_seed)
    print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    d = subparsers.add_parser("data", help="build, index and encode training data",
                              description="Training data: the built-in synthetic corpus, manifests for your own "
                              "audio, and pre-encoding to latents.")
    sub = d.add_subparsers(dest="data_command", required=True)

    s = sub.add_parser("synth", help="render the built-in multi-track corpus",
                       description="Compose pieces procedurally in many styles and render them to a 44.1 kHz stereo "
                       "mix (and optionally stems), with MIDI, metadata and captions, indexed by manifest.jsonl. "
                       "Deterministic from --seed. Renderer v2 (default) plays recorded instruments from Debian's "
                       "sample packages (scripts/setup.sh installs them) through a mix with EQ, compression and a "
                       "shared reverb, in 24 styles; v1 renders the 11 original styles with General MIDI "
                       "soundfonts (what the shipped default model learned from). See docs/corpus.md.")
    s.add_argument("--hours", type=float, default=2.0, help="hours of audio to make (default 2)")
    s.add_argument("--out", default="data/synth", help="output folder (default data/synth)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--renderer", default="v2", choices=["v2", "v1"],
                   help="v2: recorded instruments, 24 styles (default); v1: General MIDI soundfonts, 11 styles")
    s.add_argument("--styles", nargs="+", default=None, metavar="STYLE",
                   help="default: all styles of the renderer's book, in turn (v2: lofi house techno dnb trap hiphop "
                        "funk disco jazz rock metal pop synthwave ambient strings ballad blues country latin afrobeat "
                        "reggae bossa chiptune waltz; v1: lofi house dnb funk jazz rock ambient chiptune reggae waltz "
                        "bossa)")
    s.add_argument("--stems", action="store_true", help="also write each piece's stems (mix == sum of stems)")
    s.add_argument("--clip-seconds", type=float, default=30.0, help="length of each piece (default 30)")
    s.add_argument("--backend", default="tinysoundfont", choices=["tinysoundfont", "fluidsynth"],
                   help="v1 only: tinysoundfont + pretty_midi's TimGM6mb (default) or fluidsynth + FluidR3_GM (Debian)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.add_argument("--format", default="flac", choices=["flac", "wav"], help="16-bit audio files (default flac)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_synth)

    m = sub.add_parser("manifest", help="index a folder of your own audio",
                       description="Write manifest.jsonl for every audio file under DIR. Captions come from a "
                       "same-name .txt (one per line) or .json sidecar. Unreadable files are listed and skipped.")
    m.add_argument("dir")
    m.add_argument("--out", default=None, help="manifest path (default DIR/manifest.jsonl)")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=_manifest)

    e = sub.add_parser("encode", help="pre-encode a manifest to latents with a model's autoencoder",
                       description="Encode every clip (and its stems) to latents in safetensors shards, with "
                       "sketch controls at the latent frame rate, for `lmdm train`.")
    e.add_argument("manifest")
    e.add_argument("--model", required=True, help="lmdm or Stable Audio Open model directory with an autoencoder, or "
                   "an autoencoder folder from `lmdm train autoencoder`")
    e.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                   help="encoder precision (bf16: ~2x faster on CPUs with native bf16)")
    e.add_argument("--out", required=True, help="output folder for latents.jsonl, latents.json and shards")
    e.add_argument("--chunk-seconds", type=float, default=60.0, help="encode longer clips in chunks (default 60)")
    e.add_argument("--no-stems", action="store_true", help="skip the stems")
    e.add_argument("--no-controls", action="store_true", help="skip the sketch controls")
    e.add_argument("--accompaniment-every", type=int, default=0, metavar="N",
                   help="accompaniment training pairs: for every Nth clip with stems, encode one stem (rotating "
                        "through its stems) as the given part and mix minus that stem as the part to generate "
                        "(2 extra encodes per chosen clip; works with --no-stems). 0 = none (default)")
    e.add_argument("--augment-copies", type=int, default=0, metavar="N",
                   help="also encode N copies of every clip under random slow gain curves (swells, fades, stops) "
                        "and low-pass sweeps, with their own controls, so a model learns to follow drawn sketch "
                        "curves (lmdm.data.augment). 0 = none (default)")
    e.add_argument("--augment-seed", type=int, default=0, help="seed of the augmentation curves (default 0)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_encode)
    return d
