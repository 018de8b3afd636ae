"""SoundFont playback through the system's libfluidsynth (ctypes, in process), and SF3 -> SF2.

Why fluidsynth: the MuseScore General soundfont uses SoundFont 2.01 modulators that its authors
say only MuseScore and FluidSynth play correctly, and it ships as SF3 (Ogg Vorbis samples), which
tinysoundfont cannot decode. Why convert: fluidsynth decodes every Ogg sample of an SF3 at load
(13 s here) or lazily per note (slower still); an SF2 copy with the samples decoded once, cached
under ~/.cache/lmdm/soundfonts, loads in 0.1 s and reads only the samples a piece plays.

One `Synth` per (process, font): a forked worker opens its own. Rendering is deterministic (no
audio driver, reverb and chorus off, one thread).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

from ....errors import DataError

_V, _I = ctypes.c_void_p, ctypes.c_int


@lru_cache(maxsize=1)
def libfluidsynth():
    """The loaded library, or None when Debian's libfluidsynth3 is absent."""
    name = ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    sig = {"new_fluid_settings": ([], _V), "new_fluid_synth": ([_V], _V),
           "fluid_settings_setnum": ([_V, ctypes.c_char_p, ctypes.c_double], _I),
           "fluid_settings_setint": ([_V, ctypes.c_char_p, _I], _I),
           "fluid_synth_sfload": ([_V, ctypes.c_char_p, _I], _I),
           "fluid_synth_noteon": ([_V, _I, _I, _I], _I), "fluid_synth_noteoff": ([_V, _I, _I], _I),
           "fluid_synth_program_select": ([_V, _I, _I, _I, _I], _I),
           "fluid_synth_system_reset": ([_V], _I), "fluid_synth_all_sounds_off": ([_V, _I], _I),
           "fluid_synth_write_float": ([_V, _I, _V, _I, _I, _V, _I, _I], _I)}
    for fn, (args, res) in sig.items():
        getattr(lib, fn).argtypes, getattr(lib, fn).restype = args, res
    return lib


