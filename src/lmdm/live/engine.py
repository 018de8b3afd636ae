"""Engine: one generation thread serving every live session, round-robin, earliest deadline first.

Torch on a few cores gains nothing from one thread per session (they would fight over the same
cores and each block would take longer), so one thread generates all blocks. The asyncio side
never touches torch: it queues controls (`Session.submit`) and awaits `Session.outbox`, which this
thread fills through `loop.call_soon_threadsafe`.

Controls are applied between blocks, so each takes effect exactly at a block boundary; the ack
names that block and travels through the outbox ahead of it. Upstream audio travels through the
same ordered queue (as `InputAudio`), so a mode switch and the input that follows it stay in order.

Modes (see `protocol`): every mode is an option of the session's `Stream` (`lmdm.engine.stream`) or a
`DelayStream` (`lmdm.engine.delay`) around one, so the per-block loop is the same for all of them:
accompaniment feeds `Stream.push_input`, sketch feeds `Stream.set_sketch` (controls from
`lmdm.engine.sketch` at the model's latent frame rate), generative delay calls `DelayStream.process`.
"""
from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import deque

import numpy as np
import torch

from ..engine.beat import MAX_BPM, MIN_BPM
from ..errors import LMDMError
from . import protocol as P

INPUT_SILENCE_AFTER = 0.5  # realtime pace: seconds without upstream audio before it is taken as silence
MAX_CONTROLS = 32          # controls queued per session (after coalescing); the server stops reading past it
CONTROLS_PER_TURN = 4      # controls of one session applied per engine turn: a flood never delays another block
MAX_SLOTS = 8              # saved states per session
MAX_SAVED_MB = 256.0       # saved states of all sessions together (the default model's is ~2.6 MB)
# a new control of one of these types replaces a queued one of the same type when nothing queued
# after it reads or writes what it sets: the latest knob value wins, the engine applies it once
KNOBS = {"cfg", "steps", "seed", "mix", "feedback", "sketch_strength", "sketch_cfg", "control_guidance",
         "prompt_guidance", "bpm", "block", "cutoff", "sketch"}


class InputAudio:
    """Upstream audio (model channels, model rate), queued in order with the controls."""
    __slots__ = ("audio",)
    type, id = "input", None

    def __init__(self, audio: np.ndarray):
        self.audio = audio


