"""LoRA adapters on the DiT's attention and feed-forward Linears.

`LoRALinear` holds the original nn.Linear as `base` (frozen) and adds (alpha / rank) · B A x with
A random and B zero-initialised, so a freshly wrapped model computes exactly what it did before.
The base is called as a module, not through its weight, so a Linear whose `forward` was replaced
by `lmdm.nn.fast.pack_linears` keeps working (that path falls back to F.linear while autograd
records, and the adapter's own matmuls are plain). `merge_lora` folds B A into the base weight and
puts the plain Linear back, so the state dict has the original keys and loads with from_pretrained.
"""
from __future__ import annotations

import fnmatch
import math

import torch
import torch.nn.functional as F
from torch import nn

# attention (self: to_qkv, cross: to_q, to_kv; both: to_out) and SwiGLU feed-forward Linears
DEFAULT_TARGETS = ("*.self_attn.to_qkv", "*.cross_attn.to_q", "*.cross_attn.to_kv", "*.to_out",
                   "*.ff.ff.0.proj", "*.ff.ff.2")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float = 0.0):
        super().__init__()
        self.base, self.rank = base, rank
        self.scale = (alpha or rank) / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)

    # code elsewhere reads `.weight` (dtype checks, inits); it means the base weight
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lora = F.linear(F.linear(x.to(self.lora_A.dtype), self.lora_A), self.lora_B) * self.scale
        return self.base(x) + lora.to(x.dtype)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        delta = (self.lora_B.float() @ self.lora_A.float()) * self.scale
        self.base.weight.add_(delta.to(self.base.weight.dtype))
        return self.base


def add_lora(module: nn.Module, rank: int, alpha: float = 0.0, targets=DEFAULT_TARGETS) -> list[str]:
    """Wrap every nn.Linear whose qualified name matches a target pattern; returns the names."""
    names = [n for n, m in module.named_modules()
             if isinstance(m, nn.Linear) and any(fnmatch.fnmatch(n, t) for t in targets)]
    for name in names:
        parent, _, leaf = name.rpartition(".")
        owner = module.get_submodule(parent) if parent else module
        setattr(owner, leaf, LoRALinear(getattr(owner, leaf), rank, alpha))
    return names


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and restore the plain Linear (in place)."""
    for name, m in list(module.named_modules()):
        if isinstance(m, LoRALinear):
            parent, _, leaf = name.rpartition(".")
            owner = module.get_submodule(parent) if parent else module
            base = m.merged()
            base.weight.requires_grad_(True)
            if base.bias is not None:
                base.bias.requires_grad_(True)
            setattr(owner, leaf, base)
    return module
