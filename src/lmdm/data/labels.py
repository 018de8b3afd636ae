"""The corpus metadata's label vocabulary: instrument families (General MIDI program // 8, plus
drums) and tempo classes, shared by the evaluation tagger and the training probes."""
from __future__ import annotations

GM_FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
               "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")
INSTRUMENTS = GM_FAMILIES + ("drums",)
TEMPO_CLASSES = ("slow", "medium", "fast")  # < 95, 95-130, > 130 BPM


def tempo_class(bpm: float) -> int:
    return 0 if bpm < 95 else (1 if bpm <= 130 else 2)


def instruments_of(metadata: dict) -> list[str]:
    out = set()
    for stem in metadata.get("stems", {}).values():
        out.add("drums" if stem.get("is_drum") else GM_FAMILIES[int(stem["program"]) // 8])
    return sorted(out)
