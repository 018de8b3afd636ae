"""Engine: the live server's model side — the model's geometry, the modes it supports, the `hello`
message — on top of the scheduler's one generation thread.

The parts, each in its own module:
- `scheduler.py`: the generation thread serving every session (round-robin, earliest deadline
  first), the control queues, backpressure and the outbox;
- `session.py`: one client's stream, mode and settings, and each mode's work per block;
- `dispatch.py`: what each control message does (a table of small handlers);
- `dsp.py`: the audio arithmetic (dry line, dry/wet mix, resampling, input cutoff).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import LMDMError
from . import protocol as P
from .dispatch import apply
from .dsp import default_cutoff
from .scheduler import Scheduler
from .session import MAX_SAVED_MB, Session


class Engine(Scheduler):
    """A model served live: `open` a session per client, `start` the generation thread."""

    def __init__(self, model, *, max_sessions: int = 8, threads: int | None = None, max_saved_mb: float = MAX_SAVED_MB):
        super().__init__(max_sessions, threads)
        self.model = model
        self.sample_rate = model.sample_rate
        self.channels = model.autoencoder.config.audio_channels if model.autoencoder else 0
        if model.autoencoder is None:
            raise LMDMError("lmdm live needs a model with an autoencoder (audio out); this one has none")
        pattern = model.config.pattern
        self.hop = model.autoencoder.downsampling_ratio
        self.block_frames = pattern.block_frames
        self.block_samples = pattern.block_frames * self.hop
        self.delay_samples = model.autoencoder.config.decoder_delay_samples
        self.lookahead_samples = model.autoencoder.config.encoder_lookahead_samples
        self.groups = set(model.config.dit.input_groups)
        # generative delay: through the context (feedback < 1) unless the accompaniment route can see the input
        self.default_feedback = 0.5
        self.max_saved_bytes = int(max_saved_mb * 2 ** 20)
        self.saved_bytes = 0                 # saved states of every session (engine thread)

    @property
    def block_seconds(self) -> float:
        return self.block_samples / self.sample_rate

    def info(self) -> dict:
        """The `hello` message: what a client needs to know before playing."""
        p = self.model.config.pattern
        supported = self.supported_modes()
        delay_cutoff = self.default_cutoff("generative_delay")
        return {"type": "hello", "protocol": P.PROTOCOL_VERSION, "sample_rate": self.sample_rate,
                "channels": self.channels, "block_samples": self.block_samples, "block_frames": p.block_frames,
                "block_seconds": self.block_seconds, "decoder_delay_samples": self.delay_samples,
                "pattern": p.pattern, "default_steps": self.model.config.steps,
                "default_sketch_cfg": self.model.config.sketch_cfg_scale,
                "default_control_guidance": 0.0, "modes": list(P.MODES),
                "prompt_probe": self.model.prompt_probe is not None,
                "default_prompt_guidance": self.model.config.prompt_guidance,
                "beat_clock": "beat" in self.model.config.dit.input_groups,
                "supported_modes": supported, "implemented_modes": supported,
                "unsupported_modes": {m: self.unsupported_reason(m) for m in P.MODES if m not in supported},
                "latent_hop": self.hop, "encoder_lookahead_samples": self.lookahead_samples,
                "cutoff_frames": self.default_cutoff("accompaniment"), "delay_cutoff_frames": delay_cutoff,
                "delay_lag_samples": (1 + delay_cutoff // p.block_frames) * self.block_samples,
                "default_feedback": self.default_feedback, "max_input_bytes": P.MAX_INPUT_BYTES,
                "max_input_seconds": P.MAX_INPUT_SECONDS}

    # -- modes ------------------------------------------------------------------------------

    def unsupported_reason(self, mode: str) -> str | None:
        if mode in ("sketch", "accompaniment") and mode not in self.groups:
            return (f"this model has no {mode!r} input group (dit.input_groups: {sorted(self.groups)}), "
                    f"so it cannot do {mode} mode")
        return None

    def supported_modes(self) -> list[str]:
        return [m for m in P.MODES if self.unsupported_reason(m) is None]

    def default_cutoff(self, mode: str) -> int:
        """The mode's input cutoff in latent frames (`dsp.default_cutoff`) for this model."""
        return default_cutoff(mode, self.block_frames, math.ceil(self.lookahead_samples / self.hop),
                              self.model.config.pattern.pattern == "block-causal")

    # -- what the scheduler asks of the engine ----------------------------------------------

    def _new_session(self, loop, sid: int, max_queue: int) -> Session:
        return Session(self, loop, sid, max_queue)

    def _forget(self, session: Session) -> None:
        self.saved_bytes -= sum(session.slot_bytes.values())
        session.slots.clear()
        session.slot_bytes.clear()

    def _next_audio(self, s: Session) -> np.ndarray:
        return s.next_audio()  # one hook on the engine: a test can wrap it to stall or count blocks

    def _apply(self, s: Session, msg) -> None:
        apply(s, msg)