class Session:
    """One client's stream and its settings. Fields below the lock belong to the engine thread."""

    def __init__(self, engine: "Engine", loop: asyncio.AbstractEventLoop | None, sid: int, max_queue: int = 4):
        self.engine, self.loop, self.id = engine, loop, sid
        # asyncio side awaits an asyncio.Queue; in-process users (headless, soak) read a plain Queue
        self.outbox = asyncio.Queue() if loop is not None else queue.Queue()
        self.max_queue = max_queue           # blocks generated but not yet sent: the bound on running ahead
        self.lock = threading.Lock()
        self.controls: deque = deque()
        self.pending = 0                     # controls (not input audio) in `controls` (under lock)
        self.inflight = 0                    # blocks in the outbox or being sent (under lock)
        self.closed = False
        self.input_frames = 0                # upstream audio frames accepted
        self.input_queued = 0                # samples in `controls` not yet taken by the engine (under lock)
        self.input_buffered = 0              # samples the engine holds, not yet consumed
        self.last_input = 0.0                # monotonic time of the latest upstream frame
        self._resample: _Resampler | None = None  # asyncio side
        # engine-thread state
        self.stream = None
        self.playing = False
        self.prompts: list[tuple[str, float]] = [("", 1.0)]
        self.seed, self.steps, self.cfg = 0, engine.model.config.steps, engine.model.config.cfg_scale
        self.format, self.pace, self.lead = "f32", "realtime", 1.0
        self.block_frames: int | None = None  # text mode: another block size than the model's (SetBlock)
        self.mode, self.dry, self.wet = "text", 0.0, 1.0
        self.feedback = engine.default_feedback
        self.cutoff: int | None = None        # None: the mode's default (engine.default_cutoff(mode))
        self.sketch_kernel = 1
        self.sketch_cfg = engine.model.config.sketch_cfg_scale
        self.bpm: float | None = None         # beat clock: None follows the prompt, 0 free, else fixed
        self.control_guidance = 0.0   # off live, whatever the model's offline default: it costs real time
        self.prompt_guidance = engine.model.config.prompt_guidance   # cheap (latent space): the model's own
        self.curves = None                   # raw drawn sketch controls (3, n) or None: follow the input
        self.curves_start = 0                # stream frame of curves[:, 0]
        self.delay = None                    # DelayStream in generative_delay mode (self.stream is its stream)
        self.inbuf = np.zeros((engine.channels, 0), np.float32)  # upstream audio not yet consumed
        self.in_total = 0                    # upstream samples received since the mode's input timeline began
        self.mode_blocks = 0                 # blocks generated since then
        self.stream_samples = 0              # samples the current stream's decoder has output
        self.dryline: _DryLine | None = None
        self.sketch_prev = None              # previous input block (analysis overlap)
        self.sketch_ctrl = None              # recent input controls (3, n) from frame sketch_ctrl_start
        self.sketch_ctrl_start = 0
        self.input_silence = 0               # samples of silence inserted for missing input (realtime)
        self.block = 0                       # next block index of this session: gapless across resets
        self.audio_out = 0.0                 # seconds of audio sent since play
        self.t0 = 0.0                        # wall clock of audio_out == 0 under realtime pacing
        self.compute = 0.0                   # seconds spent generating this session's blocks
        self.audio_total = 0.0
        self.slots: dict[str, dict] = {}
        self.slot_bytes: dict[str, int] = {}

    # -- asyncio side -----------------------------------------------------------------------

    def submit(self, msg) -> None:
        """Queue a control for the next block boundary. A queued control it supersedes is dropped (and
        answered with a `superseded` ack); ProtocolError when MAX_CONTROLS are already waiting."""
        with self.lock:
            if self.closed:
                return
            old = _superseded(self.controls, msg)
            if old is not None:
                self.controls.remove(old)
                self.pending -= 1
            elif self.pending >= MAX_CONTROLS:
                raise P.ProtocolError(f"too many controls waiting ({MAX_CONTROLS}): this one is dropped; "
                                      "wait for the acks before sending more")
            self.controls.append(msg)
            self.pending += 1
        if old is not None:
            self._emit(("json", {"type": "ack", "id": old.id, "cmd": old.type, "block": None, "superseded": True}))
        self.engine.wake()

    def has_room(self) -> bool:
        """Whether the server may read the next message of this client (it waits otherwise, so a
        flooding client is slowed by its own TCP window, not by the other sessions)."""
        return self.pending < MAX_CONTROLS or self.closed

    def submit_input(self, audio: np.ndarray, rate: int) -> None:
        """Upstream audio (channels, samples) at `rate` → model channels and rate → the engine queue.
        Raises ProtocolError when too much is already waiting."""
        e = self.engine
        if audio.shape[0] != e.channels:
            mono = audio.mean(axis=0, keepdims=True) if audio.shape[0] > 1 else audio
            audio = np.repeat(mono, e.channels, axis=0)
        if rate != e.sample_rate:
            if self._resample is None or self._resample.src != rate:
                self._resample = _Resampler(rate, e.sample_rate, e.channels)
            audio = self._resample(audio)
        with self.lock:
            if self.input_queued + self.input_buffered + audio.shape[1] > P.MAX_INPUT_SECONDS * e.sample_rate:
                raise P.ProtocolError(f"input overflow: more than {P.MAX_INPUT_SECONDS:g} s of upstream audio "
                                      "waiting (is the session playing?); frame dropped")
            self.input_queued += audio.shape[1]
            self.controls.append(InputAudio(np.ascontiguousarray(audio, np.float32)))
            self.input_frames += 1
            self.last_input = time.monotonic()
        e.wake()

    def sent(self) -> None:
        """The sender finished with one block: room for the next."""
        with self.lock:
            self.inflight -= 1
        self.engine.wake()

    def close(self) -> None:
        """The client went away: its queued controls and input are dropped, its saved states freed."""
        with self.lock:
            self.closed = True
            self.controls.clear()
            self.pending = self.input_queued = 0
        self.engine.remove(self)

    # -- engine side ------------------------------------------------------------------------

    def _emit(self, item) -> None:
        if self.closed:
            return
        if self.loop is None:  # in-process use (headless, soak): no event loop, a plain queue
            self.outbox.put_nowait(item)
            return
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)
        except RuntimeError:  # the loop is gone: the server is shutting down
            self.closed = True

    def ready(self, now: float) -> bool:
        if not self.playing or self.closed or self.inflight >= self.max_queue:
            return False
        if not (self.pace == "none" or self.audio_out - (now - self.t0) < self.lead):
            return False
        if self.in_total >= self.engine.input_needed(self):
            return True
        # input-clocked: wait for the upstream audio, unless it has stopped (realtime: go on with silence)
        return self.pace == "realtime" and now - self.last_input > INPUT_SILENCE_AFTER

    def slack(self, now: float) -> float:
        """Seconds of audio this session has ahead of its clock (smallest goes first)."""
        return self.audio_out - (now - self.t0) if self.pace == "realtime" else 1e9 + self.audio_out


