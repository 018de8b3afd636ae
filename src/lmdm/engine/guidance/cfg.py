"""Classifier-free guidance: a branch without the text (SAO's null condition: all-zero tokens, the
same global vector)."""
from .base import Branch, register


class CFG(Branch):
    name, model_field, row, drops = "cfg_scale", "cfg_scale", "no_text", "text"
    flag, label = "--cfg", "classifier-free guidance"
    help = ("classifier-free guidance scale (default: the model's; 1 = off, >1 follows the prompt more at about "
            "half the speed)")


register(CFG())
