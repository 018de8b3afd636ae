"""Render a composed piece to 44.1 kHz stereo stems and a mix.

Backends: `tinysoundfont` (default; the TimGM6mb General MIDI soundfont that ships inside
pretty_midi, pure in-process C, deterministic) and `fluidsynth` (the `fluidsynth` program with
FluidR3_GM from Debian's fluid-soundfont-gm; optional, reverb and chorus off so stems stay dry).

Mixing (numpy, vectorised over blocks): each stem gets its own send into one small algorithmic
room per piece (the soundfont synths are dry), is levelled to a per-stem target with a little
random variation and panned; the sum is normalised, gently bus-compressed and peak-limited to
-1 dBFS. The compressor and limiter compute ONE gain curve from the sum and apply it to every
stem, so the stored stems are post-processing and `mix == sum(stems)` holds exactly (up to
float and file quantisation).
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ....errors import DataError

SAMPLE_RATE = 44100
FLUID_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")
# Active-RMS target per stem (dBFS) before the bus; drums and bass carry the groove.
STEM_LEVEL = {"drums": -20.0, "bass": -22.0, "chords": -25.0, "melody": -22.0, "pad": -28.0}
STEM_PAN = {"drums": 0.0, "bass": 0.0, "chords": 0.6, "melody": 0.4, "pad": 0.0}
# Reverb send range per stem: bass stays dry, pads swim.
STEM_SEND = {"drums": (0.05, 0.15), "bass": (0.0, 0.0), "chords": (0.15, 0.3), "melody": (0.15, 0.3),
             "pad": (0.25, 0.45)}
COMBS = (1116, 1277, 1422, 1557)     # Freeverb's comb delays (samples at 44.1 kHz)
ALLPASSES = (556, 341)
BLOCK = 256                    # samples per gain-curve block (5.8 ms at 44.1 kHz)
CEILING = 10 ** (-1.0 / 20)    # -1 dBFS


def tinysoundfont_path() -> Path:
    try:
        import pretty_midi
    except ImportError as e:
        raise DataError("the synthetic corpus needs pretty_midi: pip install pretty_midi") from e
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise DataError(f"pretty_midi's bundled soundfont is missing: {path}")
    return path


def fluidsynth_soundfont() -> Path | None:
    """FluidR3_GM when fluidsynth and fluid-soundfont-gm are installed, else None."""
    if shutil.which("fluidsynth") is None:
        return None
    return next((Path(p) for p in FLUID_SOUNDFONTS if os.path.isfile(p)), None)


@lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
    return tinysoundfont_path().read_bytes()


def render_stem_tsf(notes, program: int, is_drum: bool, samples: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """notes [(pitch, start s, end s, velocity)] -> (2, samples) float32 with tinysoundfont."""
    try:
        from tinysoundfont import _tinysoundfont as tsf
    except ImportError as e:
        raise DataError("the tinysoundfont backend needs: pip install tinysoundfont --no-deps") from e
    # A fresh synth per stem: reset() does not restore every internal state, and identical
    # output for identical input is part of the contract.
    sf = tsf.SoundFont(_soundfont_bytes())
    sf.set_output(tsf.OutputMode.StereoInterleaved, sample_rate, 0.0)
    sf.set_max_voices(96)
    channel = 9 if is_drum else 0
    sf.channel_set_preset_number(channel, program, is_drum)
    events = []   # (sample, order, pitch, velocity): note-offs sort before note-ons at one instant
    for pitch, start, end, vel in notes:
        events.append((int(round(start * sample_rate)), 1, pitch, vel))
        events.append((int(round(end * sample_rate)), 0, pitch, 0))
    events.sort()
    out = np.zeros((samples, 2), np.float32)   # interleaved: a row slice is contiguous, rendered in place
    pos = 0
    for at, on, pitch, vel in events:
        at = min(at, samples)
        if at > pos:
            sf.render(out[pos:at].reshape(-1).view(np.uint8), False)
            pos = at
        if on:
            sf.channel_note_on(channel, pitch, vel / 127.0)
        else:
            sf.channel_note_off(channel, pitch)
    if pos < samples:
        sf.render(out[pos:].reshape(-1).view(np.uint8), False)
    return np.ascontiguousarray(out.T)


def render_stem_fluidsynth(notes, program: int, is_drum: bool, samples: int, sample_rate: int = SAMPLE_RATE,
                           bpm: float = 120.0) -> np.ndarray:
    """Same contract as `render_stem_tsf`, through the fluidsynth program and FluidR3_GM."""
    import pretty_midi
    import soundfile as sf
    font = fluidsynth_soundfont()
    if font is None:
        raise DataError("the fluidsynth backend needs the Debian packages fluidsynth and fluid-soundfont-gm "
                        f"(looked for the fluidsynth program and {', '.join(FLUID_SOUNDFONTS)})")
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program, is_drum=is_drum)
    inst.notes = [pretty_midi.Note(v, p, s, e) for p, s, e, v in notes]
    pm.instruments.append(inst)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = os.path.join(tmp, "stem.mid"), os.path.join(tmp, "stem.wav")
        pm.write(mid)
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sample_rate),
               "-O", "float", "-T", "wav", "-F", wav, str(font), mid]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.isfile(wav):
            raise DataError(f"fluidsynth failed ({result.returncode}): {result.stderr.strip()[:500]}")
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    out = np.zeros((2, samples), np.float32)
    n = min(samples, len(audio))
    out[:, :n] = audio[:n].T if audio.shape[1] == 2 else audio[:n, :1].T
    return out


def render_piece(piece, backend: str = "tinysoundfont", sample_rate: int = SAMPLE_RATE):
    """-> (stems {name: (2, samples) float32}, mix (2, samples), mix info {stem: {gain_db, pan}}).
    `samples` is exactly round(piece.seconds * sample_rate)."""
    samples = int(round(piece.seconds * sample_rate))
    raw = {}
    for name, notes in piece.notes.items():
        if not notes:
            continue
        program, drum = piece.programs[name], name == "drums"
        if backend == "tinysoundfont":
            raw[name] = render_stem_tsf(notes, program, drum, samples, sample_rate)
        elif backend == "fluidsynth":
            raw[name] = render_stem_fluidsynth(notes, program, drum, samples, sample_rate, piece.bpm)
        else:
            raise DataError(f"unknown render backend {backend!r}; use tinysoundfont or fluidsynth")
    rng = random.Random(f"mix:{piece.style.name}:{piece.seed}")
    return mixdown(raw, rng, sample_rate)


def mixdown(raw: dict[str, np.ndarray], rng: random.Random, sample_rate: int = SAMPLE_RATE):
    """Reverb, level, pan, bus-compress and limit. Returns (stems, mix, info) with mix == sum(stems)."""
    stems, info = {}, {}
    decay = rng.uniform(0.8, 2.0)     # one room per piece: RT60 in seconds
    sends = {name: rng.uniform(*STEM_SEND.get(name, (0.1, 0.2))) for name in raw}
    wet_names = [n for n in raw if sends[n] > 0]
    if wet_names:
        wet = reverb(np.stack([raw[n] * np.float32(sends[n]) for n in wet_names]), decay, sample_rate)
        raw = {**raw, **{n: raw[n] + wet[i] for i, n in enumerate(wet_names)}}
    for name, audio in raw.items():
        level = STEM_LEVEL.get(name, -24.0) + rng.uniform(-2.0, 2.0)
        gain = 10 ** (level / 20) / max(_active_rms(audio), 1e-6)
        pan = rng.uniform(-1, 1) * STEM_PAN.get(name, 0.2)
        theta = (pan + 1) * np.pi / 4      # equal-power balance, unity at the centre
        lr = np.array([np.cos(theta), np.sin(theta)], np.float32)[:, None] * np.sqrt(2)
        stems[name] = audio * (gain * lr).astype(np.float32)
        info[name] = {"gain_db": round(20 * np.log10(gain), 2), "pan": round(pan, 3), "reverb": round(sends[name], 3)}
    if not stems:
        raise DataError("nothing to mix: the piece has no notes")
    mix = sum(stems.values())
    target = 10 ** (rng.uniform(-18.0, -14.0) / 20)
    pre = target / max(_active_rms(mix), 1e-6)
    curve = _compressor(mix * pre, sample_rate) * pre
    curve *= _limiter(mix * curve, sample_rate)
    fade = min(len(curve), int(0.01 * sample_rate))     # 10 ms fade-out: the file ends, not the music
    curve[len(curve) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    stems = {k: v * curve for k, v in stems.items()}
    mix = sum(stems.values())
    # Interpolated block gains can let a sample slip over; one global trim makes sure nothing clips.
    peak = max([float(np.abs(mix).max())] + [float(np.abs(s).max()) for s in stems.values()])
    if peak > CEILING:
        stems = {k: v * np.float32(CEILING / peak) for k, v in stems.items()}
        mix = sum(stems.values())
    return stems, mix.astype(np.float32), info


def reverb(x: np.ndarray, rt60: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Schroeder reverberator on (..., 2, samples) -> the wet signal, same shape. The send is
    folded to mono at half the sample rate (pairs averaged) and darkened (two 3-tap box filters:
    about -3 dB at 4 kHz: a room's tail is dark, and this is what lets the tank run at half rate),
    diffused by two all-passes and fed to four parallel feedback combs; left = c1 + c2 + c3 + c4
    and right = c1 - c2 + c3 - c4 decorrelate the channels. Recursions with delay D are evaluated
    D samples at a time."""
    n = x.shape[-1]
    end = n - n % 2      # an odd last sample's send is dropped
    left, right = x[..., 0, :end], x[..., 1, :end]
    mono = (left[..., 0::2] + left[..., 1::2] + right[..., 0::2] + right[..., 1::2]) * np.float32(0.25)
    for _ in range(2):
        box = mono.copy()
        box[..., 1:] += mono[..., :-1]
        box[..., 2:] += mono[..., :-2]
        mono = box * np.float32(1 / 3)
    rate = sample_rate / 2
    for delay in ALLPASSES:
        mono = _recursive(mono, int(delay * rate / 44100), 0.5, -0.5)
    c = [_recursive(mono, d, 10 ** (-3 * d / (rt60 * rate)), 0.0) * np.float32(0.25)
         for d in (int(delay * rate / 44100) for delay in COMBS)]
    half = np.empty(mono.shape[:-1] + (2, mono.shape[-1]), np.float32)
    half[..., 0, :] = c[0] + c[1] + c[2] + c[3]
    half[..., 1, :] = c[0] - c[1] + c[2] - c[3]
    wet = np.zeros(half.shape[:-1] + (n,), np.float32)
    wet[..., 0:end:2] = half                                     # back to full rate: linear interpolation
    wet[..., 1:end - 1:2] = 0.5 * (half[..., :-1] + half[..., 1:])
    wet[..., end - 1] = half[..., -1]
    return wet


