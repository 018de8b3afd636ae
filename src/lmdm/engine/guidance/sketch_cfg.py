"""Sketch guidance: a branch without the sketch group, while a sketch is set (how much harder than
trained the output follows the sketch)."""
from .base import Branch, register


class SketchCFG(Branch):
    name, model_field, row, drops = "sketch_cfg", "sketch_cfg_scale", "no_sketch", "sketch"

    def applies(self, stream) -> bool:
        return stream.sketch is not None


register(SketchCFG())
