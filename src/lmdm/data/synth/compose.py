"""The procedural composer: style + seed + length -> a multi-track pretty_midi piece and its metadata.

A piece is an arrangement of sections (intro, groove, break, fill) over a looping chord
progression. Each stem (drums, bass, chords, melody, pad) has its own generator; sections switch
stems on and off, change drum grooves and comping rhythms, and the melody states a two-bar motif,
repeats it over the changing chords and answers it, so a minute of music evolves instead of
looping one bar. Everything comes from one `random.Random(seed)`: same seed, same piece.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .v1.styles import DRUMS, KITS, PROGRAMS, REGISTERS, Style, style as get_style
from .theory import Grid, Key, chord_name, nearest, voice

STEM_ORDER = ("drums", "bass", "chords", "melody", "pad")
VELOCITY = {"X": 112, "x": 92, "g": 50, "R": 96, "F": 92, "O": 92, "T": 90, "A": 86, "a": 80}
INTENSITY = {"intro": 0.82, "groove": 1.0, "break": 0.86, "fill": 1.0}


@dataclass
class Section:
    name: str
    start_bar: int
    bars: int
    stems: frozenset[str]
    variant: int = 0          # which groove / comping rhythm this section uses


@dataclass
class Piece:
    """A composed piece. `notes[stem]` is a list of (pitch, start s, end s, velocity)."""
    style: Style
    seed: int
    seconds: float
    bpm: int
    meter: int
    key: Key
    swing: float
    programs: dict[str, int]
    sections: list[Section]
    progression: list[tuple[int, ...]]
    chord_bars: float
    notes: dict[str, list[tuple[int, float, float, int]]] = field(default_factory=dict)

    def metadata(self) -> dict:
        grid = Grid(self.bpm, self.meter)
        stems = {}
        for name in STEM_ORDER:
            if self.notes.get(name):
                drum, program = name == "drums", self.programs[name]
                stems[name] = {"program": program, "is_drum": drum, "instrument": gm_name(program, drum),
                               "description": self.describe(program, drum), "notes": len(self.notes[name])}
        sections = []
        for s in self.sections:
            start = round(s.start_bar * grid.bar, 3)
            if start < self.seconds:
                sections.append({"name": s.name, "start": start,
                                 "end": round(min((s.start_bar + s.bars) * grid.bar, self.seconds), 3),
                                 "stems": [n for n in STEM_ORDER if n in s.stems and n in stems]})
        return {"style": self.style.name, "style_label": self.style.label, "tempo": self.bpm,
                "meter": f"{self.meter}/4", "key": self.key.name, "swing": round(self.swing, 3),
                "chords": [chord_name(c, self.key.names) for c in self.progression], "chord_bars": self.chord_bars,
                "duration": self.seconds, "seed": self.seed, "stems": stems, "sections": sections}

    def describe(self, program, drum: bool) -> str:
        """Plain name of a stem's instrument: v1 GM tables, or the v2 book's (kits named by string)."""
        if self.style.name in _v2_styles() and _v2_styles()[self.style.name] is self.style:
            from .v2.styles import KITS as KITS2, PROGRAMS as PROGRAMS2
            return KITS2[program].description if drum else PROGRAMS2[program]
        return (KITS if drum else PROGRAMS)[program]

    def to_midi(self):
        """The piece as a pretty_midi.PrettyMIDI (one instrument per stem, named after the stem)."""
        import pretty_midi
        pm = pretty_midi.PrettyMIDI(initial_tempo=float(self.bpm))
        pm.time_signature_changes.append(pretty_midi.TimeSignature(self.meter, 4, 0.0))
        if self.key.mode in ("major", "minor"):
            pm.key_signature_changes.append(pretty_midi.KeySignature(
                self.key.tonic + (12 if self.key.mode == "minor" else 0), 0.0))
        for name in STEM_ORDER:
            if self.notes.get(name):
                program = self.programs[name]
                inst = pretty_midi.Instrument(program if isinstance(program, int) else 0, is_drum=name == "drums",
                                              name=name)
                inst.notes = [pretty_midi.Note(v, p, s, e) for p, s, e, v in self.notes[name]]
                pm.instruments.append(inst)
        return pm


def _v2_styles():
    from .v2.styles import STYLES as V2
    return V2


def gm_name(program, is_drum: bool) -> str:
    if isinstance(program, str):     # a v2 kit id
        return program
    if is_drum:
        return {0: "Standard Kit", 8: "Room Kit", 16: "Power Kit", 24: "Electronic Kit", 25: "TR-808 Kit",
                32: "Jazz Kit", 40: "Brush Kit", 48: "Orchestra Kit"}[program]
    import pretty_midi
    return pretty_midi.program_to_instrument_name(program)


def compose(style_name: str | Style, seed: int, seconds: float) -> Piece:
    """`style_name`: a v1 style's name, or a Style (the v2 book passes its own)."""
    st = style_name if isinstance(style_name, Style) else get_style(style_name)
    rng = random.Random(f"{st.name}:{seed}")
    bpm = rng.randint(*st.tempo)
    key = Key(rng.randrange(12), rng.choice(st.modes))
    swing = rng.uniform(*st.swing)
    grid = Grid(bpm, st.meter, swing, st.swing_unit)
    stems = [s for s in STEM_ORDER if s in st.palette and rng.random() < st.optional.get(s, 1.0)]
    programs = {s: rng.choice(st.palette[s]) for s in stems}
    bars = math.ceil(seconds / grid.bar)
    sections = arrange(rng, bars, stems, st)
    piece = Piece(st, seed, seconds, bpm, st.meter, key, swing, programs, sections,
                  [_chord_of(key, d, st) for d in rng.choice(st.progressions)], rng.choice(st.chord_bars))
    players = {"drums": _drums, "bass": _bass, "chords": _comp, "melody": _melody, "pad": _pad}
    for stem in stems:
        notes = players[stem](rng, piece, grid, stem)
        piece.notes[stem] = _humanize(rng, notes, st.humanize, seconds)
    return piece


