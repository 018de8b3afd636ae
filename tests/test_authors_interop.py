"""The paper authors' format: strict loading, parity with their code, export back, round trip.

The fixture tests/fixtures/authors_tiny.safetensors was made by tests/authors_reference.py from the
authors' own DiffusionTransformer / BlockCausalStreamingCache at reduced width with random weights
(see that script). It holds the weights in their key layout, inputs, their training-mode forward,
and blocks of their cache-free and KV-cached block-AR sampling.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lmdm.checkpoints import from_pretrained, save_pretrained
from lmdm.errors import CheckpointError, ConfigError

# LMDM_AUTHORS_FIXTURE: another fixture made by tests/authors_reference.py (e.g. --seed 7), held out
FIXTURE = Path(os.environ.get("LMDM_AUTHORS_FIXTURE", Path(__file__).parent / "fixtures" / "authors_tiny.safetensors"))


def _fixture():
    with safe_open(str(FIXTURE), "pt") as f:
        meta = f.metadata()
    return load_file(str(FIXTURE)), json.loads(meta["model_config"]), int(meta["steps"])


def authors_dir(folder: Path, layout: str = "export") -> Path:
    """A directory as the authors' code leaves one: model_config.json + weights in their key layout.
    layout: export (model.safetensors), ckpt (model.ckpt, {"state_dict": ...}), lightning (ARC-Forcing
    training checkpoint: `diffusion.` prefixes plus discriminator and head weights)."""
    data, cfg, _ = _fixture()
    state = {k[2:]: v.float() for k, v in data.items() if k.startswith("w.")}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_config.json").write_text(json.dumps(cfg))
    if layout == "export":
        save_file(state, str(folder / "model.safetensors"))
    else:
        if layout == "lightning":   # ARC with use_kv_cache splits self-attention's to_qkv before training
            for key in [k for k in state if k.endswith("self_attn.to_qkv.weight")]:
                q, kv = state.pop(key).split([64, 128])
                state[key.replace("to_qkv", "to_q")], state[key.replace("to_qkv", "to_kv")] = q, kv
            state = {"diffusion." + k: v for k, v in state.items()}
            state["discriminator.model.model.transformer.project_in.weight"] = torch.randn(64, 8)
            state["discriminator_head.layers.0.weight"] = torch.randn(3, 3)
        torch.save({"state_dict": state}, folder / "model.ckpt")
    return folder


@pytest.fixture
def model(tmp_path):
    return from_pretrained(authors_dir(tmp_path / "authors"))


def _cond(model, data):
    return model.dit.condition(data["in.cross"], data["in.global"])


@pytest.mark.parametrize("layout", ["export", "ckpt", "lightning"])
def test_their_checkpoints_load_strictly(tmp_path, layout):
    m = from_pretrained(authors_dir(tmp_path / layout, layout))
    p = m.config.pattern
    assert (p.pattern, p.block_frames, p.context_frames, p.context_chunks, p.start_context) == \
        ("block-causal", 4, 16, 4, "zeros")
    assert m.config.dit.input_groups == {"context": 9} and m.config.text.kind == "t5"
    data, _, _ = _fixture()
    assert torch.equal(m.dit.input_groups["context"].weight, data["w.model.model.to_input_add_embed.weight"].float())
    if layout == "lightning":
        assert any("discriminator_head" in n and "training only" in n for n in m.load_notes)


def test_training_forward_matches_their_code(model):
    data, _, _ = _fixture()
    x, clean, t = data["in.x"], data["in.clean"], data["in.t"]
    mask = torch.zeros(1, 1, 20)
    mask[..., :16] = 1
    with torch.no_grad():
        v = model.dit(x, t, _cond(model, data), {"context": torch.cat((mask, clean * mask), 1)},
                      pattern="block-causal", context_frames=16, block_frames=4, context_chunks=4)
    ref = data["forward.v"]
    assert (v - ref).abs().max() < 1e-5 * ref.abs().max()


def test_enc_dec_forward_matches_their_code(tmp_path):
    folder = authors_dir(tmp_path / "encdec")
    cfg = json.loads((folder / "model_config.json").read_text())
    cfg["training"]["inpainting"]["mask_kwargs"]["context_router_attention_pattern"] = "enc-dec"
    (folder / "model_config.json").write_text(json.dumps(cfg))
    model = from_pretrained(folder)
    assert model.config.pattern.pattern == "enc-dec"
    data, _, _ = _fixture()
    mask = torch.zeros(1, 1, 20)
    mask[..., :16] = 1
    with torch.no_grad():
        v = model.dit(data["in.x"], data["in.t"], _cond(model, data), {"context": torch.cat((mask, data["in.clean"] * mask), 1)},
                      pattern="enc-dec", context_frames=16, block_frames=4)
    ref = data["forward_encdec.v"]
    assert (v - ref).abs().max() < 1e-5 * ref.abs().max()


def _blocks(model, data, steps, cache, monkeypatch):
    """lmdm's Stream over the fixture's blocks: euler, the fixture's noise and conditioning."""
    model.config.pattern.cache = cache
    noise = data["in.noise"][:, :, :, 16:]      # their per-block window noise; only the target's matters
    monkeypatch.setattr(model, "encode_prompts", lambda prompts, seconds=None: (data["in.cross"], data["in.global"]))
    stream = model.stream("fixture conditioning", steps=steps, sampler="euler")
    monkeypatch.setattr(stream, "_noise", lambda: [noise[stream.block_index]] * steps)
    with torch.no_grad():
        return torch.cat([stream.next_latents() for _ in range(noise.shape[0])], -1)


def test_cache_free_block_ar_matches_their_sampler(model, monkeypatch):
    data, _, steps = _fixture()
    ours, ref = _blocks(model, data, steps, "none", monkeypatch), data["nocache.blocks"]
    assert (ours - ref).abs().max() < 1e-5 * ref.abs().max()


