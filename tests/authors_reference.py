"""Make tests/fixtures/authors_tiny.safetensors from the paper authors' own code (run once, by hand).

    python tests/authors_reference.py --authors-src DIR [--out tests/fixtures/authors_tiny.safetensors]

DIR is a checkout of the authors' stable-audio-tools fork (ZacharyNovack/live-music-diffusion-models,
MIT), the folder that holds `stable_audio_tools/`. Their `models/dit.py` (DiffusionTransformer,
BlockCausalStreamingCache) and `models/transformer.py` are imported from it as they are; only their
package `__init__` files are bypassed (they import the whole training stack: torchaudio, k-diffusion,
laion-clap...), `torch.compile` is made a no-op so flex attention runs eagerly on the CPU, and
einops must be importable (e.g. `pip install --target /tmp/deps einops`, then PYTHONPATH=/tmp/deps).
Nothing here is an lmdm dependency; the test that reads the fixture imports none of this.

What it records, for a DiT at reduced width with random weights (depth 2, width 64, 2 heads,
8 latent channels, chunks of 4 frames, a 4-chunk context window; their saos_block_causal layout:
input-add of [inpaint_mask ; inpaint_masked_input], postpended global token, block-causal mask):
  - `w.*`: the state dict in their exported-checkpoint layout (`model.model.*`, plus a number
    conditioner `conditioner.conditioners.seconds_total.*` with the shapes their NumberConditioner has);
  - `forward.*`: their training-mode forward (context router + block-causal flex mask, what
    training/diffusion.py builds) on one window;
  - `nocache.*`: blocks of their cache-free block-AR sampling (use_kv_cache=False: every step a fresh
    masked forward over the whole window, euler on the logSNR schedule, as sample_discrete_euler does
    with inpainting), from a zero context marked known, sliding the window by one chunk per block;
  - `cached.*`: the same blocks from their KV-cached sampler (generate_diffusion_cond_blockar's
    block-causal streaming loop with rope_mode="fixed": bootstrap, fused first steps, re-rotation),
    with the same per-block noise.
Metadata `model_config` holds the model_config.json the authors' format would ship with it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import torch

IO, WIDTH, DEPTH, HEADS, COND, CHUNK, WINDOW_CHUNKS, STEPS, BLOCKS = 8, 64, 2, 2, 32, 4, 4, 4, 4
CONTEXT = CHUNK * WINDOW_CHUNKS
SAMPLE = CONTEXT + CHUNK
PROMPT_TOKENS = 6


def model_config() -> dict:
    """Their saos_block_causal.json at reduced size, latent-only (no pretransform)."""
    add = [["inpaint_mask", 1], ["inpaint_masked_input", IO]]
    return {
        "model_type": "diffusion_cond", "sample_size": SAMPLE, "sample_rate": 44100, "audio_channels": 2,
        "model": {
            "conditioning": {"configs": [
                {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": PROMPT_TOKENS - 1}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}}],
                "cond_dim": COND},
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_total"], "global_cond_ids": ["seconds_total"],
                "input_add_ids": add, "diffusion_objective": "rectified_flow", "type": "dit",
                "config": {"io_channels": IO, "embed_dim": WIDTH, "depth": DEPTH, "num_heads": HEADS,
                           "cond_token_dim": COND, "global_cond_dim": COND, "postpend": True,
                           "input_add_dims": add, "transformer_type": "continuous_transformer",
                           "attn_kwargs": {"qk_norm": "ln"}}},
            "io_channels": IO},
        "training": {
            "pre_encoded": True, "context_router": True,
            "inpainting": {"mask_kwargs": {
                "max_mask_segments": 1, "mask_type_probabilities": [0, 0, 1.0], "fixed_mask_size": CONTEXT,
                "context_router_attention_pattern": "block-causal", "block_causal_chunk_size": CHUNK,
                "block_causal_window_chunks": WINDOW_CHUNKS, "use_context_shift": False,
                "outpainting_dropout_probs": {"p_uncond": 0.2, "p_partial": 0.3}}},
            "arc": {"self_forcing": {"chunk_size": CHUNK, "context_size": CONTEXT, "use_kv_cache": True,
                                     "rope_mode": "fixed"}}},
    }


def import_theirs(src: Path):
    """Their dit.py / transformer.py as `stable_audio_tools.models.*`, without the package __init__s."""
    torch.compile = lambda fn=None, *a, **k: fn if fn is not None else (lambda f: f)  # eager flex attention
    os.environ["USE_CHECKPOINTING"] = "0"
    for name, folder in (("stable_audio_tools", src / "stable_audio_tools"),
                         ("stable_audio_tools.models", src / "stable_audio_tools" / "models")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(folder)]
        sys.modules[name] = pkg
    mods = {}
    for name in ("utils", "blocks", "transformer", "dit"):
        full = f"stable_audio_tools.models.{name}"
        spec = importlib.util.spec_from_file_location(full, src / "stable_audio_tools" / "models" / f"{name}.py")
        mods[name] = importlib.util.module_from_spec(spec)
        sys.modules[full] = mods[name]
        spec.loader.exec_module(mods[name])
    return mods["dit"]


class _Wrapper(torch.nn.Module):
    """Stands for their DiTWrapper (model.model): BlockCausalStreamingCache reaches `.model.transformer`."""

    def __init__(self, dit):
        super().__init__()
        self.model = dit

    def forward(self, x, t, cross_attn_cond=None, global_cond=None, **kwargs):
        return self.model(x, t, cross_attn_cond=cross_attn_cond, global_embed=global_cond, **kwargs)


def block_causal_mask(create_block_mask, seq_len, chunk, nwc):
    """The mask their training (training/diffusion.py) and their bootstrap step build."""
    n_total = nwc + 1

    def fn(b, h, q_idx, kv_idx):
        qb = (q_idx // chunk).clamp(max=n_total - 1)
        kb = (kv_idx // chunk).clamp(max=n_total - 1)
        return (kb <= qb) & (kb >= qb - nwc + 1)
    return create_block_mask(fn, B=None, H=None, Q_LEN=seq_len + 1, KV_LEN=seq_len + 1, device="cpu")


def schedule(steps):
    logsnr = torch.linspace(-6, 2, steps + 1)
    t = torch.sigmoid(-logsnr)
    t[0], t[-1] = 1.0, 0
    return t


def sample_blocks(model, dit_mod, cond, noises, cached: bool):
    """Their block-AR loop (generation.py), euler, batch 1, latents only; `cached` picks the KV path."""
    mask = torch.zeros(1, 1, SAMPLE)
    mask[:, :, :CONTEXT] = 1.0
    inpaint_input = torch.zeros(1, IO, SAMPLE)
    router = 1 - mask
    bmask = block_causal_mask(dit_mod.create_block_mask, SAMPLE, CHUNK, WINDOW_CHUNKS)
    ts = schedule(STEPS)
    cache = dit_mod.BlockCausalStreamingCache(model, CHUNK, WINDOW_CHUNKS, rope_mode="fixed")
    kv_cache = cache.init_kv_cache() if cached else None
    out = []
    for block, noise in enumerate(noises):
        x = noise.clone()
        add = torch.cat((mask, inpaint_input), 1)
        for i, (t_curr, t_prev) in enumerate(zip(ts[:-1], ts[1:])):
            noised = inpaint_input * (1 - t_curr) + torch.randn_like(x) * t_curr
            x = x * (1 - mask) + noised * mask
            tt = t_curr * torch.ones(1)
            kwargs = dict(cond, input_add_cond=add, context_router_mask=router)
            if not cached:
                kwargs["self_attention_block_mask"] = bmask
            else:
                kwargs.update(use_kv_cache=True, kv_cache=kv_cache)
                fused = i == 0 and block > 0
                kwargs["per_item_rope_positions"] = cache.get_rope_positions(1, "cpu", first_step=fused)
                if i == 0:
                    kwargs.update(cache.get_first_step_kwargs("cpu") if fused else {"self_attention_block_mask": bmask})
            v = model(x, tt, **kwargs)
            x = x + (t_prev - t_curr) * v
            if cached and i == 0 and block > 0:
                cache.finalize_first_step()
        x = x * (1 - mask) + inpaint_input * mask
        generated = x[:, :, -CHUNK:]
        out.append(generated.clone())
        if cached:
            cache.advance(generated)
        inpaint_input = inpaint_input.clone()
        inpaint_input[..., -CHUNK:] = generated
        inpaint_input = torch.cat((inpaint_input[:, :, CHUNK:], torch.zeros_like(inpaint_input[:, :, :CHUNK])), 2)
    return torch.cat(out, -1)


def build(dit_mod, cfg: dict):
    dc = cfg["model"]["diffusion"]["config"]
    return dit_mod.DiffusionTransformer(diffusion_objective="rectified_flow", **dc)


def check_export(dit_mod, folder: Path, fixture: Path) -> None:
    from safetensors.torch import load_file
    cfg = json.loads((folder / "model_config.json").read_text())
    dit = build(dit_mod, cfg).eval()
    state = load_file(str(folder / "model.safetensors"))
    dit_state = {k[len("model.model."):]: v for k, v in state.items() if k.startswith("model.model.")}
    dit.load_state_dict(dit_state, strict=True)   # every key of theirs, nothing else
    data = load_file(str(fixture))
    mk = cfg["training"]["inpainting"]["mask_kwargs"]
    context, window = mk["fixed_mask_size"], cfg["sample_size"]
    mask = torch.zeros(1, 1, window)
    mask[..., :context] = 1
    with torch.no_grad():
        v = _Wrapper(dit)(data["in.x"], data["in.t"], cross_attn_cond=data["in.cross"], global_cond=data["in.global"],
                          input_add_cond=torch.cat((mask, data["in.clean"] * mask), 1), context_router_mask=1 - mask,
                          self_attention_block_mask=block_causal_mask(
                              dit_mod.create_block_mask, window, mk["block_causal_chunk_size"],
                              mk["block_causal_window_chunks"]))
    err = (v - data["forward.v"]).abs().max() / data["forward.v"].abs().max()
    print(f"{folder}: strict load into their DiffusionTransformer ok; forward vs fixture: max rel err {err:.2e}")
    assert err < 1e-5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors-src", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "fixtures" / "authors_tiny.safetensors")
    ap.add_argument("--seed", type=int, default=35)
    ap.add_argument("--check-export", type=Path, default=None, metavar="DIR",
                    help="instead: load DIR (written by `lmdm convert --to authors`) into their DiffusionTransformer "
                    "with strict load_state_dict and compare its forward with the fixture's")
    args = ap.parse_args()
    dit_mod = import_theirs(args.authors_src)
    if args.check_export:
        return check_export(dit_mod, args.check_export, args.out)
    from safetensors.torch import save_file

    cfg = model_config()
    torch.manual_seed(args.seed)
    dit = build(dit_mod, cfg)
    with torch.no_grad():  # random weights everywhere (their init zeroes the output projections)
        for name, p in dit.named_parameters():
            p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() > 1 else 4) + (1.0 if name.endswith(("gamma", "norm.weight")) else 0))
            p.copy_(p.half().float())  # stored in fp16; every value is exact in both dtypes
    dit.eval()
    model = _Wrapper(dit).eval()
    g = torch.Generator().manual_seed(args.seed + 1)
    sec_w = torch.randn(128, generator=g).half().float()
    sec_l = (torch.randn(COND, 257, generator=g) / 16).half().float()
    sec_b = (torch.randn(COND, generator=g) / 4).half().float()

    prompt = torch.randn(1, PROMPT_TOKENS - 1, COND, generator=g)
    seconds = torch.randn(1, 1, COND, generator=g)  # the seconds_total token, as their conditioner emits it
    cond = {"cross_attn_cond": torch.cat((prompt, seconds), 1), "global_cond": seconds[:, 0]}
    x = torch.randn(1, IO, SAMPLE, generator=g)
    clean = torch.randn(1, IO, SAMPLE, generator=g)
    t = torch.tensor([0.7])
    mask = torch.zeros(1, 1, SAMPLE)
    mask[..., :CONTEXT] = 1
    noises = [torch.randn(1, IO, SAMPLE, generator=g) for _ in range(BLOCKS)]

    # the state as exported before any KV-cached call: their cache path splits each self-attention's
    # to_qkv into to_q + to_kv in place (_split_qkv_projections_for_cache), so checkpoints saved after
    # cached sampling or cached ARC training hold the split names; the test derives that layout
    state = {k: v.detach().clone() for k, v in dit.state_dict().items()}
    with torch.no_grad():
        fwd = model(x, t, **cond, input_add_cond=torch.cat((mask, clean * mask), 1), context_router_mask=1 - mask,
                    self_attention_block_mask=block_causal_mask(dit_mod.create_block_mask, SAMPLE, CHUNK, WINDOW_CHUNKS))
        # the same weights under their enc-dec training mask (saos_encdec: kv < C or q >= C)
        encdec = dit_mod.create_block_mask(lambda b, h, q, kv: (kv < CONTEXT) | (q >= CONTEXT), B=None, H=None,
                                           Q_LEN=SAMPLE + 1, KV_LEN=SAMPLE + 1, device="cpu")
        fwd_encdec = model(x, t, **cond, input_add_cond=torch.cat((mask, clean * mask), 1),
                           context_router_mask=1 - mask, self_attention_block_mask=encdec)
        torch.manual_seed(0)
        nocache = sample_blocks(model, dit_mod, cond, noises, cached=False)
        torch.manual_seed(0)
        cached = sample_blocks(model, dit_mod, cond, noises, cached=True)

    assert any(k.endswith("self_attn.to_kv.weight") for k in dit.state_dict())  # split by the cached run
    tensors = {"w.model.model." + k: v.half().contiguous() for k, v in state.items() if not k.endswith("inv_freq")}
    tensors["w.model.model.transformer.rotary_pos_emb.inv_freq"] = dit.transformer.rotary_pos_emb.inv_freq.clone()
    p = "w.conditioner.conditioners.seconds_total.embedder.embedding."
    tensors.update({p + "0.weights": sec_w.half(), p + "1.weight": sec_l.half(), p + "1.bias": sec_b.half()})
    tensors.update({"in.cross": cond["cross_attn_cond"], "in.global": cond["global_cond"], "in.x": x, "in.clean": clean,
                    "in.t": t, "in.noise": torch.stack(noises), "forward.v": fwd, "forward_encdec.v": fwd_encdec, "nocache.blocks": nocache,
                    "cached.blocks": cached})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out),
              metadata={"model_config": json.dumps(cfg), "steps": str(STEPS), "made_by": "tests/authors_reference.py"})
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); cached vs cache-free max |diff| "
          f"{(cached - nocache).abs().max():.3g}")


if __name__ == "__main__":
    main()