def _chord_of(key: Key, degree: int, st: Style) -> tuple[int, ...]:
    """The diatonic chord; with `st.harmonic_minor`, a minor key's V gets its major third (the
    leading tone: V-i is what makes a minor key sound, and read, as minor rather than relative major)."""
    chord = key.chord(degree, st.chord_size)
    if st.harmonic_minor and key.mode == "minor" and degree == 5 and len(chord) > 2:
        chord = (chord[0], (chord[1] + 1) % 12, *chord[2:])
    return chord


# -- arrangement ----------------------------------------------------------------------------

INTROS = (("drums",), ("chords", "pad"), ("drums", "bass"), ("chords", "bass", "pad"), ("drums", "chords"))
BREAKS = (("drums",), ("bass", "chords", "pad"), ("chords", "melody", "pad"), ("drums", "bass"), ("chords", "pad"))


def arrange(rng: random.Random, bars: int, stems: list[str], st: Style) -> list[Section]:
    full = frozenset(stems)

    def pick(options):
        choices = [frozenset(o) & full for o in options if frozenset(o) & full]
        return rng.choice(choices) if choices else full

    sections = [Section("intro", 0, 2 if bars < 24 else rng.choice((2, 4)), pick(INTROS))]
    grooves = 0
    while sections[-1].start_bar + sections[-1].bars < bars:
        at = sections[-1].start_bar + sections[-1].bars
        active = full - {"melody"} if grooves == 0 and rng.random() < 0.3 else full
        sections.append(Section("groove", at, rng.choice((4, 8)), active, grooves % max(1, len(st.grooves))))
        grooves += 1
        at += sections[-1].bars
        r = rng.random()
        if r < 0.35:
            sections.append(Section("break", at, rng.choice((2, 4)), pick(BREAKS), rng.randrange(4)))
        elif r < 0.75 and "drums" in full:
            sections.append(Section("fill", at, 1, full, sections[-1].variant))
    sections = [s for s in sections if s.start_bar < bars]   # the loop may overshoot the end
    for s in sections:
        s.bars = min(s.bars, bars - s.start_bar)
    return sections


def _bars(piece: Piece, stem: str):
    """(bar, section) for every bar in which `stem` plays."""
    for s in piece.sections:
        if stem in s.stems:
            for b in range(s.start_bar, s.start_bar + s.bars):
                yield b, s


def _chord(piece: Piece, grid: Grid, bar: int, step: float = 0.0) -> tuple[int, ...]:
    position = (bar + step / grid.steps_per_bar) / piece.chord_bars
    return piece.progression[int(math.floor(position + 1e-9)) % len(piece.progression)]


def _register(piece: Piece, stem: str) -> tuple[int, int]:
    return piece.style.registers.get(stem, REGISTERS[stem])


def _events(pattern: str):
    """(step, char, length in steps) for each onset of a pattern string; '-' extends the previous."""
    for i, ch in enumerate(pattern):
        if ch not in ".-":
            length = 1
            while i + length < len(pattern) and pattern[i + length] == "-":
                length += 1
            yield i, ch, length


# -- players: each returns [(pitch, start, end, velocity)] ---------------------------------

