"""What each control message does to a session: one small handler per message type and the table
that picks it (`HANDLERS`). Handlers run on the engine thread between blocks; one that raises
(ProtocolError, LMDMError, ValueError) changes nothing and is answered with an error.

A new live message: its pydantic model in `protocol.py`, a handler here and its row in `HANDLERS`.
"""
from __future__ import annotations

import math
import time

import torch

from ..engine.beat import MAX_BPM, MIN_BPM
from . import protocol as P


def apply(s, msg) -> None:
    """Apply one control message to session `s`."""
    HANDLERS[type(msg)](s, msg)


def _start(s, msg: P.Start) -> None:
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
            apply(s, _make(kind, {"cfg": "scale", "block": "frames"}.get(field, field), value))
    if not s.playing:
        s.playing, s.audio_out, s.t0 = True, 0.0, time.monotonic()


def _stop(s, msg: P.Stop) -> None:
    s.playing = False


def _set_prompts(s, prompts: list[tuple[str, float]]) -> None:
    if s.stream is not None:
        s.stream.set_prompts(prompts)
    s.prompts = prompts


def _prompts(s, msg: P.SetPrompts) -> None:
    _set_prompts(s, [(p.text, p.weight) for p in msg.prompts])


def _weights(s, msg: P.SetWeights) -> None:
    if len(msg.weights) != len(s.prompts):
        raise P.ProtocolError(f"{len(msg.weights)} weights for {len(s.prompts)} prompts")
    _set_prompts(s, [(text, w) for (text, _), w in zip(s.prompts, msg.weights)])


def _cfg(s, msg: P.SetCfg) -> None:
    if s.stream is not None:
        s.stream.set_cfg(msg.scale)
    s.cfg = msg.scale


def _steps(s, msg: P.SetSteps) -> None:
    s.steps = msg.steps
    if s.stream is not None:
        s.stream.steps = msg.steps


def _seed(s, msg: P.SetSeed) -> None:
    s.seed = msg.seed
    if s.stream is not None:
        s.stream.seed = msg.seed


def _block(s, msg: P.SetBlock) -> None:
    e = s.engine
    if s.mode != "text" and msg.frames != e.block_frames:
        raise P.ProtocolError(f"the block size changes in text mode only; {s.mode!r} runs on the model's "
                              f"block of {e.block_frames} frames (its input is counted in those blocks)")
    from ..engine.generate import block_pattern
    block_pattern(e.model, msg.frames)  # raises (nothing changes) when the model cannot
    if s.stream is not None:
        s.stream.set_block_frames(msg.frames)
    s.block_frames = msg.frames


def _mode(s, msg: P.SetMode) -> None:
    s.set_mode(msg.mode)


def _mix(s, msg: P.SetMix) -> None:
    s.dry, s.wet = msg.dry, msg.wet


def _feedback(s, msg: P.SetFeedback) -> None:
    if s.delay is not None:
        d = s.delay
        if msg.feedback >= 1.0 and (not d.has_accompaniment or d.cutoff_frames >= d.stream.C):
            raise P.ProtocolError("feedback 1 would cut the input off: this model sees the delay's input "
                                  "only through its context (no accompaniment input group, or cutoff "
                                  ">= the context); use feedback < 1")
        d.feedback = msg.feedback
    s.feedback = msg.feedback


def _cutoff(s, msg: P.SetCutoff) -> None:
    if s.mode == "generative_delay":
        delay = s.new_delay(cutoff=msg.frames)  # raises (nothing changes) when invalid
        s.cutoff = msg.frames
        s.drop_input()
        s.build(delay)  # the lag changed: a fresh delay line
    else:
        s.cutoff = msg.frames
        if s.mode == "accompaniment" and s.stream is not None:
            s.stream.cutoff_frames = msg.frames


def _sketch(s, msg: P.SetSketch) -> None:
    e, st = s.engine, s.stream
    if "sketch" not in e.groups:
        raise P.ProtocolError(e.unsupported_reason("sketch"))
    s.curves = None if msg.curves is None else _curves(e, msg)
    if s.mode == "sketch":
        if st is None:
            s.build()
        elif s.curves is not None:
            s.curves_start = st.frame
            st.set_sketch(s.curves, start=s.curves_start, kernel=s.sketch_kernel)
        else:  # back to the input: its timeline begins at this block
            s.drop_input()
            s.attach()


