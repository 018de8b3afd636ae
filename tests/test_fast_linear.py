"""Prepacked oneDNN linears (lmdm.nn.fast): same numbers as F.linear, and no crash on CPUs whose
oneDNN has no bf16 kernels (AVX2-only: the packed path raises there, so bf16 must take F.linear)."""
import torch
import torch.nn.functional as F
from torch import nn

from lmdm.nn import fast


def _linear(dtype):
    torch.manual_seed(0)
    return nn.Linear(64, 96).to(dtype), torch.randn(3, 49, 64).to(dtype)


def test_packed_fp32_matches_f_linear_and_repacks_after_an_update():
    layer, x = _linear(torch.float32)
    fast.pack_linears(layer)
    with torch.no_grad():
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
        layer.weight.add_(1.0)                          # in place, as an optimizer step: must not run stale
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-4)


def test_bf16_without_native_kernels_falls_back_to_f_linear(monkeypatch):
    layer, x = _linear(torch.bfloat16)
    fast.pack_linears(layer)
    monkeypatch.setattr(fast, "_bf16_supported", lambda: False)
    with torch.no_grad():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert not hasattr(layer, "_lmdm_packed")          # never reached oneDNN's bf16 reorder
