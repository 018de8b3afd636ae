"""`lmdm train finetune|arc-forcing|autoencoder --config FILE [--set key.sub=value ...] [--resume]`.

The same command runs on one process or under torchrun:
    torchrun --nproc_per_node 4 -m lmdm.train.cli finetune --config configs/train/sao-small-gpus.json
(`python -m lmdm.train.cli` is this parser on its own, until `lmdm train` is wired in.)
"""
from __future__ import annotations

import argparse
import json
import sys


def _run(args) -> int:
    from .config import load_config
    cfg = load_config(args.config, args.set or [])
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if args.objective == "finetune":
        from .finetune import finetune
        last = finetune(cfg, resume=args.resume, stop_at=args.stop_at)
    elif args.objective == "arc-forcing":
        from .arc_forcing import arc_forcing
        last = arc_forcing(cfg, resume=args.resume, stop_at=args.stop_at)
    else:
        from .autoencoder import train_autoencoder
        last = train_autoencoder(cfg, resume=args.resume, stop_at=args.stop_at)
    import torch.distributed as dist
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({"out_dir": cfg.run.out_dir, **last}))
    return 0


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register `train` with its `finetune`, `arc-forcing` and `autoencoder` subcommands on an argparse
    subparsers object."""
    train = subparsers.add_parser("train",
                                  help="train: stage-1 LMDM fine-tuning, stage-2 ARC-Forcing or an autoencoder")
    kinds = train.add_subparsers(dest="objective", required=True)
    for name, text in (("finetune", "stage-1 fine-tuning: context-router objective on pre-encoded latents"),
                       ("arc-forcing", "stage-2 ARC-Forcing: adversarial relativistic-contrastive post-training "
                                       "on the model's own rollouts (configure the arc section)"),
                       ("autoencoder", "train an Oobleck VAE: multi-resolution STFT + KL + adversarial")):
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
    return train


def main(argv: list[str] | None = None) -> int:
    """`python -m lmdm.train.cli …` (e.g. under torchrun) = `lmdm train …`."""
    from ..cli import main as lmdm_main
    return lmdm_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
