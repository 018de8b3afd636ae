"""Recorded instruments from Debian's sample packages, played as a sampler plays them.

Every instrument answers `note(pitch, velocity) -> (audio (2, n) float32, release seconds,
one_shot)`; `play` overlap-adds the notes of a stem into a buffer. Melodic instruments come from a
General-MIDI soundfont (MuseScore General, else FluidR3) through fluidsynth: each is rendered
once per process at a grid of root pitches (every 3 semitones) and velocity layers, held and
released, then pitch-shifted by at most one semitone (resampling, as hardware samplers do) and
faded out at each note's end. Drums are one-shots: multi-sampled kits from hydrogen-drumkits
(velocity layers from each kit's drumkit.xml), the AVL drum soundfonts, the soundfont's GM kits,
and Sonic Pi's one-shots. A per-process cache keeps rendered and decoded samples.

`SOURCES` names each Debian package, where its files lie and its licence (for the corpus card).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ....errors import DataError
from ..v1.styles import DRUMS
from .soundfont import libfluidsynth, playable, synth_for

SR = 44100


@dataclass(frozen=True)
class Source:
    package: str
    paths: tuple[str, ...]
    licence: str
    what: str

    def path(self) -> Path | None:
        return next((Path(p) for p in self.paths if Path(p).exists()), None)


SOURCES = {
    "musescore": Source("musescore-general-soundfont", ("/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
                                                        "/usr/share/sounds/sf3/MuseScore_General.sf3"),
                        "MIT (MuseScore General, a fork of FluidR3Mono)", "General MIDI melodic instruments and kits"),
    "fluidr3": Source("fluid-soundfont-gm", ("/usr/share/sounds/sf2/FluidR3_GM.sf2",
                                             "/usr/share/soundfonts/FluidR3_GM.sf2"),
                      "MIT (Frank Wen's FluidR3)", "fallback General MIDI soundfont"),
    "avldrums": Source("avldrums.lv2-soundfont", ("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2",),
                       "CC-BY-SA-3.0 (x42 AVL Drumkits, Glen MacArthur)", "multi-sampled acoustic drum kits"),
    "hydrogen": Source("hydrogen-drumkits", ("/usr/share/hydrogen/data/drumkits",),
                       "per kit: GPL-2/GPL-2+, CC-BY-3.0, CC-BY-SA-3.0, CC0 (see the corpus card)",
                       "multi-sampled drum and percussion kits"),
    "sonicpi": Source("sonic-pi-samples", ("/usr/share/sonic-pi/samples",), "CC0 (the samples used here)",
                      "drum one-shots and textures"),
}


def available(source: str) -> bool:
    if SOURCES[source].path() is None:
        return False
    return source not in ("musescore", "fluidr3", "avldrums") or libfluidsynth() is not None


def melodic_font() -> Path:
    """MuseScore General when installed, else FluidR3 (both General MIDI)."""
    for name in ("musescore", "fluidr3"):
        if available(name):
            return SOURCES[name].path()
    raise DataError("the v2 corpus needs a General MIDI soundfont and libfluidsynth: install the Debian packages "
                    "musescore-general-soundfont (or fluid-soundfont-gm) and fluidsynth (scripts/setup.sh does), "
                    "or use --renderer v1")


# -- a small per-process cache of rendered / decoded audio ----------------------------------

_CACHE: OrderedDict = OrderedDict()
_CACHE_BYTES = [0]
CACHE_LIMIT = 768 << 20


def clear_cache() -> None:
    """Forget every rendered and decoded sample (the next notes are rendered afresh)."""
    _CACHE.clear()
    _CACHE_BYTES[0] = 0


def _cached(key, make):
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = make()
    _CACHE[key] = value
    _CACHE_BYTES[0] += value.nbytes
    while _CACHE_BYTES[0] > CACHE_LIMIT and len(_CACHE) > 1:
        _, old = _CACHE.popitem(last=False)
        _CACHE_BYTES[0] -= old.nbytes
    return value


def _load(path: Path) -> np.ndarray:
    """A sample file as (2, n) float32 at 44.1 kHz (mono doubled, other rates resampled)."""
    import soundfile as sf

    def make():
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        audio = audio.T[:2] if audio.shape[1] >= 2 else np.repeat(audio.T, 2, 0)
        if rate != SR:
            from scipy.signal import resample_poly
            g = math.gcd(int(rate), SR)
            audio = resample_poly(audio, SR // g, int(rate) // g, axis=1).astype(np.float32)
        return np.ascontiguousarray(audio)
    return _cached(("file", str(path)), make)


@lru_cache(maxsize=64)
def _grid(semitones: int, length: int):
    """Read positions for a pitch shift (integer part, fraction), cached: only a few shifts and
    lengths occur, so the index arithmetic is done once."""
    pos = np.arange(0, length - 1, 2.0 ** (semitones / 12), dtype=np.float64)
    i = pos.astype(np.intp)
    return i, (pos - i).astype(np.float32)


def _shift(audio: np.ndarray, semitones: int) -> np.ndarray:
    """Resample (linear interpolation) so the pitch moves by `semitones`; the note gets shorter or longer."""
    if semitones == 0:
        return audio
    i, f = _grid(semitones, audio.shape[1])
    a = audio[:, i]
    a += (audio[:, i + 1] - a) * f
    return a


# -- melodic instruments -----------------------------------------------------------------------

SUSTAINED = set(range(16, 24)) | set(range(40, 45)) | set(range(48, 56)) | set(range(56, 96))
VELOCITY_LAYERS = (72, 112)


class SoundFontInstrument:
    """A GM program of a soundfont, sampled at a grid of roots and velocity layers."""

    def __init__(self, font: Path, program: int, bank: int = 0):
        self.font, self.program, self.bank = str(playable(font)), program, bank
        sustained = program in SUSTAINED
        # how long a note can be held: longer notes are cut (with the release fade) at this length
        self.hold = 5.0 if 88 <= program <= 95 else 3.2 if sustained else 2.0
        self.tail, self.release = (0.5, 0.25) if sustained else (0.4, 0.12)
        self.layers = (96,) if sustained else VELOCITY_LAYERS

    def note(self, pitch: int, velocity: int):
        root = 3 * round(pitch / 3)
        layer = min(self.layers, key=lambda v: abs(v - velocity))
        base = _cached(("sf", self.font, self.bank, self.program, root, layer),
                       lambda: synth_for(self.font).note(self.bank, self.program, root, layer, self.hold, self.tail))
        audio = _cached(("sfp", self.font, self.bank, self.program, pitch, layer), lambda: _shift(base, pitch - root))
        return audio, (velocity / layer) ** 1.5, self.release, False


# -- drum kits ---------------------------------------------------------------------------------

VOICE_OF_NOTE = {n: v for v, n in DRUMS.items()}
# What a kit plays for a voice it lacks, in order of preference.
FALLBACK = {"rim": ("snare",), "clap": ("snare",), "pedal": ("hat",), "open": ("hat",), "ride": ("hat",),
            "crash": ("ride", "open", "hat"), "tamb": ("shaker", "hat"), "shaker": ("hat",),
            "cowbell": ("rim", "hat"), "triangle": ("ride", "hat"), "tom_hi": ("tom_mid", "tom_lo", "snare"),
            "tom_mid": ("tom_hi", "tom_lo", "snare"), "tom_lo": ("tom_floor", "tom_mid", "snare"),
            "tom_floor": ("tom_lo", "tom_mid", "kick")}


def _resolve(voice: str, has) -> str | None:
    for v in (voice, *FALLBACK.get(voice, ())):
        if has(v):
            return v
    return None


class SoundFontKit:
    """A drum preset of a soundfont (GM note numbers), four velocity layers, one-shot."""

    def __init__(self, font: Path, bank: int, program: int):
        self.font, self.bank, self.program = str(playable(font)), bank, program

    def note(self, pitch: int, velocity: int):
        layer = min((48, 80, 104, 127), key=lambda v: abs(v - velocity))
        hold = 2.0 if pitch in (DRUMS["crash"], DRUMS["ride"], DRUMS["open"]) else 0.8
        audio = _cached(("kit", self.font, self.bank, self.program, pitch, layer),
                        lambda: synth_for(self.font).note(self.bank, self.program, pitch, layer, hold, 0.6))
        return audio, (velocity / layer) ** 1.5, 0.0, True


class HydrogenKit:
    """A hydrogen drumkit: instruments named in `voices` (voice -> instrument name prefix),
    with the velocity layers its drumkit.xml gives (min/max velocity in 0..1, per-layer gain)."""

    def __init__(self, folder: str, voices: dict[str, str]):
        root = SOURCES["hydrogen"].path()
        if root is None:
            raise DataError("hydrogen drum kits are not installed (Debian package hydrogen-drumkits)")
        self.dir = root / folder
        # Debian's repack lacks a few files a drumkit.xml names: those layers (and instruments) drop out
        self.layers = {name: kept for name, layers in _hydrogen_layers(str(self.dir / "drumkit.xml")).items()
                       if (kept := [la for la in layers if (self.dir / la[2]).is_file()])}
        self.voices = {}
        for voice, prefix in voices.items():
            name = next((n for n in self.layers if n == prefix), None) or \
                next((n for n in self.layers if n.startswith(prefix)), None)
            if name is not None:
                self.voices[voice] = name
        if "kick" not in self.voices and "snare" not in self.voices:
            raise DataError(f"drumkit {folder} has neither a kick nor a snare among {sorted(self.layers)}")

    def note(self, pitch: int, velocity: int):
        voice = _resolve(VOICE_OF_NOTE.get(pitch, "snare"), self.voices.__contains__)
        if voice is None:
            return np.zeros((2, 1), np.float32), 0.0, 0.0, True
        layers = self.layers[self.voices[voice]]
        v = velocity / 127
        file, gain = next(((f, g) for lo, hi, f, g in layers if lo <= v <= hi), (layers[-1][2], layers[-1][3]))
        # layers are recorded at their own loudness; within a layer scale gently with velocity
        return _load(self.dir / file), gain * (0.55 + 0.45 * v), 0.0, True


@lru_cache(maxsize=32)
def _hydrogen_layers(xml_path: str) -> dict[str, list]:
    """instrument name -> [(min, max, file, gain)] sorted by max, from a drumkit.xml (both the
    layered format and the old one with a single <filename> per instrument)."""
    text = Path(xml_path).read_text(errors="replace")
    tree = ET.fromstring(text.replace('xmlns="http://www.hydrogen-music.org/drumkit"', ""))
    out = {}
    for inst in tree.iter("instrument"):
        name = (inst.findtext("name") or "").strip()
        gain = float(inst.findtext("volume") or 1) * float(inst.findtext("gain") or 1)
        layers = []
        for layer in inst.iter("layer"):
            layers.append((float(layer.findtext("min") or 0), float(layer.findtext("max") or 1),
                           layer.findtext("filename"), gain * float(layer.findtext("gain") or 1)))
        if not layers and inst.findtext("filename"):
            layers.append((0.0, 1.0, inst.findtext("filename"), gain))
        if name and layers:
            out[name] = sorted(layers, key=lambda x: x[1])
    return out


class SampleKit:
    """Sonic Pi one-shots: voice -> (soft file, hard file) or a single file."""

    def __init__(self, voices: dict[str, tuple[str, ...]]):
        root = SOURCES["sonicpi"].path()
        if root is None:
            raise DataError("Sonic Pi samples are not installed (Debian package sonic-pi-samples)")
        self.dir, self.voices = root, voices

    def note(self, pitch: int, velocity: int):
        voice = _resolve(VOICE_OF_NOTE.get(pitch, "snare"), self.voices.__contains__)
        if voice is None:
            return np.zeros((2, 1), np.float32), 0.0, 0.0, True
        files = self.voices[voice]
        file = files[-1] if velocity >= 90 or len(files) == 1 else files[0]
        return _load(self.dir / f"{file}.flac"), (velocity / 110) ** 1.3, 0.0, True


def play(instrument, notes, samples: int, sample_rate: int = SR) -> np.ndarray:
    """Overlap-add `notes` [(pitch, start s, end s, velocity)] -> (2, samples) float32. A held note
    plays its sample up to its end, then fades over the instrument's release; one-shots ring out."""
    if sample_rate != SR:
        raise DataError(f"the v2 renderer works at {SR} Hz, not {sample_rate}")
    out = np.zeros((2, samples), np.float32)
    for pitch, start, end, velocity in notes:
        audio, gain, release, one_shot = instrument.note(pitch, velocity)
        at = int(round(start * sample_rate))
        if at >= samples or gain <= 0:
            continue
        n = audio.shape[1] if one_shot else min(audio.shape[1], int((end - start + release) * sample_rate))
        n = min(n, samples - at)
        if n <= 0:
            continue
        seg = audio[:, :n] * np.float32(gain)
        if not one_shot:
            held = min(n, max(1, int((end - start) * sample_rate)))
            fade = n - held
            if fade > 0:
                seg[:, held:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        out[:, at:at + n] += seg
    return out
