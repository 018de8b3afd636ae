"""Stable Audio Open's checkpoint format (stable-audio-tools): its `model_config.json` read into a
ModelConfig and written back, and its state-dict key layout (`model.model.*` DiT,
`conditioner.conditioners.seconds_total.*`, `pretransform.model.*` autoencoder). The paper authors'
format (`lmdm.authors`) extends it; `lmdm.checkpoints` loads and saves both."""
from __future__ import annotations

import torch

from .config import DiTConfig, ModelConfig, PatternConfig, TextConfig
from .errors import ConfigError

SAO_PREFIXES = {"model.model.": "dit.", "conditioner.conditioners.seconds_total.": "seconds_total.",
                "pretransform.model.": "autoencoder."}


def from_sao_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename SAO checkpoint keys to lmdm's. Keys under no known prefix are kept as they are, so
    the strict load reports them as unexpected."""
    out = {}
    for key, value in state.items():
        new = next((ours + key[len(theirs):] for theirs, ours in SAO_PREFIXES.items() if key.startswith(theirs)), key)
        out[new] = value
    return out


def to_sao_keys(model) -> dict[str, torch.Tensor]:
    """The model's state dict in SAO's key layout (a plain SAO model only: no context router)."""
    if model.config.dit.input_groups:
        raise ConfigError("an LMDM with a context router has no Stable Audio Open equivalent")
    inverse = {ours: theirs for theirs, ours in SAO_PREFIXES.items()}
    out = {}
    for key, value in model.state_dict().items():
        prefix = next((p for p in inverse if key.startswith(p)), None)
        if prefix is None:
            raise ConfigError(f"{key} has no Stable Audio Open counterpart")
        out[inverse[prefix] + key[len(prefix):]] = value
    return out


def sao_config(config: ModelConfig) -> dict:
    """The SAO model_config.json of a plain (bidirectional, router-free) model."""
    if config.dit.input_groups:
        raise ConfigError("an LMDM with a context router has no Stable Audio Open equivalent")
    return sao_model_config(config, config.pattern.block_frames)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ConfigError(f"unsupported Stable Audio Open config: {what}")


def config_from_sao(sao: dict, t5_path: str = "") -> ModelConfig:
    """ModelConfig for an SAO `model_config.json` (SAO-small's structure; other sizes of it too).
    The result is the plain bidirectional model: no context router, T at position 0."""
    try:
        _need(sao.get("model_type") == "diffusion_cond", f"model_type {sao.get('model_type')!r}")
        m = sao["model"]
        diff, dc = m["diffusion"], m["diffusion"]["config"]
        _need(diff.get("type") == "dit", f"diffusion type {diff.get('type')!r}")
        _need(dc.get("transformer_type", "continuous_transformer") == "continuous_transformer", "transformer_type")
        _need(dc.get("global_cond_type", "prepend") == "prepend", "global_cond_type other than 'prepend'")
        _need(dc.get("patch_size", 1) == 1, "patch_size other than 1")
        _need(dc.get("attn_kwargs", {}).get("qk_norm") == "ln", "attention without qk_norm='ln'")
        conds = {c["id"]: c for c in m["conditioning"]["configs"]}
        _need(set(conds) <= {"prompt", "seconds_total"} and conds.get("prompt", {}).get("type") == "t5",
              f"conditioners {sorted(conds)} (need a t5 'prompt' and optionally 'seconds_total')")
        seconds = "seconds_total" in conds
        _need(diff.get("cross_attention_cond_ids") == (["prompt", "seconds_total"] if seconds else ["prompt"]),
              f"cross_attention_cond_ids {diff.get('cross_attention_cond_ids')}")
        _need(diff.get("global_cond_ids", []) == (["seconds_total"] if seconds else []),
              f"global_cond_ids {diff.get('global_cond_ids')}")
        seconds_max = 256.0
        if seconds:
            sc = conds["seconds_total"]["config"]
            _need(sc.get("min_val", 0) == 0, "seconds_total min_val other than 0")
            seconds_max = float(sc.get("max_val", 1))
        dit = DiTConfig(io_channels=dc["io_channels"], width=dc["embed_dim"], depth=dc["depth"],
                        heads=dc["num_heads"], cond_token_dim=dc["cond_token_dim"],
                        global_cond_dim=dc.get("global_cond_dim", 0) if seconds else 0,
                        project_cond_tokens=dc.get("project_cond_tokens", True),
                        timestep_features_dim=dc.get("timestep_features_dim", 256), input_groups={})
        text = TextConfig(kind="t5", max_tokens=conds["prompt"]["config"].get("max_length", 128), path=t5_path,
                          seconds_total=seconds, seconds_max=seconds_max)
        pre = m.get("pretransform")
        autoencoder = None
        if pre is not None:
            from .models.autoencoder import AutoencoderConfig
            autoencoder = AutoencoderConfig.from_sao(pre).to_dict()
        ratio = pre["config"]["downsampling_ratio"] if pre else 1
        frames = sao.get("sample_size", 524288) // ratio
    except (KeyError, TypeError) as e:
        raise ConfigError(f"Stable Audio Open config lacks {e}") from e
    return ModelConfig(dit=dit, pattern=PatternConfig("bidirectional", block_frames=frames, context_frames=0),
                       text=text, autoencoder=autoencoder, sample_rate=sao.get("sample_rate", 44100),
                       downsampling_ratio=ratio, steps=8).validate()


def sao_model_config(config: ModelConfig, frames: int) -> dict:
    """The Stable Audio Open part of a model_config.json: T5 + seconds_total conditioning, the DiT,
    the Oobleck VAE; `frames` latent frames per window."""
    d, text = config.dit, config.text
    if text.kind != "t5" or not text.seconds_total:
        raise ConfigError(f"Stable Audio Open models are conditioned on T5 + seconds_total; this one uses "
                          f"text.kind={text.kind!r}{'' if text.seconds_total else ' without seconds_total'}")
    if d.ff_mult != 4 or d.timestep_features_dim != 256:
        raise ConfigError("stable-audio-tools' DiT has ff_mult 4 and 256 timestep features")
    model = {
        "conditioning": {"configs": [
            {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": text.max_tokens}},
            {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": text.seconds_max}}],
            "cond_dim": d.cond_token_dim},
        "diffusion": {"cross_attention_cond_ids": ["prompt", "seconds_total"], "global_cond_ids": ["seconds_total"],
                      "diffusion_objective": "rectified_flow", "type": "dit",
                      "config": {"io_channels": d.io_channels, "embed_dim": d.width, "depth": d.depth,
                                 "num_heads": d.heads, "cond_token_dim": d.cond_token_dim,
                                 "global_cond_dim": d.global_cond_dim, "project_cond_tokens": d.project_cond_tokens,
                                 "transformer_type": "continuous_transformer", "attn_kwargs": {"qk_norm": "ln"}}},
        "io_channels": d.io_channels}
    if config.autoencoder is not None:
        model["pretransform"] = _pretransform(config.autoencoder)
    return {"model_type": "diffusion_cond", "sample_size": frames * config.downsampling_ratio,
            "sample_rate": config.sample_rate, "audio_channels": (config.autoencoder or {}).get("audio_channels", 2),
            "model": model}


def _pretransform(ae: dict) -> dict:
    """An AutoencoderConfig dict as stable-audio-tools' Oobleck VAE pretransform config."""
    common = {"channels": ae["channels"], "c_mults": ae["c_mults"], "strides": ae["strides"], "use_snake": True}
    return {"type": "autoencoder", "iterate_batch": True, "config": {
        "encoder": {"type": "oobleck", "config": {"in_channels": ae["audio_channels"], **common,
                                                  "latent_dim": 2 * ae["latent_dim"]}},
        "decoder": {"type": "oobleck", "config": {"out_channels": ae["audio_channels"], **common,
                                                  "latent_dim": ae["latent_dim"], "final_tanh": ae["final_tanh"]}},
        "bottleneck": {"type": "vae"}, "latent_dim": ae["latent_dim"],
        "downsampling_ratio": int(torch.tensor(ae["strides"]).prod()), "io_channels": ae["audio_channels"]}}
