"""int8 weights (`LiveMusicModel.quantize_int8`, `lmdm.nn.quant`): the quantized model follows the
float one within a stated tolerance, streams like it, and is refused where it cannot work."""
import copy

import pytest
import torch

from conftest import tiny_model
from test_stream_equivalence import context_group
from lmdm.nn.quant import is_quantized, quantize_linears_int8

# relative RMS difference int8 vs fp32 allowed on the tiny model (width 64, randomized weights, the
# hardest case: few channels per activation scale): one DiT forward, measured 3.4-4.5 % over seeds 0-2,
# and a streamed block after 8 ping-pong steps with the context fed back, measured up to 8.6 % over 6 blocks
FORWARD_TOL, STREAM_TOL, CACHE_TOL = 0.08, 0.15, 0.25


def _rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def test_int8_forward_within_tolerance_of_fp32():
    torch.use_deterministic_algorithms(False)   # quantized kernels have no deterministic flag; they are
    ref = tiny_model()                          # deterministic on one thread anyway
    q = copy.deepcopy(ref).quantize_int8()
    assert is_quantized(q.dit) and not is_quantized(ref.dit)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 16, generator=gen)
    t = torch.tensor([0.9, 0.3])
    cond = ref.dit.condition(ref.encode_prompts("a prompt")[0])
    with torch.no_grad():
        v_ref = ref.dit(x, t, cond, pattern="bidirectional")
        v_q = q.dit(x, t, q.dit.condition(q.encode_prompts("a prompt")[0]), pattern="bidirectional")
    err = _rel_rms(v_q, v_ref)
    assert 0 < err < FORWARD_TOL, err   # > 0: the quantized path really ran


def test_int8_stream_follows_fp32_stream():
    torch.use_deterministic_algorithms(False)
    ref = tiny_model()
    q = copy.deepcopy(ref).quantize_int8()
    a, b = ref.stream("a prompt", seed=3), q.stream("a prompt", seed=3)
    for _ in range(6):
        la, lb = a.next_latents(), b.next_latents()
        assert _rel_rms(lb, la) < STREAM_TOL


def test_int8_cached_stream_follows_its_own_full_forward():
    """The block-causal cache under int8 against one banded forward over the stream of the same int8
    model: not bit-exact as in float (each call quantizes its own activations, 7-bit on x86 (fbgemm's
    reduce_range), with one scale for the tokens it holds, so the cached step and the long forward round
    differently), but bounded at every denoising step: measured worst 16 % relative RMS over 6 blocks."""
    torch.use_deterministic_algorithms(False)
    model = copy.deepcopy(tiny_model()).quantize_int8()
    s = model.stream("warm piano", seed=5)
    s.trace = []
    C, B, w = s.C, s.B, s.pcfg.context_chunks
    lat, mask = s.history.clone(), s.history_mask.clone()
    worst = 0.0
    for _ in range(6):
        s.trace.clear()
        out = s.next_latents()
        n_ctx = lat.shape[-1]
        for rec in s.trace:
            x = torch.cat((torch.zeros_like(lat), rec["x"]), -1)
            t = torch.full((x.shape[0],), rec["t"])
            with torch.no_grad():
                ref = model.dit(x, t, s.cond, context_group(lat, mask, B), "block-causal", context_frames=n_ctx,
                                block_frames=B, context_chunks=w, first_position=1 - (n_ctx - C))[..., -B:]
            worst = max(worst, _rel_rms(rec["v"], ref))
        lat, mask = torch.cat((lat, out), -1), torch.cat((mask, torch.ones(1, 1, B)), -1)
    assert worst < CACHE_TOL, worst


def test_quantize_refuses_a_bf16_model():
    with pytest.raises(TypeError, match="fp32"):
        quantize_linears_int8(torch.nn.Linear(4, 4).to(torch.bfloat16))