def _curves(e, msg: P.SetSketch) -> torch.Tensor:
    from ..engine.sketch import controls_from_curves
    rate = e.sample_rate / e.hop
    if msg.seconds is not None:
        n = math.ceil(msg.seconds * rate)
    else:
        n = max((len(c) if not c or not isinstance(c[0], tuple) else math.ceil(max(t for t, _ in c) * rate) + 1)
                for c in msg.curves.values()) if msg.curves else 0
    if n < 1:
        raise P.ProtocolError("sketch curves are empty: give values or a duration in 'seconds'")
    return controls_from_curves({k: [list(p) if isinstance(p, tuple) else p for p in v]
                                 for k, v in msg.curves.items()}, n, rate)


def _sketch_strength(s, msg: P.SetSketchStrength) -> None:
    from ..engine.sketch import strength_to_kernel
    s.sketch_kernel = strength_to_kernel(msg.strength)
    if s.mode == "sketch" and s.curves is not None and s.stream is not None:
        s.stream.set_sketch(s.curves, start=s.curves_start, kernel=s.sketch_kernel)


def _sketch_cfg(s, msg: P.SetSketchCfg) -> None:
    s.sketch_cfg = msg.scale
    if s.stream is not None:
        s.stream.set_sketch_cfg(msg.scale)


def _control_guidance(s, msg: P.SetControlGuidance) -> None:
    s.control_guidance = msg.strength
    if s.stream is not None:
        s.stream.set_control_guidance(msg.strength)


def _prompt_guidance(s, msg: P.SetPromptGuidance) -> None:
    if msg.strength and s.engine.model.prompt_probe is None:
        raise P.ProtocolError("this model has no prompt probe (`lmdm train prompt-probe` adds one)")
    s.prompt_guidance = msg.strength
    if s.stream is not None:
        s.stream.set_prompt_guidance(msg.strength)


def _bpm(s, msg: P.SetBpm) -> None:
    if msg.bpm and "beat" not in s.engine.model.config.dit.input_groups:
        raise P.ProtocolError("this model has no beat clock ('beat' input group): it picks its own tempo")
    if msg.bpm and msg.bpm < MIN_BPM:
        raise P.ProtocolError(f"bpm must be 0 (free), null (the prompt's) or {MIN_BPM:g}..{MAX_BPM:g}")
    s.bpm = msg.bpm
    if s.stream is not None and s.mode != "generative_delay":
        s.stream.set_bpm(msg.bpm)


def _reset(s, msg: P.Reset) -> None:
    s.drop_input()
    s.build()  # a fresh stream (and decoder) with the current settings; input timeline restarts


def _save(s, msg: P.SaveState) -> None:
    if s.stream is None:
        raise P.ProtocolError("nothing to save: the session has not generated yet")
    if s.mode == "generative_delay":
        raise P.ProtocolError("save/load is not available in generative_delay mode")
    s.save(msg.slot, s.stream.state_dict())


def _load(s, msg: P.LoadState) -> None:
    if msg.slot not in s.slots:
        raise P.ProtocolError(f"no saved state in slot {msg.slot!r}; saved: {sorted(s.slots) or 'none'}")
    if s.mode == "generative_delay":
        raise P.ProtocolError("save/load is not available in generative_delay mode")
    e, st = s.engine, s.stream
    if st is None:
        st = s.stream = s.new_stream()
    st.load_state_dict(s.slots[msg.slot])
    s.prompts, s.seed, s.steps, s.cfg = list(st.prompts), st.seed, st.steps, st.cfg_scale
    s.sketch_cfg, s.control_guidance, s.bpm = st.sketch_cfg, st.control_guidance.strength, st.bpm_mode
    s.prompt_guidance = st.prompt_guidance.strength
    s.stream_samples = max(0, st.frame * e.hop - e.delay_samples)
    if s.mode == "text":
        s.block_frames = st.B
    else:  # a state saved at another block size comes back at the model's, as input modes need
        st.set_block_frames(e.block_frames)
    if s.mode != "text":  # the saved input groups belong to the past: the input timeline restarts
        s.drop_input()
        s.attach()


def _make(kind, arg, value):
    """A control message of `kind` carrying one value (Start's optional fields reuse the setters)."""
    return kind(type=kind.model_fields["type"].annotation.__args__[0], **{arg: value})


HANDLERS = {
    P.Start: _start, P.Stop: _stop, P.SetPrompts: _prompts, P.SetWeights: _weights, P.SetCfg: _cfg,
    P.SetSteps: _steps, P.SetSeed: _seed, P.SetBlock: _block, P.SetMode: _mode, P.SetMix: _mix,
    P.SetFeedback: _feedback, P.SetCutoff: _cutoff, P.SetSketch: _sketch,
    P.SetSketchStrength: _sketch_strength, P.SetSketchCfg: _sketch_cfg,
    P.SetControlGuidance: _control_guidance, P.SetPromptGuidance: _prompt_guidance, P.SetBpm: _bpm,
    P.Reset: _reset, P.SaveState: _save, P.LoadState: _load,
}
