"""Engine: one generation thread serving every live session, round-robin, earliest deadline first.

Torch on a few cores gains nothing from one thread per session (they would fight over the same
cores and each block would take longer), so one thread generates all blocks. The asyncio side
never touches torch: it queues controls (`Session.submit`) and awaits `Session.outbox`, which this
thread fills through `loop.call_soon_threadsafe`.

Controls are applied between blocks, so each takes effect exactly at a block boundary; the ack
names that block and travels through the outbox ahead of it.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque

import torch

from ..errors import LMDMError
from . import protocol as P


class Session:
    """One client's stream and its settings. Fields below the lock belong to the engine thread."""

    def __init__(self, engine: "Engine", loop: asyncio.AbstractEventLoop | None, sid: int, max_queue: int = 4):
        self.engine, self.loop, self.id = engine, loop, sid
        # asyncio side awaits an asyncio.Queue; in-process users (headless, soak) read a plain Queue
        self.outbox = asyncio.Queue() if loop is not None else queue.Queue()
        self.max_queue = max_queue           # blocks generated but not yet sent: the bound on running ahead
        self.lock = threading.Lock()
        self.controls: deque = deque()
        self.inflight = 0                    # blocks in the outbox or being sent (under lock)
        self.closed = False
        self.input_frames = 0                # microphone frames received (jamming is not wired yet)
        # engine-thread state
        self.stream = None
        self.playing = False
        self.prompts: list[tuple[str, float]] = [("", 1.0)]
        self.seed, self.steps, self.cfg = 0, engine.model.config.steps, 1.0
        self.format, self.pace, self.lead = "f32", "realtime", 1.0
        self.mode, self.dry, self.wet = "text", 0.0, 1.0
        self.block = 0                       # next block index of this session: gapless across resets
        self.audio_out = 0.0                 # seconds of audio sent since play
        self.t0 = 0.0                        # wall clock of audio_out == 0 under realtime pacing
        self.compute = 0.0                   # seconds spent generating this session's blocks
        self.audio_total = 0.0
        self.slots: dict[str, dict] = {}

    # -- asyncio side -----------------------------------------------------------------------

    def submit(self, msg) -> None:
        with self.lock:
            self.controls.append(msg)
        self.engine.wake()

    def sent(self) -> None:
        """The sender finished with one block: room for the next."""
        with self.lock:
            self.inflight -= 1
        self.engine.wake()

    def close(self) -> None:
        self.closed = True
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
        return self.pace == "none" or self.audio_out - (now - self.t0) < self.lead

    def slack(self, now: float) -> float:
        """Seconds of audio this session has ahead of its clock (smallest goes first)."""
        return self.audio_out - (now - self.t0) if self.pace == "realtime" else 1e9 + self.audio_out


class Engine:
    def __init__(self, model, *, max_sessions: int = 8, threads: int | None = None):
        self.model, self.threads = model, threads
        self.sample_rate = model.sample_rate
        self.channels = model.autoencoder.config.audio_channels if model.autoencoder else 0
        if model.autoencoder is None:
            raise LMDMError("lmdm live needs a model with an autoencoder (audio out); this one has none")
        pattern = model.config.pattern
        self.block_samples = pattern.block_frames * model.config.downsampling_ratio
        self.delay_samples = model.autoencoder.config.decoder_delay_samples
        self.max_sessions = max_sessions
        self.sessions: list[Session] = []
        self._ids = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="lmdm-live-engine", daemon=True)
        self.errors = 0

    @property
    def block_seconds(self) -> float:
        return self.block_samples / self.sample_rate

    def info(self) -> dict:
        """The `hello` message: what a client needs to know before playing."""
        p = self.model.config.pattern
        return {"type": "hello", "protocol": P.PROTOCOL_VERSION, "sample_rate": self.sample_rate,
                "channels": self.channels, "block_samples": self.block_samples, "block_frames": p.block_frames,
                "block_seconds": self.block_seconds, "decoder_delay_samples": self.delay_samples,
                "pattern": p.pattern, "default_steps": self.model.config.steps, "modes": list(P.MODES),
                "implemented_modes": list(P.IMPLEMENTED_MODES), "max_input_bytes": P.MAX_INPUT_BYTES}

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
                sessions = list(self.sessions)
            for s in sessions:
                self._apply_controls(s)
            now = time.monotonic()
            ready = [s for s in sessions if s.ready(now)]
            if not ready:
                with self._cond:
                    if not self._stop:
                        self._cond.wait(timeout=self._idle_wait(sessions, now))
                continue
            s = min(ready, key=lambda x: x.slack(now))
            try:
                self._generate(s)
            except Exception as e:  # a bug or a torch error must not take the other sessions down
                self.errors += 1
                s.playing = False
                s._emit(("json", {"type": "error", "message": f"generation failed, stopped: {e}"}))

    def _idle_wait(self, sessions: list[Session], now: float) -> float:
        waits = [s.audio_out - (now - s.t0) - s.lead for s in sessions
                 if s.playing and s.pace == "realtime" and s.inflight < s.max_queue]
        return max(0.001, min(waits, default=0.1))

    def _generate(self, s: Session) -> None:
        if s.stream is None:
            s.stream = self._new_stream(s)
        now = time.monotonic()
        if s.pace == "realtime" and s.audio_out < now - s.t0:
            # we fell behind (the listener has underrun and re-buffers): restart the clock from here,
            # or we would race ahead afterwards and the listener's latency would grow for good
            s.t0 = now - s.audio_out
        t = time.perf_counter()
        with torch.no_grad():
            audio = s.stream.next_block()[0].numpy() * s.wet  # batch 1 → (channels, samples)
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
                              "block_ms": 1000 * dt, "playing": s.playing, "input_frames": s.input_frames,
                              "sessions": len(self.sessions)}))

    def _new_stream(self, s: Session):
        return self.model.stream(s.prompts, seed=s.seed, steps=s.steps, cfg_scale=s.cfg)

    def _apply_controls(self, s: Session) -> None:
        while True:
            with s.lock:
                if not s.controls:
                    return
                msg = s.controls.popleft()
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
                                ("cfg", P.SetCfg)):
                value = getattr(msg, field)
                if value is not None:
                    self._apply(s, _make(kind, {"cfg": "scale"}.get(field, field), value))
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
        elif isinstance(msg, P.SetMode):
            s.mode = msg.mode  # only implemented modes get past parse_control
        elif isinstance(msg, P.SetMix):
            s.dry, s.wet = msg.dry, msg.wet
        elif isinstance(msg, P.Reset):
            s.stream = None  # a fresh stream (and decoder) at the next block, with the current settings
        elif isinstance(msg, P.SaveState):
            if st is None:
                raise P.ProtocolError("nothing to save: the session has not generated yet")
            s.slots[msg.slot] = st.state_dict()
        elif isinstance(msg, P.LoadState):
            if msg.slot not in s.slots:
                raise P.ProtocolError(f"no saved state in slot {msg.slot!r}; saved: {sorted(s.slots) or 'none'}")
            if st is None:
                st = s.stream = self._new_stream(s)
            st.load_state_dict(s.slots[msg.slot])
            s.prompts, s.seed, s.steps, s.cfg = list(st.prompts), st.seed, st.steps, st.cfg_scale


def _make(kind, arg, value):
    """A control message of `kind` carrying one value (Start's optional fields reuse the setters)."""
    return kind(type=kind.model_fields["type"].annotation.__args__[0], **{arg: value})

