"""Beat guidance: a branch without the beat clock, while the clock runs, on the first `steps`
denoising steps only (where the rhythm is laid down; 0 = every step). It holds the tempo against
prompt guidance, which can pull a piece off the clock (default model card, beat guidance). Its rows
come last in the batch, so steps after the first `steps` leave them out (`Stream.active_rows`)."""
from .base import Branch, register


class BeatCFG(Branch):
    name, model_field, steps_field, row, drops = "beat_cfg", "beat_cfg_scale", "beat_cfg_steps", "no_beat", "beat"

    def applies(self, stream) -> bool:
        return stream.beat is not None and stream.beat.bpm is not None   # from the next block on


register(BeatCFG())