class Engine:
    def __init__(self, model, *, max_sessions: int = 8, threads: int | None = None, max_saved_mb: float = MAX_SAVED_MB):
        self.model, self.threads = model, threads
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
        self.max_sessions = max_sessions
        self.sessions: list[Session] = []
        self._ids = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="lmdm-live-engine", daemon=True)
        self.errors = 0
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
        """Accompaniment: one block (Stream's default), but under half a block for block-causal models
        (their cache would otherwise see the input only at a bootstrap); never under the encoder's
        look-ahead. Generative delay: DelayStream's default (the smallest multiple of the block)."""
        B, need = self.block_frames, math.ceil(self.lookahead_samples / self.hop)
        if mode == "generative_delay":
            return B * max(1, math.ceil(need / B))
        if self.model.config.pattern.pattern == "block-causal":
            return min(max(need, B // 2), max(B - 1, 0)) if need < B else need
        return max(B, need)

    def input_needed(self, s: Session) -> int:
        """Upstream samples (since the mode's input timeline began) block `s.mode_blocks` needs."""
        if s.mode == "text":
            return 0
        r, n = s.mode_blocks, self.block_samples
        dry = (r + 1) * n - (0 if s.mode == "generative_delay" else self.delay_samples) if s.dry > 0 else 0
        if s.mode == "generative_delay":
            return (r + 1) * n
        if s.mode == "sketch":
            return max((r + 1) * n if s.curves is None else 0, dry)
        cutoff = s.stream.cutoff_frames if s.stream is not None else self._cutoff(s, s.mode)
        return max(0, (r * self.block_frames - cutoff) * self.hop + self.lookahead_samples, dry)

    def _cutoff(self, s: Session, mode: str) -> int:
        return self.default_cutoff(mode) if s.cutoff is None else s.cutoff

    def start(self) -> "Engine":
        self._thread.start()
        return self

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def open(self, loop: asyncio.AbstractEventLoop | None, max_queue: int = 4) -> Session:
        """A new session. `loop`: the event loop whose queue receives the output (None: a plain
        thread-safe queue, for in-process use)."""
        with self._cond:
            if len(self.sessions) >= self.max_sessions:
                raise LMDMError(f"server is full: {self.max_sessions} sessions")
            self._ids += 1
            s = Session(self, loop, self._ids, max_queue)
            self.sessions.append(s)
            return s

    def remove(self, session: Session) -> None:
        with self._cond:
            if session in self.sessions:
                self.sessions.remove(session)
                self.saved_bytes -= sum(session.slot_bytes.values())
                session.slots.clear()
                session.slot_bytes.clear()
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- the generation thread --------------------------------------------------------------

    def _run(self) -> None:
        if self.threads:  # set here: torch's intra-op thread count is per calling thread
            torch.set_num_threads(self.threads)
        while True:
            with self._cond:
                if self._stop:
                    return
            if not self._turn():
                now = time.monotonic()
                with self._cond:
                    if not self._stop:
                        self._cond.wait(timeout=self._idle_wait(list(self.sessions), now))

    def _turn(self) -> bool:
        """One turn of the generation thread: up to CONTROLS_PER_TURN controls of each session, then
        one block of the ready session with the least audio ahead of its clock. A flooding session
        therefore costs every other session at most a few controls' time per block. Returns whether
        there was anything to do (else the thread waits for a wake-up or a deadline)."""
        with self._cond:
            sessions = list(self.sessions)
        busy = False
        for s in sessions:
            busy |= self._apply_controls(s, CONTROLS_PER_TURN)
        now = time.monotonic()
        ready = [s for s in sessions if s.ready(now)]
        if not ready:
            return busy
        s = min(ready, key=lambda x: x.slack(now))
        try:
            self._generate(s)
        except Exception as e:  # a bug or a torch error must not take the other sessions down
            self.errors += 1
            s.playing = False
            s._emit(("json", {"type": "error", "message": f"generation failed, stopped: {e}"}))
        return True

    def _idle_wait(self, sessions: list[Session], now: float) -> float:
        waits = [s.audio_out - (now - s.t0) - s.lead for s in sessions
                 if s.playing and s.pace == "realtime" and s.inflight < s.max_queue]
        return max(0.001, min(waits, default=0.1))

    def _generate(self, s: Session) -> None:
        if s.stream is None:
            self._build(s)
        now = time.monotonic()
        if s.pace == "realtime" and s.audio_out < now - s.t0:
            # we fell behind (the listener has underrun and re-buffers): restart the clock from here,
            # or we would race ahead afterwards and the listener's latency would grow for good
            s.t0 = now - s.audio_out
        t = time.perf_counter()
        with torch.no_grad():
            audio = self._next_audio(s)
        dt = time.perf_counter() - t
        seconds = audio.shape[-1] / self.sample_rate
        s.compute += dt
        s.audio_total += seconds
        with s.lock:
            s.inflight += 1
        index = s.block
        s.block += 1
        s.audio_out += seconds
        s._emit(("block", index, audio))
        if index % 5 == 0:
            s._emit(("json", {"type": "status", "block": index, "rtf": s.audio_total / max(s.compute, 1e-9),
                              "block_ms": 1000 * dt, "playing": s.playing, "mode": s.mode,
                              "block_frames": s.stream.B if s.stream is not None else self.block_frames,
                              "input_frames": s.input_frames,
                              "input_buffered_ms": 1000 * s.inbuf.shape[1] / self.sample_rate,
                              "input_silence_ms": 1000 * s.input_silence / self.sample_rate,
                              "sessions": len(self.sessions)}))

    def _next_audio(self, s: Session) -> np.ndarray:
        """One block of the session's mode, mixed: wet * generated + dry * aligned input (channels, n)."""
        n = self.block_samples
        if s.mode != "text":
            missing = self.input_needed(s) - s.in_total
            if missing > 0:  # realtime, the input stopped: silence stands in for it
                self._take_input(s, np.zeros((self.channels, missing), np.float32))
                s.input_silence += missing
        if s.mode == "generative_delay":
            block = self._consume(s, n)
            wet = s.delay.process(torch.from_numpy(block)[None])[0].numpy()
        else:
            st = s.stream
            if s.mode == "accompaniment":
                block = self._consume(s, s.inbuf.shape[1])
                st.push_input(torch.from_numpy(block)[None].to(self.model.autoencoder.dtype))
            elif s.mode == "sketch":
                if s.curves is None:
                    self._sketch_from_input(s, self._consume(s, n))
                else:
                    self._consume(s, s.inbuf.shape[1])  # only the dry signal uses it
            wet = st.next_block()[0].numpy()  # batch 1 → (channels, samples)
        s.mode_blocks += 1
        out = wet * s.wet
        if s.dryline is not None and s.dry > 0:
            out = out + s.dry * s.dryline.take(s.stream_samples, wet.shape[1])
        s.stream_samples += wet.shape[1]
        return out.astype(np.float32, copy=False)

    def _consume(self, s: Session, k: int) -> np.ndarray:
        block, s.inbuf = s.inbuf[:, :k], s.inbuf[:, k:]
        with s.lock:
            s.input_buffered = s.inbuf.shape[1]
        if s.dryline is not None:
            s.dryline.push(block)
        return np.ascontiguousarray(block)

    def _take_input(self, s: Session, audio: np.ndarray) -> None:
        if s.mode == "text":
            return  # no input timeline in text mode: counted and dropped
        s.inbuf = np.concatenate((s.inbuf, audio), 1)
        s.in_total += audio.shape[1]
        with s.lock:
            s.input_buffered = s.inbuf.shape[1]

    def _sketch_from_input(self, s: Session, block: np.ndarray) -> None:
        """Controls of one input block (its analysis windows reach into the previous block) → the
        stream's sketch for this block's frames, with the recent context frames kept."""
        from ..engine.sketch import controls_from_audio
        st, B = s.stream, self.block_frames
        audio = block if s.sketch_prev is None else np.concatenate((s.sketch_prev, block), 1)
        ctrl = controls_from_audio(audio, self.sample_rate, self.hop)[:, -B:]
        s.sketch_prev = block
        if s.sketch_ctrl is None:
            s.sketch_ctrl, s.sketch_ctrl_start = ctrl, st.frame
        else:
            s.sketch_ctrl = torch.cat((s.sketch_ctrl, ctrl), 1)
            keep = st.pcfg.context_frames + B
            drop = max(0, s.sketch_ctrl.shape[1] - keep)
            s.sketch_ctrl, s.sketch_ctrl_start = s.sketch_ctrl[:, drop:], s.sketch_ctrl_start + drop
        st.set_sketch(s.sketch_ctrl, start=s.sketch_ctrl_start, kernel=s.sketch_kernel)

    def _new_stream(self, s: Session):
        # beat guidance off live, whatever the model's offline default: one more model call per step
        st = self.model.stream(s.prompts, seed=s.seed, steps=s.steps, cfg_scale=s.cfg, sketch_cfg=s.sketch_cfg,
                               control_guidance=s.control_guidance, bpm=s.bpm, prompt_guidance=s.prompt_guidance,
                               beat_cfg=1.0)
        if s.mode == "text" and s.block_frames is not None:
            st.set_block_frames(s.block_frames)
        return st

    def _new_delay(self, s: Session, cutoff: int | None = None, feedback: float | None = None):
        from ..engine.delay import DelayStream
        return DelayStream(self.model, s.prompts, wet=1.0, feedback=s.feedback if feedback is None else feedback,
                           cutoff_frames=self._cutoff(s, "generative_delay") if cutoff is None else cutoff,
                           seed=s.seed, steps=s.steps, cfg_scale=s.cfg)

    def _build(self, s: Session, delay=None) -> None:
        """A fresh stream for the session's mode (input timeline restarts at its first block)."""
        if s.mode == "generative_delay":
            s.delay = delay or self._new_delay(s)
            s.stream = s.delay.stream
        else:
            s.delay, s.stream = None, self._new_stream(s)
        s.stream_samples = 0
        self._attach(s)

    def _attach(self, s: Session) -> None:
        """Prepare `s.stream` for `s.mode` from its next block on; the mode's input timeline begins."""
        st = s.stream
        if s.mode != "generative_delay":
            s.delay = None
            st.set_accompaniment(None)
            st.set_sketch(None)
        s.mode_blocks, s.in_total, s.sketch_prev, s.sketch_ctrl = 0, s.inbuf.shape[1], None, None
        origin = st.frame * self.hop  # stream sample of input sample 0
        if s.mode == "generative_delay":
            origin = s.delay.lag_samples
        elif s.mode == "accompaniment":
            st.cutoff_frames = self._cutoff(s, "accompaniment")
            st.push_input(torch.zeros(1, self.channels, 0))  # anchors input sample 0 at this block
        elif s.mode == "sketch" and s.curves is not None:
            s.curves_start = st.frame
            st.set_sketch(s.curves, start=s.curves_start, kernel=s.sketch_kernel)
        s.dryline = None if s.mode == "text" else _DryLine(origin, self.channels)

    def _apply_controls(self, s: Session, budget: int | None = None) -> bool:
        """Apply queued controls (at most `budget` of them; input audio does not count) in order.
        Returns whether some are still waiting."""
        done = 0
        while True:
            with s.lock:
                if not s.controls or s.closed:
                    return False
                if budget is not None and done >= budget and not isinstance(s.controls[0], InputAudio):
                    return True
                msg = s.controls.popleft()
                if isinstance(msg, InputAudio):
                    s.input_queued -= msg.audio.shape[1]
                else:
                    s.pending -= 1
                    done += 1
            if isinstance(msg, InputAudio):
                self._take_input(s, msg.audio)
                continue
            try:
                self._apply(s, msg)
            except (LMDMError, ValueError) as e:
                s._emit(("json", {"type": "error", "id": msg.id, "cmd": msg.type, "message": str(e)}))
            else:
                s._emit(("json", {"type": "ack", "id": msg.id, "cmd": msg.type, "block": s.block}))

    def _apply(self, s: Session, msg) -> None:
        st = s.stream
        if isinstance(msg, P.Start):
            if msg.format:
                s.format = msg.format
            if msg.pace:
                s.pace = msg.pace
            if msg.lead:
                s.lead = msg.lead
            if msg.ahead:
                s.max_queue = msg.ahead
            for field, kind in (("prompts", P.SetPrompts), ("seed", P.SetSeed), ("steps", P.SetSteps),
                                ("cfg", P.SetCfg), ("block", P.SetBlock)):
                value = getattr(msg, field)
                if value is not None:
                    self._apply(s, _make(kind, {"cfg": "scale", "block": "frames"}.get(field, field), value))
            if not s.playing:
                s.playing, s.audio_out, s.t0 = True, 0.0, time.monotonic()
        elif isinstance(msg, P.Stop):
            s.playing = False
        elif isinstance(msg, P.SetPrompts):
            prompts = [(p.text, p.weight) for p in msg.prompts]
            if st is not None:
                st.set_prompts(prompts)
            s.prompts = prompts
        elif isinstance(msg, P.SetWeights):
            if len(msg.weights) != len(s.prompts):
                raise P.ProtocolError(f"{len(msg.weights)} weights for {len(s.prompts)} prompts")
            prompts = [(text, w) for (text, _), w in zip(s.prompts, msg.weights)]
            if st is not None:
                st.set_prompts(prompts)
            s.prompts = prompts
        elif isinstance(msg, P.SetCfg):
            if st is not None:
                st.set_cfg(msg.scale)
            s.cfg = msg.scale
        elif isinstance(msg, P.SetSteps):
            s.steps = msg.steps
            if st is not None:
                st.steps = msg.steps
        elif isinstance(msg, P.SetSeed):
            s.seed = msg.seed
            if st is not None:
                st.seed = msg.seed
        elif isinstance(msg, P.SetBlock):
            if s.mode != "text" and msg.frames != self.block_frames:
                raise P.ProtocolError(f"the block size changes in text mode only; {s.mode!r} runs on the model's "
                                      f"block of {self.block_frames} frames (its input is counted in those blocks)")
            from ..engine.generate import block_pattern
            block_pattern(self.model, msg.frames)  # raises (nothing changes) when the model cannot
            if st is not None:
                st.set_block_frames(msg.frames)
            s.block_frames = msg.frames
        elif isinstance(msg, P.SetMode):
            self._set_mode(s, msg.mode)
        elif isinstance(msg, P.SetMix):
            s.dry, s.wet = msg.dry, msg.wet
        elif isinstance(msg, P.SetFeedback):
            if s.delay is not None:
                d = s.delay
                if msg.feedback >= 1.0 and (not d.has_accompaniment or d.cutoff_frames >= d.stream.C):
                    raise P.ProtocolError("feedback 1 would cut the input off: this model sees the delay's input "
                                          "only through its context (no accompaniment input group, or cutoff "
                                          ">= the context); use feedback < 1")
                d.feedback = msg.feedback
            s.feedback = msg.feedback
        elif isinstance(msg, P.SetCutoff):
            if s.mode == "generative_delay":
                delay = self._new_delay(s, cutoff=msg.frames)  # raises (nothing changes) when invalid
                s.cutoff = msg.frames
                s.inbuf = s.inbuf[:, :0]
                self._build(s, delay)  # the lag changed: a fresh delay line
            else:
                s.cutoff = msg.frames
                if s.mode == "accompaniment" and st is not None:
                    st.cutoff_frames = msg.frames
        elif isinstance(msg, P.SetSketch):
            if "sketch" not in self.groups:
                raise P.ProtocolError(self.unsupported_reason("sketch"))
            s.curves = None if msg.curves is None else self._curves(msg)
            if s.mode == "sketch":
                if st is None:
                    self._build(s)
                elif s.curves is not None:
                    s.curves_start = st.frame
                    st.set_sketch(s.curves, start=s.curves_start, kernel=s.sketch_kernel)
                else:  # back to the input: its timeline begins at this block
                    s.inbuf = s.inbuf[:, :0]
                    self._attach(s)
        elif isinstance(msg, P.SetSketchStrength):
            from ..engine.sketch import strength_to_kernel
            s.sketch_kernel = strength_to_kernel(msg.strength)
            if s.mode == "sketch" and s.curves is not None and st is not None:
                st.set_sketch(s.curves, start=s.curves_start, kernel=s.sketch_kernel)
        elif isinstance(msg, P.SetSketchCfg):
            s.sketch_cfg = msg.scale
            if st is not None:
                st.set_sketch_cfg(msg.scale)
        elif isinstance(msg, P.SetControlGuidance):
            s.control_guidance = msg.strength
            if st is not None:
                st.set_control_guidance(msg.strength)
        elif isinstance(msg, P.SetPromptGuidance):
            if msg.strength and self.model.prompt_probe is None:
                raise P.ProtocolError("this model has no prompt probe (`lmdm train prompt-probe` adds one)")
            s.prompt_guidance = msg.strength
            if st is not None:
                st.set_prompt_guidance(msg.strength)
        elif isinstance(msg, P.SetBpm):
            if msg.bpm and "beat" not in self.model.config.dit.input_groups:
                raise P.ProtocolError("this model has no beat clock ('beat' input group): it picks its own tempo")
            if msg.bpm and msg.bpm < MIN_BPM:
                raise P.ProtocolError(f"bpm must be 0 (free), null (the prompt's) or {MIN_BPM:g}..{MAX_BPM:g}")
            s.bpm = msg.bpm
            if st is not None and s.mode != "generative_delay":
                st.set_bpm(msg.bpm)
        elif isinstance(msg, P.Reset):
            s.inbuf = s.inbuf[:, :0]
            self._build(s)  # a fresh stream (and decoder) with the current settings; input timeline restarts
        elif isinstance(msg, P.SaveState):
            if st is None:
                raise P.ProtocolError("nothing to save: the session has not generated yet")
            if s.mode == "generative_delay":
                raise P.ProtocolError("save/load is not available in generative_delay mode")
            self._save(s, msg.slot, st.state_dict())
        elif isinstance(msg, P.LoadState):
            if msg.slot not in s.slots:
                raise P.ProtocolError(f"no saved state in slot {msg.slot!r}; saved: {sorted(s.slots) or 'none'}")
            if s.mode == "generative_delay":
                raise P.ProtocolError("save/load is not available in generative_delay mode")
            if st is None:
                st = s.stream = self._new_stream(s)
            st.load_state_dict(s.slots[msg.slot])
            s.prompts, s.seed, s.steps, s.cfg = list(st.prompts), st.seed, st.steps, st.cfg_scale
            s.sketch_cfg, s.control_guidance, s.bpm = st.sketch_cfg, st.control_guidance.strength, st.bpm_mode
            s.prompt_guidance = st.prompt_guidance.strength
            s.stream_samples = max(0, st.frame * self.hop - self.delay_samples)
            if s.mode == "text":
                s.block_frames = st.B
            else:  # a state saved at another block size comes back at the model's, as input modes need
                st.set_block_frames(self.block_frames)
            if s.mode != "text":  # the saved input groups belong to the past: the input timeline restarts
                s.inbuf = s.inbuf[:, :0]
                self._attach(s)

    def _save(self, s: Session, slot: str, state: dict) -> None:
        """Keep a saved state within MAX_SLOTS per session and max_saved_bytes for the server."""
        if slot not in s.slots and len(s.slots) >= MAX_SLOTS:
            raise P.ProtocolError(f"save refused: this session already has {MAX_SLOTS} saved slots "
                                  f"({', '.join(sorted(s.slots))}); save over one of them")
        size = _nbytes(state)
        total = self.saved_bytes - s.slot_bytes.get(slot, 0) + size
        if total > self.max_saved_bytes:
            raise P.ProtocolError(f"save refused: saved states on this server would take {total / 2 ** 20:.1f} MB, "
                                  f"over its limit of {self.max_saved_bytes / 2 ** 20:.0f} MB (--max-saved-mb); "
                                  "save over an existing slot instead")
        s.slots[slot], s.slot_bytes[slot], self.saved_bytes = state, size, total

    def _set_mode(self, s: Session, mode: str) -> None:
        reason = self.unsupported_reason(mode)
        if reason:
            raise P.ProtocolError(f"{reason}; this session stays in {s.mode!r} mode "
                                  f"(supported: {', '.join(self.supported_modes())})")
        delay = self._new_delay(s) if mode == "generative_delay" else None  # raises before anything changes
        s.mode = mode
        if mode != "text":  # input modes run on the model's block size
            s.block_frames = None
            if s.stream is not None:
                s.stream.set_block_frames(self.block_frames)
        s.inbuf = s.inbuf[:, :0]  # input sent before the switch belonged to the old mode
        with s.lock:
            s.input_buffered = 0
        if delay is not None or s.stream is None:
            self._build(s, delay)
        else:
            self._attach(s)  # keep the stream (and the music so far); only its inputs change

    def _curves(self, msg) -> torch.Tensor:
        from ..engine.sketch import controls_from_curves
        rate = self.sample_rate / self.hop
        if msg.seconds is not None:
            n = math.ceil(msg.seconds * rate)
        else:
            n = max((len(c) if not c or not isinstance(c[0], tuple) else math.ceil(max(t for t, _ in c) * rate) + 1)
                    for c in msg.curves.values()) if msg.curves else 0
        if n < 1:
            raise P.ProtocolError("sketch curves are empty: give values or a duration in 'seconds'")
        return controls_from_curves({k: [list(p) if isinstance(p, tuple) else p for p in v]
                                     for k, v in msg.curves.items()}, n, rate)


def _superseded(queue: deque, msg):
    """The queued control that `msg` makes pointless, if any: the last one of the same type (for a
    save, of the same slot; prompts also replace weights), provided everything queued after it is
    independent of what `msg` sets: input audio, knobs of other types, and (for a knob) prompt or
    weight changes. start, stop, reset, mode, save and load are barriers: they read or set everything."""
    kind = msg.type
    if kind not in KNOBS and kind not in ("prompts", "weights", "save"):
        return None
    for old in reversed(queue):
        if isinstance(old, InputAudio):
            continue
        same = old.type == kind or (kind == "prompts" and old.type == "weights")
        if same and (kind != "save" or old.slot == msg.slot):
            return old
        independent = (kind != "save" and (old.type in KNOBS or (kind in KNOBS and old.type in ("prompts", "weights"))))
        if not independent:
            return None
    return None


def _nbytes(state) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_nbytes(v) for v in state)
    return 64 if state is not None else 0


def _make(kind, arg, value):
    """A control message of `kind` carrying one value (Start's optional fields reuse the setters)."""
    return kind(type=kind.model_fields["type"].annotation.__args__[0], **{arg: value})



class _DryLine:
    """The input as it lines up with the output: input sample i sits at output (stream) sample origin + i."""

    def __init__(self, origin: int, channels: int):
        self.origin, self.start = origin, 0
        self.buf = np.zeros((channels, 0), np.float32)

    def push(self, audio: np.ndarray) -> None:
        self.buf = np.concatenate((self.buf, audio), 1)

    def take(self, pos: int, n: int) -> np.ndarray:
        """Input for output samples [pos, pos + n) (zeros where there is none); older input is dropped."""
        i = pos - self.origin
        out = np.zeros((self.buf.shape[0], n), np.float32)
        lo, hi = max(i, self.start), min(i + n, self.start + self.buf.shape[1])
        if hi > lo:
            out[:, lo - i:hi - i] = self.buf[:, lo - self.start:hi - self.start]
        drop = min(max(0, i + n - self.start), self.buf.shape[1])
        self.buf, self.start = self.buf[:, drop:], self.start + drop
        return out


class _Resampler:
    """Linear interpolation that keeps its phase across frames (upstream audio at another rate)."""

    def __init__(self, src: int, dst: int, channels: int):
        self.src, self.step, self.pos = src, src / dst, 1.0  # pos: next output's position in [last | x]
        self.last = np.zeros((channels, 1), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.concatenate((self.last, x), 1)  # index 0 = the previous frame's last sample
        n = x.shape[1] - 1
        count = int(math.floor((n - self.pos) / self.step)) + 1 if self.pos <= n else 0
        t = self.pos + np.arange(count) * self.step
        grid = np.arange(n + 1)
        y = np.stack([np.interp(t, grid, c) for c in x]) if count else np.zeros((x.shape[0], 0))
        self.pos += count * self.step - n
        self.last = x[:, -1:]
        return y.astype(np.float32)
