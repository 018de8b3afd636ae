"""A stream's saved state (version 1): everything needed to continue bit-exactly — the window, the
pending chunk, the cache, the decoder and live encoder, the prompts, each guidance's setting (under its
own name) and each timed input's values — as {"meta": JSON-able dict, "tensors": {...}}, in memory or
in one safetensors file (the meta as JSON in its metadata)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..config import PatternConfig
from ..errors import ConfigError, StateError
from ..models.conditioners import check_prompts
from . import guidance

STATE_VERSION = 1


def state_dict(s) -> dict:
    meta = {"version": STATE_VERSION, "model": s.model.config.to_dict(), "pattern": dataclasses.asdict(s.pcfg),
            "block_index": s.block_index, "frame": s.frame, "seed": s.seed, "steps": s.steps}
    for name, setting in s.guidance_settings.items():
        meta.update(guidance.get(name).to_meta(setting))
    meta.update({"sampler": s.sampler, "guidance": s.guidance, "prompts": s.prompts, "batch": s.batch,
                 "seconds_total": s.seconds_total, "needs_bootstrap": s.needs_bootstrap})
    tensors = {"history": s.history, "history_mask": s.history_mask, "tokens": s.tokens}
    if s.global_cond is not None:
        tensors["global_cond"] = s.global_cond
    if s.pending is not None:
        tensors["pending"] = s.pending
    if s.cache is not None:
        tensors.update(s.cache.state_dict())
    if s._decoder is not None:
        tensors.update({f"decoder.{k}": v for k, v in s._decoder.state_dict().items()})
    for timed in s.inputs.values():
        meta.update(timed.meta())
        tensors.update(timed.tensors())
    # on the CPU whatever the device: a state saved on a GPU restores on a CPU and vice versa
    return {"meta": meta, "tensors": {k: v.cpu().clone() for k, v in tensors.items()}}


def load_state_dict(s, state: dict) -> None:
    try:
        meta, tensors = state["meta"], state["tensors"]
    except (KeyError, TypeError) as e:
        raise StateError("stream state must be a dict with 'meta' and 'tensors'") from e
    if meta.get("version") != STATE_VERSION:
        raise StateError(f"stream state version {meta.get('version')!r}, expected {STATE_VERSION}")
    for key, mine in (("model", s.model.config.to_dict()), ("batch", s.batch)):
        if meta.get(key) != mine:
            raise StateError(f"stream state is from another {key}: {_diff(meta.get(key), mine)}")
    pattern = s.pcfg
    if meta.get("pattern") != dataclasses.asdict(s.pcfg):   # the same model re-blocked: take its block size
        try:
            pattern = PatternConfig(**meta["pattern"])
            s._check_reblock(pattern)
        except (ConfigError, TypeError, KeyError) as e:
            raise StateError(f"stream state is from another pattern: "
                             f"{_diff(meta.get('pattern'), dataclasses.asdict(s.pcfg))} ({e})") from e
    for key in ("history", "history_mask", "tokens"):
        if key not in tensors:
            raise StateError(f"stream state lacks tensor {key!r}")
    if tensors["history"].shape != (s.batch, s.io, pattern.context_frames):
        raise StateError(f"stream state history has shape {tuple(tensors['history'].shape)}, "
                         f"expected {(s.batch, s.io, pattern.context_frames)}")
    s._repattern(pattern)
    s.block_index, s.seed, s.steps = meta["block_index"], meta["seed"], meta["steps"]
    s._frame = meta.get("frame", s.block_index * s.B)
    s.sampler, s.guidance = meta["sampler"], meta["guidance"]
    s.guidance_settings = {g.name: g.check(s, g.from_meta(meta)) for g in guidance.REGISTRY.values()}
    s.prompts, s.seconds_total = check_prompts(meta["prompts"]), meta["seconds_total"]
    s.needs_bootstrap = meta["needs_bootstrap"]
    s.history, s.history_mask = tensors["history"].clone(), tensors["history_mask"].clone()
    s.tokens = tensors["tokens"].to(s.device).clone()
    s.global_cond = tensors["global_cond"].to(s.device).clone() if "global_cond" in tensors else None
    s.pending = tensors["pending"].clone() if "pending" in tensors else None
    if s.cache is not None:
        s.cache.load_state_dict({k: s._dev(v) for k, v in tensors.items() if k.startswith("cache.")},
                                s.model.config.dit.depth)
    ae_device = s.ae_device if s.model.autoencoder is not None else None
    decoder_state = {k[len("decoder."):]: v.to(ae_device) for k, v in tensors.items() if k.startswith("decoder.")}
    s._decoder = None
    if decoder_state:
        s.decoder.load_state_dict(decoder_state)
    for timed in s.inputs.values():
        timed.load(s, meta, tensors)
    s._prepare_guidance()   # after the tempo: a set tempo is part of prompt guidance's text
    s._condition()


def save(s, path: str | Path) -> None:
    from safetensors.torch import save_file
    state = state_dict(s)
    save_file({k: v.contiguous() for k, v in state["tensors"].items()}, str(path),
              metadata={"lmdm_stream": json.dumps(state["meta"])})


def restore(s, path: str | Path) -> None:
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["lmdm_stream"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type for corrupt files
        raise StateError(f"{path} is not an lmdm stream state: {e}") from e
    load_state_dict(s, {"meta": meta, "tensors": tensors})


def _diff(theirs, mine) -> str:
    if isinstance(theirs, dict) and isinstance(mine, dict):
        keys = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        return ", ".join(f"{k}: {_diff(theirs.get(k), mine.get(k))}" for k in keys)
    return f"{theirs!r} != {mine!r}"
