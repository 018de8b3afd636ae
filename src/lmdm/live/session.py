"""A live session: one client's stream, its mode and settings, and each mode's work per block.

Modes (see `protocol`): every mode is an option of the session's `Stream` (`lmdm.engine.stream`) or a
`DelayStream` (`lmdm.engine.delay`) around one, so the per-block loop is the same for all of them:
accompaniment feeds `Stream.push_input`, sketch feeds `Stream.set_sketch` (controls from
`lmdm.engine.sketch` at the model's latent frame rate), generative delay calls `DelayStream.process`.

Everything here runs on the engine thread; the queue, outbox and clock it inherits from
`SessionQueue` are the scheduler's. What each control message does is in `dispatch.py`.
"""
from __future__ import annotations

import numpy as np
import torch

from . import protocol as P
from .dsp import DryLine, mix
from .scheduler import SessionQueue

MAX_SLOTS = 8              # saved states per session
MAX_SAVED_MB = 256.0       # saved states of all sessions together (the default model's is ~2.6 MB)


class Session(SessionQueue):
    """One client's stream and its settings (engine thread)."""

    def __init__(self, engine, loop, sid: int, max_queue: int = 4):
        super().__init__(engine, loop, sid, max_queue)
        config = engine.model.config
        self.stream = None
        self.prompts: list[tuple[str, float]] = [("", 1.0)]
        self.seed, self.steps, self.cfg = 0, config.steps, config.cfg_scale
        self.format = "f32"
        self.block_frames: int | None = None  # text mode: another block size than the model's (SetBlock)
        self.mode, self.dry, self.wet = "text", 0.0, 1.0
        self.feedback = engine.default_feedback
        self.cutoff: int | None = None        # None: the mode's default (engine.default_cutoff(mode))
        self.sketch_kernel = 1
        self.sketch_cfg = config.sketch_cfg_scale
        self.bpm: float | None = None         # beat clock: None follows the prompt, 0 free, else fixed
        self.control_guidance = 0.0   # off live, whatever the model's offline default: it costs real time
        self.prompt_guidance = config.prompt_guidance   # cheap (latent space): the model's own
        self.curves = None                   # raw drawn sketch controls (3, n) or None: follow the input
        self.curves_start = 0                # stream frame of curves[:, 0]
        self.delay = None                    # DelayStream in generative_delay mode (self.stream is its stream)
        self.inbuf = np.zeros((engine.channels, 0), np.float32)  # upstream audio not yet consumed
        self.in_total = 0                    # upstream samples received since the mode's input timeline began
        self.mode_blocks = 0                 # blocks generated since then
        self.stream_samples = 0              # samples the current stream's decoder has output
        self.dryline: DryLine | None = None
        self.sketch_prev = None              # previous input block (analysis overlap)
        self.sketch_ctrl = None              # recent input controls (3, n) from frame sketch_ctrl_start
        self.sketch_ctrl_start = 0
        self.input_silence = 0               # samples of silence inserted for missing input (realtime)
        self.slots: dict[str, dict] = {}
        self.slot_bytes: dict[str, int] = {}

    # -- what the scheduler asks ------------------------------------------------------------

    def has_input(self) -> bool:
        return self.in_total >= self.input_needed()

    def input_needed(self) -> int:
        """Upstream samples (since the mode's input timeline began) block `mode_blocks` needs."""
        e = self.engine
        if self.mode == "text":
            return 0
        r, n = self.mode_blocks, e.block_samples
        dry = (r + 1) * n - (0 if self.mode == "generative_delay" else e.delay_samples) if self.dry > 0 else 0
        if self.mode == "generative_delay":
            return (r + 1) * n
        if self.mode == "sketch":
            return max((r + 1) * n if self.curves is None else 0, dry)
        cutoff = self.stream.cutoff_frames if self.stream is not None else self.cutoff_for(self.mode)
        return max(0, (r * e.block_frames - cutoff) * e.hop + e.lookahead_samples, dry)

    def prepare(self) -> None:
        """Before a block: the first one builds the stream."""
        if self.stream is None:
            self.build()

    def status(self) -> dict:
        """The session's part of the periodic `status` message."""
        e = self.engine
        return {"mode": self.mode, "block_frames": self.stream.B if self.stream is not None else e.block_frames,
                "input_frames": self.input_frames,
                "input_buffered_ms": 1000 * self.inbuf.shape[1] / e.sample_rate,
                "input_silence_ms": 1000 * self.input_silence / e.sample_rate}

    # -- one block --------------------------------------------------------------------------

    def next_audio(self) -> np.ndarray:
        """One block of the session's mode, mixed: wet * generated + dry * aligned input (channels, n)."""
        e = self.engine
        n = e.block_samples
        if self.mode != "text":
            missing = self.input_needed() - self.in_total
            if missing > 0:  # realtime, the input stopped: silence stands in for it
                self.take_input(np.zeros((e.channels, missing), np.float32))
                self.input_silence += missing
        if self.mode == "generative_delay":
            block = self._consume(n)
            wet = self.delay.process(torch.from_numpy(block)[None])[0].numpy()
        else:
            st = self.stream
            if self.mode == "accompaniment":
                block = self._consume(self.inbuf.shape[1])
                st.push_input(torch.from_numpy(block)[None].to(e.model.autoencoder.dtype))
            elif self.mode == "sketch":
                if self.curves is None:
                    self._sketch_from_input(self._consume(n))
                else:
                    self._consume(self.inbuf.shape[1])  # only the dry signal uses it
            wet = st.next_block()[0].numpy()  # batch 1 → (channels, samples)
        self.mode_blocks += 1
        out = mix(wet, self.wet, self.dryline, self.dry, self.stream_samples)
        self.stream_samples += wet.shape[1]
        return out

    def take_input(self, audio: np.ndarray) -> None:
        """Upstream audio from the queue onto the mode's input timeline."""
        if self.mode == "text":
            return  # no input timeline in text mode: counted and dropped
        self.inbuf = np.concatenate((self.inbuf, audio), 1)
        self.in_total += audio.shape[1]
        with self.lock:
            self.input_buffered = self.inbuf.shape[1]

    def drop_input(self) -> None:
        """Input not yet consumed belonged to the old timeline (a reset, a new mode or cutoff)."""
        self.inbuf = self.inbuf[:, :0]

    def _consume(self, k: int) -> np.ndarray:
        block, self.inbuf = self.inbuf[:, :k], self.inbuf[:, k:]
        with self.lock:
            self.input_buffered = self.inbuf.shape[1]
        if self.dryline is not None:
            self.dryline.push(block)
        return np.ascontiguousarray(block)

    def _sketch_from_input(self, block: np.ndarray) -> None:
        """Controls of one input block (its analysis windows reach into the previous block) → the
        stream's sketch for this block's frames, with the recent context frames kept."""
        from ..engine.sketch import controls_from_audio
        e = self.engine
        st, B = self.stream, e.block_frames
        audio = block if self.sketch_prev is None else np.concatenate((self.sketch_prev, block), 1)
        ctrl = controls_from_audio(audio, e.sample_rate, e.hop)[:, -B:]
        self.sketch_prev = block
        if self.sketch_ctrl is None:
            self.sketch_ctrl, self.sketch_ctrl_start = ctrl, st.frame
        else:
            self.sketch_ctrl = torch.cat((self.sketch_ctrl, ctrl), 1)
            keep = st.pcfg.context_frames + B
            drop = max(0, self.sketch_ctrl.shape[1] - keep)
            self.sketch_ctrl, self.sketch_ctrl_start = self.sketch_ctrl[:, drop:], self.sketch_ctrl_start + drop
        st.set_sketch(self.sketch_ctrl, start=self.sketch_ctrl_start, kernel=self.sketch_kernel)

    # -- streams and modes ------------------------------------------------------------------

    def cutoff_for(self, mode: str) -> int:
        return self.engine.default_cutoff(mode) if self.cutoff is None else self.cutoff

    def new_stream(self):
        # beat guidance off live, whatever the model's offline default: one more model call per step
        st = self.engine.model.stream(self.prompts, seed=self.seed, steps=self.steps, cfg_scale=self.cfg,
                                      sketch_cfg=self.sketch_cfg, control_guidance=self.control_guidance,
                                      bpm=self.bpm, prompt_guidance=self.prompt_guidance, beat_cfg=1.0)
        if self.mode == "text" and self.block_frames is not None:
            st.set_block_frames(self.block_frames)
        return st

    def new_delay(self, cutoff: int | None = None, feedback: float | None = None):
        from ..engine.delay import DelayStream
        return DelayStream(self.engine.model, self.prompts, wet=1.0,
                           feedback=self.feedback if feedback is None else feedback,
                           cutoff_frames=self.cutoff_for("generative_delay") if cutoff is None else cutoff,
                           seed=self.seed, steps=self.steps, cfg_scale=self.cfg)

    def build(self, delay=None) -> None:
        """A fresh stream for the session's mode (input timeline restarts at its first block)."""
        if self.mode == "generative_delay":
            self.delay = delay or self.new_delay()
            self.stream = self.delay.stream
        else:
            self.delay, self.stream = None, self.new_stream()
        self.stream_samples = 0
        self.attach()

    def attach(self) -> None:
        """Prepare `stream` for `mode` from its next block on; the mode's input timeline begins."""
        e, st = self.engine, self.stream
        if self.mode != "generative_delay":
            self.delay = None
            st.set_accompaniment(None)
            st.set_sketch(None)
        self.mode_blocks, self.in_total, self.sketch_prev, self.sketch_ctrl = 0, self.inbuf.shape[1], None, None
        origin = st.frame * e.hop  # stream sample of input sample 0
        if self.mode == "generative_delay":
            origin = self.delay.lag_samples
        elif self.mode == "accompaniment":
            st.cutoff_frames = self.cutoff_for("accompaniment")
            st.push_input(torch.zeros(1, e.channels, 0))  # anchors input sample 0 at this block
        elif self.mode == "sketch" and self.curves is not None:
            self.curves_start = st.frame
            st.set_sketch(self.curves, start=self.curves_start, kernel=self.sketch_kernel)
        self.dryline = None if self.mode == "text" else DryLine(origin, e.channels)

    def set_mode(self, mode: str) -> None:
        e = self.engine
        reason = e.unsupported_reason(mode)
        if reason:
            raise P.ProtocolError(f"{reason}; this session stays in {self.mode!r} mode "
                                  f"(supported: {', '.join(e.supported_modes())})")
        delay = self.new_delay() if mode == "generative_delay" else None  # raises before anything changes
        self.mode = mode
        if mode != "text":  # input modes run on the model's block size
            self.block_frames = None
            if self.stream is not None:
                self.stream.set_block_frames(e.block_frames)
        self.drop_input()  # input sent before the switch belonged to the old mode
        with self.lock:
            self.input_buffered = 0
        if delay is not None or self.stream is None:
            self.build(delay)
        else:
            self.attach()  # keep the stream (and the music so far); only its inputs change

    # -- saved states -----------------------------------------------------------------------

    def save(self, slot: str, state: dict) -> None:
        """Keep a saved state within MAX_SLOTS per session and the server's max_saved_bytes."""
        e = self.engine
        if slot not in self.slots and len(self.slots) >= MAX_SLOTS:
            raise P.ProtocolError(f"save refused: this session already has {MAX_SLOTS} saved slots "
                                  f"({', '.join(sorted(self.slots))}); save over one of them")
        size = _nbytes(state)
        total = e.saved_bytes - self.slot_bytes.get(slot, 0) + size
        if total > e.max_saved_bytes:
            raise P.ProtocolError(f"save refused: saved states on this server would take {total / 2 ** 20:.1f} MB, "
                                  f"over its limit of {e.max_saved_bytes / 2 ** 20:.0f} MB (--max-saved-mb); "
                                  "save over an existing slot instead")
        self.slots[slot], self.slot_bytes[slot], e.saved_bytes = state, size, total


def _nbytes(state) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_nbytes(v) for v in state)
    return 64 if state is not None else 0
