"""int8 weights for CPU inference: dynamic quantization of linear layers.

On CPUs without native bf16 (AVX2 only), emulated bf16 is ~5x slower than fp32, and int8 is
the cheaper arithmetic: weights are stored int8 per output channel, each call quantizes its
activations on the fly (fbgemm / x86 engine) and accumulates in int32. Inference only: quantized
layers have no autograd, so train on the float model and quantize a copy. The speed and the
quality cost are measured, not assumed: `lmdm bench --dtype fp32 int8` times both side by side,
and tests/test_quant.py bounds the output difference on a tiny model.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_linears_int8(module: nn.Module) -> nn.Module:
    """Replace every float nn.Linear under `module` (in place) by a dynamically quantized one with
    per-channel int8 weights. Returns the module."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    if any(p.dtype != torch.float32 for m in module.modules() if isinstance(m, nn.Linear) for p in m.parameters()):
        raise TypeError("int8 quantization starts from an fp32 model")
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices: the kernels are what we use
        warnings.simplefilter("ignore")
        quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return module


def is_quantized(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    return any(isinstance(m, DynamicLinear) for m in module.modules())
