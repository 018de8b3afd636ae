"""The v2 renderer: a v2-style piece played by recorded instruments and mixed (44.1 kHz stereo).

`synth_piece_v2(style, seed, seconds)` composes with the same composer as v1 (sections, chord
movement, humanised timing and velocity), swaps a drum kit whose Debian package is missing for
the next one in the style's palette (or the soundfont's GM kit), renders every stem with
`instruments.play` and mixes with `mix.mixdown`. The metadata says what was played: key, tempo,
time signature, sections, and each stem's instrument and sample source.
"""
from __future__ import annotations

import random

from ....errors import DataError
from ..compose import compose
from .instruments import SOURCES, SR, HydrogenKit, SampleKit, SoundFontInstrument, SoundFontKit, available, \
    melodic_font, play
from .mix import mixdown
from .styles import KITS, ROOMS, TONE, style as get_style

FALLBACK_KIT = "gm_standard"


def kit_source(kit_id: str) -> str:
    if kit_id == FALLBACK_KIT:
        return "musescore" if available("musescore") else "fluidr3"
    source = KITS[kit_id].source
    return ("musescore" if available("musescore") else "fluidr3") if source == "soundfont" else source


def make_kit(kit_id: str):
    if kit_id == FALLBACK_KIT:
        return SoundFontKit(melodic_font(), 128, 0)
    kit = KITS[kit_id]
    if kit.source == "hydrogen":
        return HydrogenKit(kit.where, dict(kit.voices))
    if kit.source == "sonicpi":
        return SampleKit(dict(kit.voices))
    if kit.source == "avldrums":
        return SoundFontKit(SOURCES["avldrums"].path().parent / kit.where, 0, 0)
    bank, program = map(int, kit.where.split(":"))
    return SoundFontKit(melodic_font(), bank, program)


def usable_kit(kit_id: str, palette: tuple[str, ...]) -> str:
    """`kit_id` if its package is installed, else the next installed kit of the palette, else GM."""
    order = [kit_id] + [k for k in palette if k != kit_id]
    return next((k for k in order if available(kit_source(k))), FALLBACK_KIT)


def synth_piece_v2(style: str, seed: int, seconds: float, sample_rate: int = SR, kit: str | None = None):
    """-> (piece, stems {name: (2, n)}, mix (2, n), metadata). `kit` forces a drum kit (tests)."""
    if sample_rate != SR:
        raise DataError(f"the v2 renderer renders at {SR} Hz; got --sample-rate {sample_rate}")
    st = get_style(style)
    piece = compose(st, seed, seconds)
    font = melodic_font()
    if "drums" in piece.notes:
        piece.programs["drums"] = kit or usable_kit(piece.programs["drums"], st.palette["drums"])
    samples = int(round(seconds * SR))
    raw, sources = {}, {}
    for name, notes in piece.notes.items():
        if not notes:
            continue
        if name == "drums":
            instrument = make_kit(piece.programs[name])
            sources[name] = kit_source(piece.programs[name])
        else:
            instrument = SoundFontInstrument(font, piece.programs[name])
            sources[name] = "musescore" if font == SOURCES["musescore"].path() else "fluidr3"
        raw[name] = play(instrument, notes, samples, SR)
    if not raw:
        raise DataError(f"nothing to mix: the {style} piece with seed {seed} has no notes")
    rng = random.Random(f"mix2:{style}:{seed}")
    stems, mix, mix_info = mixdown(raw, rng, ROOMS.get(style, (0.9, 1.8)), TONE.get(style, 0.0))
    meta = metadata(piece, mix_info, sources)
    return piece, stems, mix, meta


def metadata(piece, mix_info: dict, sources: dict) -> dict:
    meta = piece.metadata()
    if piece.programs.get("drums") == FALLBACK_KIT and "drums" in meta["stems"]:
        meta["stems"]["drums"]["description"] = "drum kit"
    for name, info in mix_info["stems"].items():
        meta["stems"][name].update(info)
        meta["stems"][name]["source"] = sources[name]
        meta["stems"][name]["package"] = SOURCES[sources[name]].package
    meta.update({"renderer": "v2", "sample_rate": SR, "channels": 2, "time_signature": meta["meter"],
                 "instruments": list(dict.fromkeys(s["description"] for s in meta["stems"].values())),
                 "reverb_rt60": mix_info["rt60"],
                 "section_boundaries": sorted({s["start"] for s in meta["sections"]} - {0.0})})
    return meta