def _drums(rng, piece, grid, stem):
    st, notes = piece.style, []
    spb, grooves = grid.steps_per_bar, {}
    for bar, sec in _bars(piece, stem):
        if id(sec) not in grooves:
            groove = st.grooves[sec.variant % len(st.grooves)]
            if sec.name == "break":   # thinner kit: a random half of the voices
                groove = {v: groove[v] for v in rng.sample(sorted(groove), max(1, len(groove) // 2))}
            grooves[id(sec)] = groove
        groove = grooves[id(sec)]
        fill_from = spb - rng.choice((4, 8)) if sec.name == "fill" else spb
        gain = INTENSITY[sec.name] * st.drum_level
        for voice_name, pattern in groove.items():
            for step, ch, _ in _events(pattern):
                if step < fill_from:
                    notes.append((DRUMS[voice_name], grid.time(bar, step), grid.time(bar, step) + 0.12,
                                  _vel(rng, VELOCITY[ch] * gain)))
        if fill_from < spb:   # a roll down the toms (or snare) into the next section
            voices = rng.choice((("snare",), ("tom_hi", "tom_mid", "tom_lo", "tom_floor"), ("snare", "tom_lo")))
            for step in range(fill_from, spb, rng.choice((1, 2))):
                v = voices[(step - fill_from) * len(voices) // (spb - fill_from)]
                t = grid.time(bar, step)
                rise = (step - fill_from) / (spb - fill_from)   # crescendo through the fill
                notes.append((DRUMS[v], t, t + 0.12, _vel(rng, (70 + 40 * rise) * gain)))
        if bar == sec.start_bar and sec.name == "groove" and sec.start_bar > 0 and st.drum_level >= 1:
            notes.append((DRUMS["crash"], grid.time(bar, 0), grid.time(bar, 0) + 1.0, _vel(rng, 100)))
    return notes


def _bass(rng, piece, grid, stem):
    st, notes = piece.style, []
    low, high = _register(piece, stem)
    center = (low + high) // 2 - 3
    patterns = st.bass
    for bar, sec in _bars(piece, stem):
        if patterns == ("walking",):
            notes += _walking(rng, piece, grid, bar, low, high, center)
            continue
        pattern = patterns[(sec.variant + (bar - sec.start_bar) // 4) % len(patterns)]
        for step, ch, length in _events(pattern):
            chord = _chord(piece, grid, bar, step)
            root = nearest({chord[0]}, center, low, high)
            nxt = _chord(piece, grid, bar, step + length)
            pitch = {"R": root, "g": root, "F": root + 7, "O": root + 12,
                     "T": nearest({chord[1 if len(chord) > 2 else 0]}, root + 4, root, root + 11),
                     "A": nearest({nxt[0]}, root, low, high) + rng.choice((-1, 1))}[ch]
            end = grid.time(bar, step + (0.5 if ch == "g" else length * 0.92))
            notes.append((pitch, grid.time(bar, step), end, _vel(rng, VELOCITY.get(ch, 50) * INTENSITY[sec.name])))
    return notes


def _walking(rng, piece, grid, bar, low, high, center):
    """Quarter-note walking bass: root on the downbeat, chord and scale tones, then a chromatic
    approach into the next bar's root."""
    notes, beats = [], grid.beats_per_bar
    chord = _chord(piece, grid, bar)
    target = nearest({_chord(piece, grid, bar + 1)[0]}, center, low, high)
    pitch = nearest({chord[0]}, center, low, high)
    scale = piece.key.pitches_in(low, high)
    for beat in range(beats):
        if beat == beats - 1:
            pitch = target + rng.choice((-1, 1))
        elif beat > 0:
            tones = [p for p in scale if 0 < abs(p - pitch) <= 4] or [pitch]
            pitch = rng.choice(tones)
        t = grid.time(bar, 4 * beat)
        notes.append((pitch, t, t + grid.beat * 0.9, _vel(rng, 88)))
    return notes


def _comp(rng, piece, grid, stem):
    st, notes = piece.style, []
    low, high = _register(piece, stem)
    voicing = None
    for bar, sec in _bars(piece, stem):
        pattern = st.comp[(sec.variant + (bar - sec.start_bar) // 2) % len(st.comp)]
        arp_index = 0
        for step, ch, length in _events(pattern):
            voicing = voice(_chord(piece, grid, bar, step), voicing, low, high)
            start = grid.time(bar, step)
            end = grid.time(bar, step + (0.5 if ch == "g" else length * 0.95))
            gain = INTENSITY[sec.name]
            if ch == "a":   # arpeggio up through the voicing and its octave, then back down
                cycle = voicing + [voicing[0] + 12] + voicing[1:][::-1]
                notes.append((cycle[arp_index % len(cycle)], start, max(end, start + 0.2), _vel(rng, 78 * gain)))
                arp_index += 1
            else:
                for p in voicing:
                    notes.append((p, start, end, _vel(rng, VELOCITY[ch] * 0.85 * gain)))
    return notes


def _pad(rng, piece, grid, stem):
    """One sustained voicing per chord, held to the next chord change or the section's end."""
    low, high = _register(piece, stem)
    notes, voicing = [], None
    spb = grid.steps_per_bar
    span = max(1, int(round(piece.chord_bars * spb)))   # steps per chord
    for sec in piece.sections:
        if stem not in sec.stems:
            continue
        g, stop = sec.start_bar * spb, (sec.start_bar + sec.bars) * spb
        while g < stop:
            nxt = min(stop, (g // span + 1) * span)
            voicing = voice(_chord(piece, grid, *divmod(g, spb)), voicing, low, high)
            start, end = grid.time(*divmod(g, spb)), grid.time(*divmod(nxt, spb)) - 0.02
            notes += [(p, start, end, _vel(rng, 62 * INTENSITY[sec.name])) for p in voicing]
            g = nxt
    return notes


def _melody(rng, piece, grid, stem):
    """A two-bar motif (rhythm + melodic contour) stated, repeated over the new chords, varied and
    answered: A A A' B per eight bars, re-drawn for each section."""
    density, unit, pentatonic = piece.style.melody
    low, high = _register(piece, stem)
    scale = piece.key.pitches_in(low, high, pentatonic)
    notes, pitch = [], nearest(set(piece.progression[0]), (low + high) // 2, low, high)
    spb = grid.steps_per_bar
    motifs = {}
    for bar, sec in _bars(piece, stem):
        if id(sec) not in motifs:
            a = _motif(rng, spb, unit, density)
            motifs[id(sec)] = (a, _vary(rng, a, spb, unit, density), _motif(rng, spb, unit, density))
        a, a2, b = motifs[id(sec)]
        unit_index, half = divmod(bar - sec.start_bar, 2)
        motif = (a, a, a2, b)[unit_index % 4]
        for step, length, move in motif:
            if step // spb != half:
                continue
            s = step % spb
            chord = _chord(piece, grid, bar, s)
            if s % 4 == 0:   # strong beats land on chord tones
                pitch = nearest(set(chord), pitch + move, low, high)
            else:
                i = min(range(len(scale)), key=lambda k: abs(scale[k] - pitch))
                i = min(max(i + move, 0), len(scale) - 1)
                pitch = scale[i]
            start = grid.time(bar, s)
            end = grid.time(bar, s + length * 0.9)
            notes.append((pitch, start, end, _vel(rng, (96 if s == 0 else 84) * INTENSITY[sec.name])))
    return notes


def _motif(rng, spb, unit, density):
    """[(step within two bars, length in steps, scale-step move)]; leaves the last beat free to breathe."""
    onsets = []
    for s in range(0, 2 * spb - 4, unit):
        strength = 1.0 if s % spb == 0 else 0.8 if s % 4 == 0 else 0.55
        if rng.random() < min(0.95, density * strength * 1.5):
            onsets.append(s)
    if len(onsets) < 2:
        onsets = sorted({0, spb})
    ends = onsets[1:] + [2 * spb]
    return [(s, min(e - s, 8), rng.choice((-2, -1, -1, 0, 1, 1, 2))) for s, e in zip(onsets, ends)]


def _vary(rng, motif, spb, unit, density):
    """Keep the first bar, re-draw the second."""
    second = [m for m in _motif(rng, spb, unit, density) if m[0] >= spb]
    first = [m for m in motif if m[0] < spb]
    if first and second:
        first[-1] = (first[-1][0], min(first[-1][1], second[0][0] - first[-1][0]), first[-1][2])
    return first + second or motif


# -- shared helpers -------------------------------------------------------------------------

def _vel(rng: random.Random, v: float) -> int:
    return int(min(127, max(1, round(v + rng.uniform(-6, 6)))))


def _humanize(rng, notes, jitter, seconds):
    """Timing jitter; drop what starts after the end, cut what rings past it, and end each note
    before the next one of the same pitch starts (a note-off must not silence its successor)."""
    out = []
    for pitch, start, end, vel in sorted(notes, key=lambda n: (n[1], n[0])):
        if jitter:
            d = max(-2.5 * jitter, min(2.5 * jitter, rng.gauss(0.0, jitter)))
            start, end = max(0.0, start + d), end + d
        if start < seconds - 0.05:
            out.append([pitch, start, min(end, seconds), vel])
    last: dict[int, list] = {}
    for note in sorted(out, key=lambda n: (n[1], n[0])):
        prev = last.get(note[0])
        if prev is not None and prev[2] > note[1] - 0.005:
            prev[2] = max(prev[1] + 0.01, note[1] - 0.005)
        last[note[0]] = note
    return [(p, round(s, 5), round(e, 5), v) for p, s, e, v in sorted(out, key=lambda n: (n[1], n[0]))
            if e > s]
