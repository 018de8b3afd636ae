import json

import pytest
import torch

import lmdm


def randomized(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Give zero-initialised weights (router, output projections, 1x1 convs) random values, so
    every path of the model is exercised and a wrong mask or position changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 0 and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def tiny_model(pattern: str = "block-causal", seed: int = 0, **pattern_overrides) -> lmdm.LiveMusicModel:
    torch.manual_seed(seed)
    cfg = lmdm.preset("tiny", pattern)
    for k, v in pattern_overrides.items():
        setattr(cfg.pattern, k, v)
    cfg.validate()
    return randomized(lmdm.LiveMusicModel(cfg).eval(), seed)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


# SAO-small's model_config.json structure at reduced width (head_dim 64 as in SAO: rotary on 32).
SAO_CONFIG = {
    "model_type": "diffusion_cond", "sample_size": 512 * 32, "sample_rate": 44100, "audio_channels": 2,
    "model": {
        "pretransform": {"type": "autoencoder", "iterate_batch": True, "config": {
            "encoder": {"type": "oobleck", "config": {"in_channels": 2, "channels": 4, "c_mults": [1, 2],
                                                      "strides": [4, 8], "latent_dim": 16, "use_snake": True}},
            "decoder": {"type": "oobleck", "config": {"out_channels": 2, "channels": 4, "c_mults": [1, 2],
                                                      "strides": [4, 8], "latent_dim": 8, "use_snake": True,
                                                      "final_tanh": False}},
            "bottleneck": {"type": "vae"}, "latent_dim": 8, "downsampling_ratio": 32, "io_channels": 2}},
        "conditioning": {"configs": [
            {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 8}},
            {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}}],
            "cond_dim": 64},
        "diffusion": {"cross_attention_cond_ids": ["prompt", "seconds_total"], "global_cond_ids": ["seconds_total"],
                      "diffusion_objective": "rf_denoiser", "type": "dit",
                      "config": {"io_channels": 8, "embed_dim": 128, "depth": 2, "num_heads": 2,
                                 "cond_token_dim": 64, "global_cond_dim": 64,
                                 "transformer_type": "continuous_transformer", "attn_kwargs": {"qk_norm": "ln"}}},
        "io_channels": 8}}


def make_sao_dir(folder):
    """A randomly initialised SAO-layout directory, as Stability AI ships one."""
    from lmdm.sao import config_from_sao, to_sao_keys
    from safetensors.torch import save_file
    model = randomized(lmdm.LiveMusicModel(config_from_sao(SAO_CONFIG)), seed=1)
    folder.mkdir(parents=True)
    (folder / "model_config.json").write_text(json.dumps(SAO_CONFIG))
    save_file(to_sao_keys(model), str(folder / "model.safetensors"))
    return folder


def make_tiny_t5(folder, d_model: int):
    """A real (randomly initialised) T5 encoder + tokenizer saved locally: the same loading path
    as t5-base, without a download."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel
    words = ["<pad>", "</s>", "<unk>", "warm", "piano", "dub", "techno", "drums", "bass"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(words), d_model=d_model, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    T5EncoderModel(cfg).save_pretrained(folder)
    return folder


def stream_audio_by_hand(stream, total: int, before_block=None) -> torch.Tensor:
    """`lmdm.engine.generate`'s loop driven by hand: blocks until `total` samples are covered, then the
    decoder's tail; `before_block(stream)` runs before each block (e.g. to change the prompt)."""
    pieces, have = [], 0
    while have < total:
        if before_block:
            before_block(stream)
        audio = stream.next_block()[0]
        if have + audio.shape[-1] >= total:
            audio = torch.cat((audio, stream.finish()[0]), -1)
        pieces.append(audio)
        have += audio.shape[-1]
    return torch.cat(pieces, -1)[:, :total]


def banded_reference_error(s, lat: torch.Tensor, msk: torch.Tensor, groups: dict) -> tuple[float, int]:
    """A block-causal stream's last block against one banded full forward: `lat`/`msk` are every
    model-batch row's clean latents and mask since the (re-)bootstrap, `groups` the other input groups
    over those frames plus the block. Returns (largest velocity difference, denoising calls checked)
    over the calls in `s.trace`."""
    C, B, n = s.C, s.B, lat.shape[-1]
    groups = {"context": torch.cat((torch.cat((msk, torch.zeros(msk.shape[0], 1, B)), -1),
                                    torch.cat((lat, torch.zeros(lat.shape[0], lat.shape[1], B)), -1)), 1), **groups}
    worst = 0.0
    for rec in s.trace:
        x = torch.cat((torch.zeros_like(lat), rec["x"]), -1)
        with torch.no_grad():
            ref = s.model.dit(x, torch.full((x.shape[0],), rec["t"]), s.cond, groups, "block-causal",
                              context_frames=n, block_frames=B, context_chunks=s.pcfg.context_chunks,
                              first_position=1 - (n - C))[..., -B:]
        worst = max(worst, (ref - rec["v"]).abs().max().item())
    return worst, len(s.trace)
