"""`lmdm train finetune|arc-forcing|autoencoder --config FILE [--set key.sub=value ...] [--resume]`,
and `lmdm train prompt-probe --model DIR --latents DIR --out DIR` (prompt guidance's latent-text model).

The same command runs on one process or under torchrun:
    torchrun --nproc_per_node 4 -m lmdm.train finetune --config configs/train/sao-small-gpus.json
"""
from __future__ import annotations

import argparse
import json


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
    elif cfg.autoencoder.model.get("kind") == "spectral":   # the spectral codec (lmdm.train.codec)
        from .codec import train_codec
        last = train_codec(cfg, resume=args.resume, stop_at=args.stop_at)
    else:
        from .autoencoder import train_autoencoder
        last = train_autoencoder(cfg, resume=args.resume, stop_at=args.stop_at)
    import torch.distributed as dist
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({"out_dir": cfg.run.out_dir, **last}))
    return 0


def _prompt_probe(args) -> int:
    from ..checkpoints import DEFAULT_MODEL_DIR, from_pretrained, save_pretrained
    from ..data.dataset import LatentDataset
    from ..errors import ConfigError
    from .prompt_probe import fit_prompt_probe
    if not 0 <= args.strength <= 2:
        raise ConfigError(f"--strength must be in [0, 2], got {args.strength}")
    model = from_pretrained(DEFAULT_MODEL_DIR if args.model == "default" else args.model)   # in its stored dtype
    stored = next(p.dtype for p in model.parameters() if p.is_floating_point())
    model.float()   # the probe is fitted in fp32 and written in the model's stored dtype
    data = LatentDataset(args.latents, crop_frames=args.crop)
    instruments = args.instruments
    if instruments is None:   # on where the corpus metadata says which instruments play
        instruments = any((r.get("metadata") or {}).get("stems") for r in data.records)
    probe, heldout = fit_prompt_probe(data.records, data.tensors, model.text, model.config.dit.io_channels,
                                      model.config.dit.cond_token_dim, steps=args.steps, crop=args.crop,
                                      seed=args.seed, instruments=instruments, progress=not args.quiet)
    model.config.prompt_probe = {"width": args.width, "dim": args.dim,
                                 **({"instruments": probe.instruments} if probe.instruments else {})}
    model.config.prompt_guidance = args.strength
    model.prompt_probe = probe
    save_pretrained(model.to(stored), args.out)
    print(json.dumps({"out_dir": args.out, "heldout_retrieval": heldout, "prompt_guidance": args.strength}))
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
    return train
