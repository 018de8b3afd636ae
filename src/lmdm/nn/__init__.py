"""Layers with no LMDM policy: attention with rotary and q/k norm, the transformer block."""
from .attention import Attention, FeedForward, LayerNorm, RotaryEmbedding, TransformerBlock, apply_rotary

__all__ = ["Attention", "FeedForward", "LayerNorm", "RotaryEmbedding", "TransformerBlock", "apply_rotary"]
