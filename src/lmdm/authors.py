"""The paper authors' checkpoint format (their stable-audio-tools fork), in and out.

Their `model_config.json` is Stable Audio Open's plus the LMDM pieces (docs/authors-interop.md has
the key-by-key table):
- `model.diffusion.config.postpend: true`: the timestep+global token goes after the frames, at
  rotary position 0; lmdm's enc-dec and block-causal patterns place it the same way.
- `input_add_dims` / `input_add_ids` = [["inpaint_mask", 1], ["inpaint_masked_input", io]]: one
  bias-free Linear(io+1 -> width), `to_input_add_embed`, over [mask ; clean latents * mask]; the
  noisy input is zeroed where the mask is 1. That is lmdm's `context` input group, weight for weight.
- `training.inpainting.mask_kwargs`: `fixed_mask_size` = C, `context_router_attention_pattern`,
  `block_causal_chunk_size` = B, `block_causal_window_chunks` = w (lmdm: w = C / B).
- `training.arc.self_forcing.rope_mode`: "fixed" is what lmdm does (positions fixed to the window).

Checkpoints: an exported one (`model.model.*` DiT, `conditioner.conditioners.seconds_total.*`,
`pretransform.model.*`), or a Lightning `.ckpt` whose `state_dict` prefixes all of that with
`diffusion.`. An ARC-Forcing `.ckpt` also holds `discriminator.*` (a copy of the base DiT),
`discriminator_head.*` (the ConvNeXt head) and possibly `teacher_model.*`: they are set aside,
because only the generator runs at inference; `diffusion_ema.ema_model.*`, when present, replaces
the online DiT weights, as their `export_model` does. Anything else is an error naming the keys.
"""
from __future__ import annotations

import copy

import torch

from .config import ModelConfig, PatternConfig
from .errors import ConfigError
from .sao import SAO_PREFIXES, config_from_sao, sao_model_config

# the prefixes of an authors' Lightning checkpoint that inference never uses, and why
TRAINING_ONLY = {"discriminator.": "ARC discriminator (a copy of the base DiT; training only)",
                 "discriminator_head.": "ARC discriminator head (ConvNeXt; training only)",
                 "teacher_model.": "ODE-warmup teacher (training only)"}
ROUTER = ("model.model.to_input_add_embed.weight", "dit.input_groups.context.weight")


def is_authors_config(cfg: dict) -> bool:
    """True for a model_config.json written by the authors' fork (an LMDM), False for plain SAO."""
    dc = cfg.get("model", {}).get("diffusion", {})
    return bool(dc.get("input_add_ids") or dc.get("config", {}).get("input_add_dims")
                or dc.get("config", {}).get("postpend"))


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ConfigError(f"unsupported authors' model_config.json: {what}")


