"""Cached streaming equals the full masked forward, for every denoising step of many blocks."""
import pytest
import torch

from conftest import tiny_model

TOL = 1e-5


def context_group(latents, mask, n_target):
    b, io, _ = latents.shape
    lat = torch.cat((latents, torch.zeros(b, io, n_target)), -1)
    m = torch.cat((mask, torch.zeros(b, 1, n_target)), -1)
    return {"context": torch.cat((m, lat), 1)}


def doubled(s, x):
    return torch.cat((x, x)) if s.guided else x


def n_blocks(model):
    """3 × the window length, in blocks, plus one."""
    p = model.config.pattern
    return 3 * (p.window_frames // p.block_frames) + 1


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_enc_dec_cache_equals_full_window_forward(cfg_scale):
    model = tiny_model("enc-dec")
    s = model.stream("warm piano", seed=3, cfg_scale=cfg_scale)
    s.trace = []
    dit, C, B = model.dit, s.C, s.B
    worst = 0.0
    for block in range(n_blocks(model)):
        if block == 6:
            s.set_prompts([("dub techno", 1.0), ("warm piano", 0.5)])
        hist, mask = doubled(s, s.history.clone()), doubled(s, s.history_mask.clone())
        s.trace.clear()
        s.next_latents()
        assert len(s.trace) == s.steps
        for rec in s.trace:
            x = torch.cat((torch.zeros_like(hist), rec["x"]), -1)
            t = torch.full((x.shape[0],), rec["t"])
            with torch.no_grad():
                ref = dit(x, t, s.cond, context_group(hist, mask, B), "enc-dec", context_frames=C)[..., C:]
            worst = max(worst, (ref - rec["v"]).abs().max().item())
    assert worst < TOL, worst


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_block_causal_cache_equals_one_banded_forward_over_the_stream(cfg_scale):
    """Reference: ONE forward over everything since the last bootstrap, banded mask, T at the
    target's window offset. Includes a dominant prompt change (re-bootstrap) midway."""
    model = tiny_model("block-causal")
    s = model.stream("warm piano", seed=5, cfg_scale=cfg_scale)
    s.trace = []
    dit, C, B, w = model.dit, s.C, s.B, s.pcfg.context_chunks
    worst, stream_lat, stream_mask, checked, longest = 0.0, None, None, 0, 0
    for block in range(n_blocks(model) + 5):
        if block == n_blocks(model):
            s.set_prompts([("dub techno", 1.0), ("warm piano", 0.5)])  # dominant change
            assert s.needs_bootstrap
        if s.needs_bootstrap or stream_lat is None:
            stream_lat, stream_mask = doubled(s, s.history.clone()), doubled(s, s.history_mask.clone())
        s.trace.clear()
        out = s.next_latents()
        n_ctx = stream_lat.shape[-1]
        for rec in s.trace:
            x = torch.cat((torch.zeros_like(stream_lat), rec["x"]), -1)
            t = torch.full((x.shape[0],), rec["t"])
            with torch.no_grad():
                ref = dit(x, t, s.cond, context_group(stream_lat, stream_mask, B), "block-causal",
                          context_frames=n_ctx, block_frames=B, context_chunks=w,
                          first_position=1 - (n_ctx - C))[..., -B:]
            worst = max(worst, (ref - rec["v"]).abs().max().item())
            checked += 1
        stream_lat = torch.cat((stream_lat, doubled(s, out)), -1)
        stream_mask = torch.cat((stream_mask, torch.ones(stream_mask.shape[0], 1, B)), -1)
        longest = max(longest, stream_lat.shape[-1])
    assert checked == (n_blocks(model) + 5) * s.steps
    assert longest > 3 * (C + B)  # far past the first slides of the window
    assert worst < TOL, worst


def test_fresh_window_is_not_the_block_causal_reference():
    """Once the window has slid, a fresh forward over just the window differs from the cache
    (the oldest chunk's history is truncated there) — so the banded reference above is needed."""
    model = tiny_model("block-causal")
    s = model.stream("x", seed=0)
    s.trace = []
    for _ in range(6):
        hist, mask = s.history.clone(), s.history_mask.clone()
        s.trace.clear()
        s.next_latents()
    rec = s.trace[0]
    x = torch.cat((torch.zeros_like(hist), rec["x"]), -1)
    with torch.no_grad():
        ref = model.dit(x, torch.full((1,), rec["t"]), s.cond, context_group(hist, mask, s.B), "block-causal",
                        context_frames=s.C, block_frames=s.B, context_chunks=s.pcfg.context_chunks)[..., -s.B:]
    assert (ref - rec["v"]).abs().max() > 1e-4


def test_weight_only_prompt_change_keeps_cache_and_changes_target_at_once():
    model = tiny_model("block-causal")
    a = model.stream([("lo-fi piano", 1.0), ("dub techno", 0.3)], seed=1)
    b = model.stream([("lo-fi piano", 1.0), ("dub techno", 0.3)], seed=1)
    for _ in range(4):
        a.next_latents(), b.next_latents()
    b.set_prompts([("lo-fi piano", 1.0), ("dub techno", 0.9)])
    assert not b.needs_bootstrap
    assert not torch.equal(a.next_latents(), b.next_latents())


def test_bidirectional_timestep_token_first_equals_last():
    """The LMDM move of T to the end (rotary position 0) changes nothing under full attention."""
    model = tiny_model("bidirectional")
    dit = model.dit
    cond = dit.condition(torch.randn(2, 5, 32))
    x, t = torch.randn(2, 8, 10), torch.tensor([0.3, 0.9])
    with torch.no_grad():
        first = dit(x, t, cond)
        h = torch.cat((dit.embed_frames(x), dit.timestep_token(t, cond)), 1)
        pos = torch.cat((torch.arange(1, 11), torch.zeros(1, dtype=torch.long)))
        last = dit.unembed(dit.run(h, pos, cond)[0][:, :10])
    assert (first - last).abs().max() < TOL


def test_block_causal_mask_is_causal():
    model = tiny_model("block-causal")
    dit, B, w = model.dit, 4, 3
    n = 6 * B
    ctx = torch.randn(1, 9, n, requires_grad=True)
    x = torch.randn(1, 8, n)
    cond = dit.condition(torch.randn(1, 5, 32))
    out = dit(x, torch.tensor([0.5]), cond, {"context": ctx}, "block-causal", context_frames=5 * B,
              block_frames=B, context_chunks=w)
    for j in range(5):
        ctx.grad = None
        out[..., j * B:(j + 1) * B].sum().backward(retain_graph=True)
        g = ctx.grad.abs().sum(dim=(0, 1))
        assert torch.all(g[(j + 1) * B:] == 0), f"chunk {j} depends on later chunks"
        assert g[j * B:(j + 1) * B].sum() > 0
        if j >= 1:
            assert g[(j - 1) * B: j * B].sum() > 0  # and it does see its predecessor