def test_authors_cache_option_matches_their_kv_sampler(model, monkeypatch):
    data, _, steps = _fixture()
    ours, ref = _blocks(model, data, steps, "authors", monkeypatch), data["cached.blocks"]
    assert (ours - ref).abs().max() < 1e-5 * ref.abs().max()
    # their cached sampler departs from their own cache-free (training-mask) sampler
    assert (ref - data["nocache.blocks"]).abs().max() > 1e-2


def test_exact_cache_equals_cache_free_until_the_window_slides(model, monkeypatch):
    """lmdm's exact cache equals the cache-free sampler on the bootstrap block; once the window
    slides, the cache-free sampler recomputes the oldest context chunk with nothing before it while
    the cache keeps what that chunk saw when it was made (the banded-stream reference, test_stream_equivalence)."""
    data, _, steps = _fixture()
    ours, ref = _blocks(model, data, steps, "exact", monkeypatch), data["nocache.blocks"]
    assert (ours[..., :4] - ref[..., :4]).abs().max() < 1e-5 * ref.abs().max()


def test_missing_and_extra_weights_are_named(tmp_path):
    folder = authors_dir(tmp_path / "a")
    sd = load_file(str(folder / "model.safetensors"))
    sd.pop("model.model.to_input_add_embed.weight")
    sd["model.model.transformer.layers.0.extra.weight"] = torch.zeros(2)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"(?s)missing keys.*input_groups.context.weight.*"
                                              r"unexpected keys.*layers.0.extra.weight"):
        from_pretrained(folder)


def test_unsupported_authors_configs_are_named(tmp_path):
    for change, message in ((lambda c: c["training"]["inpainting"]["mask_kwargs"].update(block_causal_window_chunks=3),
                             "window_chunks 3"),
                            (lambda c: c["training"]["arc"]["self_forcing"].update(rope_mode="offset"), "rope_mode"),
                            (lambda c: c["model"]["diffusion"]["config"].update(postpend=False), "postpend")):
        folder = authors_dir(tmp_path / message.replace(" ", "_"))
        cfg = json.loads((folder / "model_config.json").read_text())
        change(cfg)
        (folder / "model_config.json").write_text(json.dumps(cfg))
        with pytest.raises(ConfigError, match=message):
            from_pretrained(folder)


def test_round_trip_lmdm_authors_lmdm_is_bit_exact(model, tmp_path):
    save_pretrained(model, tmp_path / "lmdm")
    out = subprocess.run([sys.executable, "-m", "lmdm", "convert", str(tmp_path / "lmdm"), str(tmp_path / "theirs"),
                          "--to", "authors"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    theirs = load_file(str(tmp_path / "theirs" / "model.safetensors"))
    original = load_file(str(authors_dir(tmp_path / "orig") / "model.safetensors"))
    assert sorted(theirs) == sorted(original) and all(torch.equal(theirs[k], original[k]) for k in original)
    back = from_pretrained(tmp_path / "theirs")
    assert back.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))


def test_sao_to_lmdm_to_authors_then_generate_and_live_with_a_local_t5(tmp_path):
    """SAO -> lmdm (router added) -> authors' layout, then `generate` and `live` on the authors' directory
    with `--t5 DIR`: a tiny randomly initialised T5 saved locally (nothing downloaded)."""
    from conftest import make_sao_dir, make_tiny_t5
    sao, t5 = make_sao_dir(tmp_path / "sao"), make_tiny_t5(tmp_path / "t5", d_model=64)

    def lmdm(*args):
        out = subprocess.run([sys.executable, "-m", "lmdm", *map(str, args)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out
    lmdm("convert", sao, tmp_path / "lm", "--pattern", "block-causal", "--block", 4, "--context", 12)
    lmdm("convert", tmp_path / "lm", tmp_path / "theirs", "--to", "authors")
    cfg = json.loads((tmp_path / "theirs" / "model_config.json").read_text())
    assert cfg["model"]["diffusion"]["config"]["postpend"] and "pretransform" in cfg["model"]
    lmdm("generate", "warm piano", "--model", tmp_path / "theirs", "--t5", t5, "--seconds", 0.05,
         "-o", tmp_path / "gen.wav", "--quiet", "--cache", "authors")
    lmdm("live", "--headless", "--model", tmp_path / "theirs", "--t5", t5, "--script", "warm piano@0s",
         "--seconds", 0.05, "--out", tmp_path / "live.wav")
    import soundfile as sf
    for name in ("gen.wav", "live.wav"):
        audio, sr = sf.read(str(tmp_path / name))
        assert sr == 44100 and audio.shape[0] == 2205 and abs(audio).max() > 0
    bad = subprocess.run([sys.executable, "-m", "lmdm", "generate", "x", "--model", str(tmp_path / "theirs"),
                          "-o", str(tmp_path / "no.wav")], capture_output=True, text=True)
    assert bad.returncode != 0 and "--t5 DIR" in bad.stderr and "Traceback" not in bad.stderr


def test_sao_export_round_trip_is_bit_exact(tmp_path):
    from conftest import make_sao_dir
    from lmdm.checkpoints import export
    sao = make_sao_dir(tmp_path / "sao")
    export(from_pretrained(sao), tmp_path / "back", "sao")
    a, b = load_file(str(sao / "model.safetensors")), load_file(str(tmp_path / "back" / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert from_pretrained(tmp_path / "back").config == from_pretrained(sao).config
    with pytest.raises(ConfigError, match="no Stable Audio Open equivalent"):
        export(from_pretrained(authors_dir(tmp_path / "authors")), tmp_path / "no", "sao")