def config_from_authors(cfg: dict, t5_path: str = "") -> ModelConfig:
    """ModelConfig for the authors' model_config.json: their SAO-small base plus the context router."""
    try:
        diff = cfg["model"]["diffusion"]
        dc = diff["config"]
        io = dc["io_channels"]
        want = [["inpaint_mask", 1], ["inpaint_masked_input", io]]
        add_ids = [list(x) for x in diff.get("input_add_ids", [])]
        add_dims = [list(x) for x in dc.get("input_add_dims", [])]
        _need(add_ids == want and add_dims == want,
              f"input_add_ids {add_ids} / input_add_dims {add_dims} (lmdm reads exactly {want}; "
              "accompaniment inputs of their jamming hooks are not mapped)")
        _need(dc.get("postpend") is True, "postpend must be true (the global token after the frames)")
        training = cfg.get("training", {})
        _need(training.get("context_router") is True, "training.context_router must be true")
        mk = training.get("inpainting", {}).get("mask_kwargs", {})
        pattern = mk.get("context_router_attention_pattern")
        _need(pattern in ("enc-dec", "block-causal"),
              f"training.inpainting.mask_kwargs.context_router_attention_pattern {pattern!r}")
        context = mk["fixed_mask_size"]
        base = copy.deepcopy(cfg)
        bdc = base["model"]["diffusion"]
        bdc.pop("input_add_ids", None)
        for key in ("input_add_dims", "postpend"):
            bdc["config"].pop(key, None)
        config = config_from_sao(base, t5_path)
        window = config.pattern.block_frames     # sample_size in latent frames
        block = window - context
        _need(block > 0, f"fixed_mask_size {context} leaves no target in a window of {window} frames")
        if pattern == "block-causal":
            chunk = mk.get("block_causal_chunk_size", block)
            chunks = mk.get("block_causal_window_chunks", context // block)
            _need(chunk == block, f"block_causal_chunk_size {chunk} != sample frames - fixed_mask_size = {block} "
                  "(their sampler generates one chunk per block)")
            _need(chunks * chunk == context, f"block_causal_window_chunks {chunks} x chunk {chunk} != "
                  f"fixed_mask_size {context} (lmdm's window is the context: w = C / B)")
        rope = training.get("arc", {}).get("self_forcing", {}).get("rope_mode", "fixed")
        _need(rope in (None, "fixed"), f"rope_mode {rope!r} (lmdm keeps rotary positions fixed to the window)")
    except (KeyError, TypeError) as e:
        raise ConfigError(f"authors' model_config.json lacks {e}") from e
    config.dit.input_groups = {"context": io + 1}
    config.pattern = PatternConfig(pattern, block, context, start_context="zeros")
    return config.validate()


def from_authors_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Their keys -> lmdm's. Returns the mapped state and one line per set-aside group (for the
    user). Unknown keys are kept unmapped so the strict load names them."""
    notes = []
    if any(k.startswith("diffusion.") for k in state):       # a Lightning training checkpoint
        ema = {k[len("diffusion_ema.ema_model."):]: v for k, v in state.items()
               if k.startswith("diffusion_ema.ema_model.")}
        rest = {}
        for key, value in state.items():
            skip = next((p for p in TRAINING_ONLY if key.startswith(p)), None)
            if skip:
                continue
            if key.startswith("diffusion."):
                if ema and key.startswith("diffusion.model."):
                    continue                                  # the EMA copy replaces the online DiT
                rest[key[len("diffusion."):]] = value
            elif not key.startswith("diffusion_ema."):
                rest[key] = value
        rest.update({"model." + k: v for k, v in ema.items()})
        for prefix, why in TRAINING_ONLY.items():
            n = sum(k.startswith(prefix) for k in state)
            if n:
                notes.append(f"ignored {n} {prefix}* tensors: {why}")
        if ema:
            notes.append("used the EMA weights (diffusion_ema.ema_model.*), as their export_model does")
        state = rest
    state = _fuse_split_qkv(state)
    out = {}
    for key, value in state.items():
        if key == ROUTER[0]:
            out[ROUTER[1]] = value
            continue
        new = next((ours + key[len(theirs):] for theirs, ours in SAO_PREFIXES.items() if key.startswith(theirs)), key)
        out[new] = value
    return out, notes


def _fuse_split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their KV-cache path splits each self-attention's fused `to_qkv` into `to_q` (first `dim` rows)
    + `to_kv` in place (`Attention._split_qkv_projections_for_cache`; ARC-Forcing with use_kv_cache does
    it before training), so such checkpoints hold `self_attn.to_q/to_kv`: fused back here."""
    out = dict(state)
    for key in state:
        if key.endswith(".self_attn.to_q.weight"):
            base = key[: -len("to_q.weight")]
            if base + "to_kv.weight" in out and base + "to_qkv.weight" not in out:
                out[base + "to_qkv.weight"] = torch.cat((out.pop(key), out.pop(base + "to_kv.weight")), 0)
    return out


def to_authors_keys(model) -> dict[str, torch.Tensor]:
    """The model's state dict under the names of the authors' exported checkpoint."""
    groups = model.config.dit.input_groups
    if set(groups) != {"context"}:
        raise ConfigError(f"the authors' format holds only the context router's input; this model also has "
                          f"input groups {sorted(set(groups) - {'context'})}")
    inverse = {ours: theirs for theirs, ours in SAO_PREFIXES.items()}
    out = {}
    for key, value in model.state_dict().items():
        if key == ROUTER[1]:
            out[ROUTER[0]] = value
            continue
        prefix = next((p for p in inverse if key.startswith(p)), None)
        if prefix is None:
            raise ConfigError(f"{key} has no counterpart in the authors' format")
        out[inverse[prefix] + key[len(prefix):]] = value
    return out


def authors_config(config: ModelConfig) -> dict:
    """The model_config.json the authors' code reads for this model (their saos_* layout)."""
    d, p = config.dit, config.pattern
    if p.pattern not in ("enc-dec", "block-causal") or set(d.input_groups) != {"context"}:
        raise ConfigError(f"only enc-dec and block-causal LMDMs with just the context router have an authors' "
                          f"equivalent (this one: {p.pattern}, input groups {sorted(d.input_groups)})")
    cfg = sao_model_config(config, p.window_frames)
    add = [["inpaint_mask", 1], ["inpaint_masked_input", d.io_channels]]
    cfg["model"]["diffusion"]["input_add_ids"] = add
    cfg["model"]["diffusion"]["config"].update(postpend=True, input_add_dims=add)
    mask = {"max_mask_segments": 1, "mask_type_probabilities": [0, 0, 1.0], "fixed_mask_size": p.context_frames,
            "context_router_attention_pattern": p.pattern, "use_context_shift": False}
    if p.pattern == "block-causal":
        mask.update(block_causal_chunk_size=p.block_frames, block_causal_window_chunks=p.context_chunks)
    cfg["training"] = {"pre_encoded": True, "context_router": True, "inpainting": {"mask_kwargs": mask},
                       "arc": {"self_forcing": {"chunk_size": p.block_frames, "context_size": p.context_frames,
                                                "use_kv_cache": True, "rope_mode": "fixed"}}}
    return cfg