def _recursive(x: np.ndarray, d: int, g: float, direct: float) -> np.ndarray:
    """y[n] = direct * x[n] + (x[n-d] if direct else x[n]) + g * y[n-d]: a comb (direct=0) or a
    Schroeder all-pass (direct=-g), computed one block of d samples at a time."""
    n = x.shape[-1]
    blocks = -(-n // d)
    xp = np.zeros(x.shape[:-1] + (blocks * d,), np.float32)
    xp[..., :n] = x
    xb = xp.reshape(x.shape[:-1] + (blocks, d))
    y = np.empty_like(xb)
    prev_x = np.zeros_like(xb[..., 0, :])
    prev_y = np.zeros_like(prev_x)
    for k in range(blocks):
        cur = xb[..., k, :]
        y[..., k, :] = (direct * cur + prev_x if direct else cur) + g * prev_y
        prev_x, prev_y = cur, y[..., k, :]
    return y.reshape(x.shape[:-1] + (blocks * d,))[..., :n]


def _active_rms(audio: np.ndarray) -> float:
    """RMS over the blocks that are not near-silent, so a stem that plays half the time is
    levelled by how loud it is when it plays."""
    n = audio.shape[-1] // BLOCK * BLOCK
    if n == 0:
        return float(np.sqrt(np.mean(audio ** 2)))
    power = np.mean(audio[:, :n].reshape(audio.shape[0], -1, BLOCK) ** 2, axis=(0, 2))
    active = power[power > power.max() * 1e-4]
    return float(np.sqrt(active.mean())) if active.size else 0.0


def _block_gain_to_samples(gain_db: np.ndarray, samples: int) -> np.ndarray:
    centres = (np.arange(len(gain_db)) + 0.5) * BLOCK
    return (10 ** (np.interp(np.arange(samples), centres, gain_db) / 20)).astype(np.float32)


def _blocks(x: np.ndarray, reduce) -> np.ndarray:
    pad = -x.shape[-1] % BLOCK
    x = np.pad(np.abs(x).max(axis=0) if reduce == "peak" else np.mean(x ** 2, axis=0), (0, pad))
    x = x.reshape(-1, BLOCK)
    return x.max(axis=1) if reduce == "peak" else x.mean(axis=1)


def smooth_gain(gain_db: np.ndarray, attack: float, release: float, sample_rate: int) -> np.ndarray:
    """One-pole smoothing of a gain-reduction curve (dB <= 0): fast down, slow back up."""
    a = np.exp(-BLOCK / (attack * sample_rate))
    r = np.exp(-BLOCK / (release * sample_rate))
    out, state = np.empty_like(gain_db), 0.0
    for i, g in enumerate(gain_db.tolist()):
        coeff = a if g < state else r
        state = coeff * state + (1 - coeff) * g
        out[i] = state
    return out


def _compressor(mix: np.ndarray, sample_rate: int, threshold_db: float = -14.0, ratio: float = 2.0) -> np.ndarray:
    level = 10 * np.log10(_blocks(mix, "rms") + 1e-12)
    reduction = np.minimum(0.0, (threshold_db - level) * (1 - 1 / ratio))
    return _block_gain_to_samples(smooth_gain(reduction, 0.01, 0.15, sample_rate), mix.shape[-1])


def _limiter(mix: np.ndarray, sample_rate: int) -> np.ndarray:
    peak = _blocks(mix, "peak")
    need = 20 * np.log10(np.minimum(1.0, CEILING / np.maximum(peak, 1e-9)))
    # look ahead one block each way, so the gain is already down when the peak arrives
    padded = np.pad(need, 1, mode="edge")
    need = np.minimum(need, np.minimum(padded[:-2], padded[2:]))
    return _block_gain_to_samples(smooth_gain(need, 1e-4, 0.05, sample_rate), mix.shape[-1])
