"""An independent, functional re-statement of stable-audio-tools' forward passes, written from
its source (models/dit.py DiffusionTransformer._forward, models/transformer.py
ContinuousTransformer / TransformerBlock / Attention / RotaryEmbedding / GLU / LayerNorm,
models/conditioners.py NumberConditioner, models/embedders NumberEmbedder) for testing only.

It reads raw SAO-keyed tensors (`model.model.*`, `conditioner.conditioners.seconds_total.*`) and
shares no code with lmdm: plain matmuls, an explicit softmax, its own rotary, so a wrong name,
order, norm, rotary layout or token placement in lmdm shows up as a mismatch.
"""
import math

import torch
import torch.nn.functional as F


def number_conditioner(sd, seconds, max_val=256.0):
    p = "conditioner.conditioners.seconds_total.embedder.embedding."
    x = (torch.as_tensor(seconds, dtype=torch.float32).clamp(0, max_val) - 0) / (max_val - 0)
    x = x[:, None]
    freqs = x * sd[p + "0.weights"][None, :] * 2 * math.pi
    fourier = torch.cat((x, freqs.sin(), freqs.cos()), dim=-1)
    return (fourier @ sd[p + "1.weight"].T + sd[p + "1.bias"])[:, None, :]  # (B, 1, dim)


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _rotary(t, freqs):
    rot = freqs.shape[-1]
    a, rest = t[..., :rot], t[..., rot:]
    half = rot // 2
    rotated = torch.cat((-a[..., half:], a[..., :half]), dim=-1)
    return torch.cat((a * freqs.cos() + rotated * freqs.sin(), rest), dim=-1)


def _attention(q, k, v):
    w = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return w.softmax(-1) @ v


def dit_forward(sd, x, t, cross_cond, global_cond, heads):
    """SAO DiT velocity for latents x (B, C, T), t (B,), cross_cond (B, N, cond_dim), global (B, dim)."""
    def W(k):
        return sd["model.model." + k]

    def mlp(v, name, bias):
        h = v @ W(name + ".0.weight").T + (W(name + ".0.bias") if bias else 0)
        return F.silu(h) @ W(name + ".2.weight").T + (W(name + ".2.bias") if bias else 0)

    ctx = mlp(cross_cond, "to_cond_embed", False)
    f = 2 * math.pi * t[:, None] @ W("timestep_features.weight").T
    token = mlp(torch.cat((f.cos(), f.sin()), -1), "to_timestep_embed", True)
    if global_cond is not None:
        token = mlp(global_cond, "to_global_embed", False) + token
    x = torch.einsum("oi,bit->bot", W("preprocess_conv.weight")[..., 0], x) + x
    h = torch.cat((token[:, None, :], x.transpose(1, 2) @ W("transformer.project_in.weight").T), 1)
    b, n, d = h.shape
    dh = d // heads
    inv = W("transformer.rotary_pos_emb.inv_freq")
    freqs = torch.arange(n, dtype=torch.float32)[:, None] * inv[None, :]
    freqs = torch.cat((freqs, freqs), -1)

    def split(v, nh):
        return v.reshape(v.shape[0], v.shape[1], nh, dh).permute(0, 2, 1, 3)

    def merge(v):
        return v.permute(0, 2, 1, 3).reshape(b, n, d)

    i = 0
    while f"model.model.transformer.layers.{i}.pre_norm.gamma" in sd:
        L = f"transformer.layers.{i}."
        hn = _ln(h, W(L + "pre_norm.gamma"), W(L + "pre_norm.beta"), 1e-5)
        q, k, v = (hn @ W(L + "self_attn.to_qkv.weight").T).chunk(3, -1)
        q = _ln(split(q, heads), W(L + "self_attn.q_norm.weight"), W(L + "self_attn.q_norm.bias"), 1e-6)
        k = _ln(split(k, heads), W(L + "self_attn.k_norm.weight"), W(L + "self_attn.k_norm.bias"), 1e-6)
        h = h + merge(_attention(_rotary(q, freqs), _rotary(k, freqs), split(v, heads))) @ W(L + "self_attn.to_out.weight").T
        hn = _ln(h, W(L + "cross_attend_norm.gamma"), W(L + "cross_attend_norm.beta"), 1e-5)
        q = _ln(split(hn @ W(L + "cross_attn.to_q.weight").T, heads), W(L + "cross_attn.q_norm.weight"),
                W(L + "cross_attn.q_norm.bias"), 1e-6)
        ck, cv = (ctx @ W(L + "cross_attn.to_kv.weight").T).chunk(2, -1)
        kv_heads = ck.shape[-1] // dh
        ck = _ln(split(ck, kv_heads), W(L + "cross_attn.k_norm.weight"), W(L + "cross_attn.k_norm.bias"), 1e-6)
        cv = split(cv, kv_heads)
        ck, cv = ck.repeat_interleave(heads // kv_heads, 1), cv.repeat_interleave(heads // kv_heads, 1)
        h = h + merge(_attention(q, ck, cv)) @ W(L + "cross_attn.to_out.weight").T
        hn = _ln(h, W(L + "ff_norm.gamma"), W(L + "ff_norm.beta"), 1e-5)
        a, gate = (hn @ W(L + "ff.ff.0.proj.weight").T + W(L + "ff.ff.0.proj.bias")).chunk(2, -1)
        h = h + (a * F.silu(gate)) @ W(L + "ff.ff.2.weight").T + W(L + "ff.ff.2.bias")
        i += 1
    out = (h @ W("transformer.project_out.weight").T).transpose(1, 2)[:, :, 1:]
    return torch.einsum("oi,bit->bot", W("postprocess_conv.weight")[..., 0], out) + out