class Synth:
    """One fluidsynth instance with one soundfont loaded."""

    def __init__(self, font: str | Path, sample_rate: int = 44100):
        lib = libfluidsynth()
        if lib is None:
            raise DataError("rendering soundfonts needs libfluidsynth (Debian: apt-get install fluidsynth)")
        self.lib, self.sample_rate = lib, sample_rate
        s = lib.new_fluid_settings()
        lib.fluid_settings_setnum(s, b"synth.sample-rate", float(sample_rate))
        for key, value in ((b"synth.reverb.active", 0), (b"synth.chorus.active", 0), (b"synth.cpu-cores", 1),
                           (b"synth.dynamic-sample-loading", 1), (b"synth.polyphony", 256)):
            lib.fluid_settings_setint(s, key, value)
        self._settings = s
        self.synth = lib.new_fluid_synth(s)
        self.font_id = lib.fluid_synth_sfload(self.synth, str(font).encode(), 1)
        if self.font_id < 0:
            raise DataError(f"fluidsynth could not load the soundfont {font}")

    def note(self, bank: int, program: int, pitch: int, velocity: int, hold: float, tail: float) -> np.ndarray:
        """One note held `hold` s then released, rendered for `hold + tail` s -> (2, n) float32."""
        lib, syn, ch = self.lib, self.synth, 9 if bank == 128 else 0
        # silence every voice at once (a reset lets them release) and flush a block, so no earlier note
        # leaks into this one
        lib.fluid_synth_all_sounds_off(syn, -1)
        lib.fluid_synth_system_reset(syn)
        flush = np.zeros((64, 2), np.float32)
        lib.fluid_synth_write_float(syn, 64, _V(flush.ctypes.data), 0, 2, _V(flush.ctypes.data), 1, 2)
        if lib.fluid_synth_program_select(syn, ch, self.font_id, bank, program) != 0:
            raise DataError(f"the soundfont has no preset bank {bank} program {program}")
        # fluidsynth renders in blocks of 64 samples and applies a note-on at the next block: whole
        # blocks keep every note starting on one, so a note sounds the same whatever was rendered before
        on, off = (-(-int(sec * self.sample_rate) // 64) * 64 for sec in (hold, tail))
        out = np.zeros((on + off, 2), np.float32)
        ptr = out.ctypes.data
        lib.fluid_synth_noteon(syn, ch, int(pitch), int(velocity))
        lib.fluid_synth_write_float(syn, on, _V(ptr), 0, 2, _V(ptr), 1, 2)
        lib.fluid_synth_noteoff(syn, ch, int(pitch))
        lib.fluid_synth_write_float(syn, off, _V(ptr + on * 8), 0, 2, _V(ptr + on * 8), 1, 2)
        return np.ascontiguousarray(out.T)


@lru_cache(maxsize=8)
def synth_for(font: str, sample_rate: int = 44100) -> Synth:
    return Synth(font, sample_rate)


# -- SF3 -> SF2 -------------------------------------------------------------------------------

def _chunks(data: bytes, start: int, end: int):
    """(id, body start, body end) of the RIFF chunks in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        yield cid, pos + 8, pos + 8 + size
        pos += 8 + size + (size & 1)


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def sf3_to_sf2(src: str | Path, dst: str | Path) -> Path:
    """Write an SF2 copy of the SF3 `src`: every Ogg Vorbis sample decoded to 16-bit PCM (followed
    by the 46 zero points SF2 asks for), sample headers rewritten to absolute sample offsets
    (SF3 stores byte offsets of each Ogg stream and loop points relative to the sample), all
    other chunks copied. Written to a temporary name and renamed, so a crash leaves no half file."""
    import soundfile as sf
    data = Path(src).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise DataError(f"{src} is not a SoundFont (RIFF sfbk) file")
    lists = {}
    for cid, a, b in _chunks(data, 12, len(data)):
        if cid == b"LIST":
            lists[data[a:a + 4]] = (a + 4, b)
    if not {b"INFO", b"sdta", b"pdta"} <= set(lists):
        raise DataError(f"{src} lacks the INFO, sdta or pdta list")
    smpl = next((data[a:b] for cid, a, b in _chunks(data, *lists[b"sdta"]) if cid == b"smpl"), None)
    pdta = {cid: data[a:b] for cid, a, b in _chunks(data, *lists[b"pdta"])}
    if smpl is None or b"shdr" not in pdta:
        raise DataError(f"{src} lacks sample data or sample headers")
    rec = struct.Struct("<20sIIIIIBbHH")
    headers = [list(rec.unpack_from(pdta[b"shdr"], i)) for i in range(0, len(pdta[b"shdr"]), rec.size)]
    pcm, pos, decoded = [], 0, {}
    for h in headers[:-1]:                      # the last record is the terminal "EOS"
        start, end, loop_start, loop_end, kind = h[1], h[2], h[3], h[4], h[9]
        if kind & 0x10:                         # compressed (Ogg Vorbis)
            key = (start, end)
            if key not in decoded:
                audio, _ = sf.read(io.BytesIO(smpl[start:end]), dtype="int16", always_2d=True)
                decoded[key] = audio[:, 0]
            samples = decoded[key]
            loop_start, loop_end = pos + loop_start, pos + loop_end
        else:                                   # plain 16-bit PCM (offsets in sample points)
            samples = np.frombuffer(smpl, "<i2", end - start, 2 * start)
            loop_start, loop_end = pos + loop_start - start, pos + loop_end - start
        h[1], h[2], h[3], h[4], h[9] = pos, pos + len(samples), loop_start, loop_end, kind & ~0x10
        pcm += [samples.astype("<i2").tobytes(), bytes(92)]
        pos += len(samples) + 46
    shdr = b"".join(rec.pack(*h) for h in headers)
    info = data[lists[b"INFO"][0]:lists[b"INFO"][1]]
    out = [_chunk(b"LIST", b"INFO" + info), _chunk(b"LIST", b"sdta" + _chunk(b"smpl", b"".join(pcm))),
           _chunk(b"LIST", b"pdta" + b"".join(_chunk(c, shdr if c == b"shdr" else body) for c, body in pdta.items()))]
    body = b"sfbk" + b"".join(out)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    tmp.replace(dst)
    return dst


def cache_dir() -> Path:
    return Path(os.environ.get("LMDM_CACHE", Path.home() / ".cache" / "lmdm"))


def playable(font: str | Path) -> Path:
    """An SF2 path fluidsynth loads fast: `font` itself, or for an SF3 its decoded copy in the cache
    (made on first use: ~30 s for MuseScore General; keyed by size and mtime so an upgrade redoes it)."""
    font = Path(font).resolve()
    if font.suffix.lower() != ".sf3":
        return font
    st = font.stat()
    dst = cache_dir() / "soundfonts" / f"{font.stem}-{st.st_size}-{int(st.st_mtime)}.sf2"
    if not dst.is_file():
        sf3_to_sf2(font, dst)
    return dst
