"""Just enough music theory for the composer: keys, modes, diatonic chords, voicings, timing grids.

Pitches are MIDI numbers; a chord is a tuple of pitch classes relative to nothing (0 = C), root
first. Everything is pure Python and deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Offset from a mode's tonic to its relative major, to decide between sharp and flat spelling.
_RELATIVE_MAJOR = {"major": 0, "minor": 3, "dorian": 10, "mixolydian": 5}
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
# Pentatonic subsets (scale-degree indices) used for melodies that should never clash.
PENTATONIC = {"major": (0, 1, 2, 4, 5), "mixolydian": (0, 1, 2, 4, 5),
              "minor": (0, 2, 3, 4, 6), "dorian": (0, 2, 3, 4, 6)}

# Chord-quality names from the intervals above the root (third, fifth[, seventh]).
_QUALITY = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug",
            (4, 7, 11): "maj7", (4, 7, 10): "7", (3, 7, 10): "m7", (3, 6, 10): "m7b5", (3, 7, 11): "mMaj7",
            (3, 6, 9): "dim7", (4, 8, 11): "maj7#5"}


@dataclass(frozen=True)
class Key:
    tonic: int   # pitch class 0..11
    mode: str

    @property
    def names(self) -> tuple[str, ...]:
        """Note spelling for this key: sharps on the sharp side of the circle of fifths (G D A E B F#)."""
        return SHARP_NAMES if (self.tonic + _RELATIVE_MAJOR[self.mode]) % 12 in (7, 2, 9, 4, 11, 6) else NOTE_NAMES

    @property
    def name(self) -> str:
        return f"{self.names[self.tonic]} {self.mode}"

    def scale(self) -> tuple[int, ...]:
        return tuple((self.tonic + i) % 12 for i in MODES[self.mode])

    def degree_pc(self, index: int) -> int:
        """Pitch class of scale index `index` (0-based, any integer; wraps over octaves)."""
        return self.scale()[index % 7]

    def chord(self, degree: int, size: int) -> tuple[int, ...]:
        """Diatonic chord on 1-based `degree`, stacking `size` thirds (3 triad, 4 seventh, 5 ninth);
        size 2 is a power chord (root + fifth)."""
        i = degree - 1
        if size == 2:
            return (self.degree_pc(i), self.degree_pc(i + 4))
        return tuple(self.degree_pc(i + 2 * k) for k in range(size))

    def pitches_in(self, low: int, high: int, pentatonic: bool = False) -> list[int]:
        """Every scale pitch in [low, high]."""
        pcs = self.scale()
        if pentatonic:
            pcs = tuple(pcs[i] for i in PENTATONIC[self.mode])
        return [p for p in range(low, high + 1) if p % 12 in pcs]


def chord_name(chord: tuple[int, ...], names: tuple[str, ...] = NOTE_NAMES) -> str:
    """Lead-sheet name: 'Am7', 'F', 'G9', 'E5' (power chord)."""
    root = names[chord[0]]
    if len(chord) == 2:
        return f"{root}5"
    quality = _QUALITY.get(tuple((pc - chord[0]) % 12 for pc in chord[1:4]), "?")
    if len(chord) >= 5:
        quality = {"7": "9", "m7": "m9", "maj7": "maj9"}.get(quality, quality + "(add9)")
    return root + quality


def nearest(pitch_classes, target: int, low: int = 0, high: int = 127) -> int:
    """The MIDI pitch with a class in `pitch_classes` closest to `target`, inside [low, high]."""
    best = None
    for p in range(max(low, target - 12), min(high, target + 12) + 1):
        if p % 12 in pitch_classes and (best is None or abs(p - target) < abs(best - target)):
            best = p
    return target if best is None else best


def voice(chord: tuple[int, ...], previous: list[int] | None, low: int, high: int) -> list[int]:
    """Close-position voicing of `chord` in [low, high] with the smallest total movement from the
    previous voicing (simple voice leading), so comping sounds like a player rather than blocks."""
    center = (low + high) // 2 if not previous else round(sum(previous) / len(previous))
    candidates = []
    for inversion in range(len(chord)):
        pcs = chord[inversion:] + chord[:inversion]
        for base in range(low, low + 12):
            if base % 12 != pcs[0]:
                continue
            notes, p = [base], base
            for pc in pcs[1:]:
                p += (pc - p) % 12 or 12
                notes.append(p)
            for shift in (0, 12, 24):
                shifted = [n + shift for n in notes]
                if shifted[-1] <= high:
                    candidates.append(shifted)
    if not candidates:  # range narrower than the chord: stack from low anyway
        return sorted(low + (pc - low) % 12 for pc in chord)
    return min(candidates, key=lambda v: abs(sum(v) / len(v) - center))


class Grid:
    """Maps (bar, step) to seconds. `steps` per beat is 4 (sixteenths); swing delays the off-beat
    of each pair of `swing_unit` notes (8 = swung eighths, 16 = swung sixteenths) so that it sits
    at `swing` of the pair's span (0.5 straight, 0.67 triplet feel). Time is warped piecewise
    linearly inside each pair, so fractional steps (note ends) move with the notes they end."""

    def __init__(self, bpm: float, beats_per_bar: int, swing: float = 0.5, swing_unit: int = 8):
        self.bpm, self.beats_per_bar = bpm, beats_per_bar
        self.beat = 60.0 / bpm
        self.step = self.beat / 4
        self.steps_per_bar = 4 * beats_per_bar
        self.bar = self.beat * beats_per_bar
        self.swing, self.swing_unit = swing, swing_unit

    def time(self, bar: int, step: float) -> float:
        pair = 2 if self.swing_unit == 16 else 4    # steps spanned by one swung pair
        base, within = divmod(step, pair)
        half, cut = pair / 2, pair * self.swing
        within = within * cut / half if within <= half else cut + (within - half) * (pair - cut) / half
        return bar * self.bar + (base * pair + within) * self.step
