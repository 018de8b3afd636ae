"""Classifier-free guidance: a branch without the text (SAO's null condition: all-zero tokens, the
same global vector)."""
from .base import Branch, register


class CFG(Branch):
    name, model_field, row, drops = "cfg_scale", "cfg_scale", "no_text", "text"


register(CFG())
