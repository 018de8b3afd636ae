"""`lmdm convert`: between lmdm, Stable Audio Open and the paper authors' directory layouts."""
from __future__ import annotations

import argparse

from ..errors import ConfigError


def _convert(args) -> int:
    from pathlib import Path
    from ..checkpoints import convert_sao, directory_layout, export, from_pretrained, save_pretrained
    src = Path(args.sao_dir)
    if args.to == "lmdm" and directory_layout(src) in ("sao", None):   # None: convert_sao says what is missing
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


def register(sub) -> None:
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
