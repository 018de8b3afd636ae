"""`lmdm train finetune|arc-forcing|autoencoder --config FILE [--set key.sub=value ...] [--resume]`,
and `lmdm train prompt-probe --model DIR --latents DIR --out DIR` (prompt guidance's latent-text model).

The same command runs on one process or under torchrun:
    torchrun --nproc_per_node 4 -m lmdm.train finetune --config configs/train/sao-small-gpus.json
"""
from __future__ import annotations

import argparse
import json


def _run(args) -> int:
    from ..train.config import load_config
    cfg = load_config(args.config, args.set or [])
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if args.objective == "finetune":
        from ..train.finetune import finetune
        last = finetune(cfg, resume=args.resume, stop_at=args.stop_at)
    elif args.objective == "arc-forcing":
        from ..train.arc_forcing import arc_forcing
        last = arc_forcing(cfg, resume=args.resume, stop_at=args.stop_at)
    elif cfg.autoencoder.model.get("kind") == "spectral":   # the spectral codec (lmdm.train.codec)
        from .codec import train_codec
        last = train_codec(cfg, resume=args.resume, stop_at=args.stop_at)
    else:
        from ..train.autoencoder import train_autoencoder
        last = train_autoencoder(cfg, resume=args.resume, stop_at=args.stop_at)
    import torch.distributed as dist
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({"out_dir": cfg.run.out_dir, **last}))
    return 0


def _prompt_probe(args) -> int:
    from ..train.prompt_probe import add_prompt_probe
    heldout = add_prompt_probe(args.model, args.latents, args.out, strength=args.strength, steps=args.steps,
                               crop=args.crop, instruments=args.instruments, seed=args.seed,
                               progress=not args.quiet, width=args.width, dim=args.dim)
    print(json.dumps({"out_dir": args.out, "heldout_retrieval": heldout, "prompt_guidance": args.strength}))
    return 0


def register(subparsers) -> None:
    """`train` with its `finetune`, `arc-forcing`, `autoencoder` and `prompt-probe` subcommands."""
    train = subparsers.add_parser("train",
                                  help="train: stage-1 LMDM fine-tuning, stage-2 ARC-Forcing or an autoencoder")
    kinds = train.add_subparsers(dest="objective", required=True)
    for name, text in (("finetune", "stage-1 fine-tuning: context-router objective on pre-encoded latents"),
                       ("arc-forcing", "stage-2 ARC-Forcing: adversarial relativistic-contrastive post-training "
                                       "on the model's own rollouts (configure the arc section)"),
                       ("autoencoder", "train an autoencoder: the Oobleck VAE, or the spectral codec when autoencoder.model "
                                       "has \"kind\": \"spectral\" (multi-resolution STFT + mel + KL + adversarial)")):
        p = kinds.add_parser(name, help=text, description=text)
        p.add_argument("--config", help="training config JSON (see configs/train/); fields not given keep "
                                        "their documented defaults (lmdm/train/config.py)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config field, e.g. --set run.steps=200 --set optim.lr=1e-4 (repeatable)")
        p.add_argument("--resume", action="store_true",
                       help="continue from the newest readable checkpoint in run.out_dir (exact continuation)")
        p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                       help="stop (and checkpoint) after this optimizer step; the schedule still follows run.steps")
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.set_defaults(func=_run)
    text = ("fit prompt guidance's latent-text model (lmdm.engine.prompt_guidance) on a model's training latents and "
            "write the model with it to --out")
    p = kinds.add_parser("prompt-probe", help=text, description=text)
    p.add_argument("--model", required=True, help="lmdm model directory (or 'default')")
    p.add_argument("--latents", required=True, help="latents folder from `lmdm data encode` with captions")
    p.add_argument("--out", required=True, help="output model directory (the model plus its prompt probe)")
    p.add_argument("--steps", type=int, default=2000, help="contrastive training steps (default 2000)")
    p.add_argument("--crop", type=int, default=48, help="latent frames per training crop (default 48)")
    p.add_argument("--strength", type=float, default=0.0,
                   help="the written model's default prompt guidance strength (0 = off; see the model card)")
    p.add_argument("--instruments", action=argparse.BooleanOptionalAction, default=None,
                   help="also fit instrument-family heads, so guidance pushes the prompt's instruments too "
                        "(default: on when the latents' metadata lists stems, as `lmdm data synth` writes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_prompt_probe, width=128, dim=128)
