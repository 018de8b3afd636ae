"""Sketch guidance: a branch without the sketch group, while a sketch is set (how much harder than
trained the output follows the sketch)."""
from .base import Branch, register


class SketchCFG(Branch):
    name, model_field, row, drops = "sketch_cfg", "sketch_cfg_scale", "no_sketch", "sketch"
    metavar, label = "S", "sketch guidance"
    help = ("guidance on the sketch: each step also runs the model without the sketch and pushes the output S times "
            "as far towards following it (1 = off; costs one more model call per step). Default: the model's "
            "sketch_cfg_scale")

    def applies(self, stream) -> bool:
        return stream.sketch is not None


register(SketchCFG())
