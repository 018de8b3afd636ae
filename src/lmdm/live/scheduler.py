"""The scheduler: one generation thread serving every live session, round-robin, earliest deadline first.

Torch on a few cores gains nothing from one thread per session (they would fight over the same
cores and each block would take longer), so one thread generates all blocks. The asyncio side
never touches torch: it queues controls (`SessionQueue.submit`) and awaits `SessionQueue.outbox`,
which this thread fills through `loop.call_soon_threadsafe`.

Controls are applied between blocks, so each takes effect exactly at a block boundary; the ack
names that block and travels through the outbox ahead of it. Upstream audio travels through the
same ordered queue (as `InputAudio`), so a mode switch and the input that follows it stay in order.

This module knows queues, clocks and deadlines, not music: what a block is and what a control
does belong to the session (`session.py`, `dispatch.py`) and the engine that wires them (`engine.py`).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque

import numpy as np
import torch

from ..errors import LMDMError
from . import protocol as P
from .dsp import Resampler, match_channels

INPUT_SILENCE_AFTER = 0.5  # realtime pace: seconds without upstream audio before it is taken as silence
MAX_CONTROLS = 32          # controls queued per session (after coalescing); the server stops reading past it
CONTROLS_PER_TURN = 4      # controls of one session applied per engine turn: a flood never delays another block
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


class SessionQueue:
    """The scheduler's half of a session: its control queue (filled by the asyncio side), its outbox
    and its clock. Fields under the lock are shared with the asyncio side; the clock belongs to the
    engine thread. `Session` adds the music."""

    def __init__(self, engine: "Scheduler", loop: asyncio.AbstractEventLoop | None, sid: int, max_queue: int = 4):
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
        self._resample: Resampler | None = None  # asyncio side
        # the clock (engine thread)
        self.playing = False
        self.pace, self.lead = "realtime", 1.0
        self.block = 0                       # next block index of this session: gapless across resets
        self.audio_out = 0.0                 # seconds of audio sent since play
        self.t0 = 0.0                        # wall clock of audio_out == 0 under realtime pacing
        self.compute = 0.0                   # seconds spent generating this session's blocks
        self.audio_total = 0.0

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
        audio = match_channels(audio, e.channels)
        if rate != e.sample_rate:
            if self._resample is None or self._resample.src != rate:
                self._resample = Resampler(rate, e.sample_rate, e.channels)
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

    def has_input(self) -> bool:
        """Whether the upstream audio the next block needs is here (`Session` knows its mode's needs)."""
        return True

    def ready(self, now: float) -> bool:
        if not self.playing or self.closed or self.inflight >= self.max_queue:
            return False
        if not (self.pace == "none" or self.audio_out - (now - self.t0) < self.lead):
            return False
        if self.has_input():
            return True
        # input-clocked: wait for the upstream audio, unless it has stopped (realtime: go on with silence)
        return self.pace == "realtime" and now - self.last_input > INPUT_SILENCE_AFTER

    def slack(self, now: float) -> float:
        """Seconds of audio this session has ahead of its clock (smallest goes first)."""
        return self.audio_out - (now - self.t0) if self.pace == "realtime" else 1e9 + self.audio_out


class Scheduler:
    """The generation thread and the sessions it serves. A subclass (`Engine`) supplies the music:
    `_new_session(loop, sid, max_queue)` makes a session, `_forget(session)` frees what a closed one
    held (called under the lock), `_next_audio(session)` makes one block and `_apply(session, msg)`
    applies one control; `sample_rate` converts blocks to seconds."""

    def __init__(self, max_sessions: int, threads: int | None):
        self.threads, self.max_sessions = threads, max_sessions
        self.sessions: list = []
        self._ids = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="lmdm-live-engine", daemon=True)
        self.errors = 0

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def open(self, loop: asyncio.AbstractEventLoop | None, max_queue: int = 4):
        """A new session. `loop`: the event loop whose queue receives the output (None: a plain
        thread-safe queue, for in-process use)."""
        with self._cond:
            if len(self.sessions) >= self.max_sessions:
                raise LMDMError(f"server is full: {self.max_sessions} sessions")
            self._ids += 1
            s = self._new_session(loop, self._ids, max_queue)
            self.sessions.append(s)
            return s

    def remove(self, session: SessionQueue) -> None:
        with self._cond:
            if session in self.sessions:
                self.sessions.remove(session)
                self._forget(session)
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

    def _idle_wait(self, sessions: list, now: float) -> float:
        waits = [s.audio_out - (now - s.t0) - s.lead for s in sessions
                 if s.playing and s.pace == "realtime" and s.inflight < s.max_queue]
        return max(0.001, min(waits, default=0.1))

    def _generate(self, s) -> None:
        s.prepare()
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
                              "block_ms": 1000 * dt, "playing": s.playing, **s.status(),
                              "sessions": len(self.sessions)}))

    def _apply_controls(self, s, budget: int | None = None) -> bool:
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
                s.take_input(msg.audio)
                continue
            try:
                self._apply(s, msg)
            except (LMDMError, ValueError) as e:
                s._emit(("json", {"type": "error", "id": msg.id, "cmd": msg.type, "message": str(e)}))
            else:
                s._emit(("json", {"type": "ack", "id": msg.id, "cmd": msg.type, "block": s.block}))


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
