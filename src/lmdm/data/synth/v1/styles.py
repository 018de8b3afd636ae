"""The style book: what each built-in style may choose from. Pure data; `compose.py` plays it.

Pattern strings have one character per sixteenth note of a bar (16 in 4/4, 12 in 3/4):
- drums:  X accent, x normal, g ghost, . rest
- bass:   R root, F fifth, O octave above, T third, A chromatic approach to the next chord's root,
          g dead note (short, soft), - holds the previous note one more step, . rest
- comping: X/x chord (accented/normal), g muted chord stab, a next arpeggio note, - hold, . rest
"""
from __future__ import annotations

from dataclasses import dataclass, field

# GM drum-map notes by the names the patterns use.
DRUMS = {"kick": 36, "rim": 37, "snare": 38, "clap": 39, "hat": 42, "pedal": 44, "open": 46, "ride": 51,
         "crash": 49, "tamb": 54, "shaker": 70, "cowbell": 56, "tom_hi": 50, "tom_mid": 47, "tom_lo": 45,
         "tom_floor": 41, "triangle": 81}

# Plain-language names of every program a palette can pick, for captions (GM names are awkward:
# "Electric Bass (finger)"). Kits are bank-128 programs.
PROGRAMS = {
    0: "piano", 4: "electric piano", 5: "electric piano", 7: "clavinet", 8: "celesta", 10: "music box",
    11: "vibraphone", 12: "marimba", 16: "organ", 17: "organ", 18: "rock organ", 24: "nylon-string guitar",
    26: "jazz guitar", 27: "clean electric guitar", 28: "muted electric guitar", 29: "overdriven guitar",
    30: "distorted guitar", 32: "upright bass", 33: "electric bass", 34: "picked electric bass",
    35: "fretless bass", 36: "slap bass", 38: "synth bass", 39: "synth bass", 40: "violin",
    43: "contrabass", 45: "pizzicato strings", 46: "harp", 48: "string ensemble", 49: "slow strings",
    52: "choir", 56: "trumpet", 60: "french horn", 61: "brass section", 65: "alto sax", 66: "tenor sax",
    68: "oboe", 71: "clarinet", 73: "flute", 75: "pan flute", 79: "ocarina", 80: "square-wave lead",
    81: "sawtooth lead", 88: "new age pad", 89: "warm pad", 91: "choir pad", 92: "bowed pad",
    94: "halo pad", 95: "sweep pad",
}
KITS = {0: "drum kit", 8: "room drum kit", 16: "power drum kit", 24: "electronic drums", 25: "808 drum machine",
        32: "jazz drum kit", 40: "brushed drums", 48: "orchestral percussion"}


@dataclass(frozen=True)
class Style:
    name: str                          # id used on the command line and in file names
    label: str                         # how captions name it
    aliases: tuple[str, ...]           # paraphrases of the label
    moods: tuple[str, ...]             # adjectives that fit every piece of the style
    tempo: tuple[int, int]             # BPM range (inclusive)
    meter: int                         # beats per bar (quarter-note beats)
    modes: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]   # scale degrees, 1-based
    chord_size: int                    # 2 power chord, 3 triad, 4 seventh, 5 ninth
    chord_bars: tuple[float, ...]      # how many bars one chord lasts (choices)
    grooves: tuple[dict[str, str], ...]
    bass: tuple[str, ...]              # rhythms, or ("walking",)
    comp: tuple[str, ...]
    palette: dict[str, tuple[int, ...]]   # stem -> GM programs (drums: kit numbers)
    optional: dict[str, float] = field(default_factory=dict)   # stem -> probability it is used
    swing: tuple[float, float] = (0.5, 0.5)
    swing_unit: int = 16
    melody: tuple[float, int, bool] = (0.35, 2, True)   # onset density, grid in 16ths, pentatonic
    registers: dict[str, tuple[int, int]] = field(default_factory=dict)   # overrides of REGISTERS
    drum_level: float = 1.0
    humanize: float = 0.008            # timing jitter (s, standard deviation)
    harmonic_minor: bool = False       # minor keys play V major (the v2 book; v1 keeps natural minor)


REGISTERS = {"bass": (31, 50), "chords": (55, 74), "melody": (65, 86), "pad": (52, 76)}

STYLES: dict[str, Style] = {s.name: s for s in (
    Style("lofi", "lo-fi hip hop", ("lo-fi hip hop", "lofi hip hop", "chillhop", "lo-fi beat"),
          ("mellow", "dusty", "laid-back", "nostalgic", "relaxed"), (70, 92), 4, ("minor", "dorian", "major"),
          ((2, 5, 1, 6), (1, 6, 2, 5), (4, 3, 2, 1), (1, 4), (6, 4, 1, 5), (2, 5, 1, 1)), 4, (1,),
          ({"kick": "X.....x...x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.xg"},
           {"kick": "X......x..X.....", "snare": "....X..g....X...", "hat": "x.xxx.x.x.xxx.x."}),
          ("R-----.A..F---..", "R-------..R.T-.A", "R---.....R..F-.."),
          ("x-------x-------", "x-------..x-----", "x-----x-----x---"),
          {"drums": (0, 8, 25), "bass": (33, 35, 32), "chords": (4, 0, 5), "melody": (11, 26, 73), "pad": (89,)},
          {"pad": 0.4}, swing=(0.56, 0.64), melody=(0.3, 2, True)),
    Style("house", "house", ("house", "deep house", "house music"),
          ("groovy", "uplifting", "hypnotic", "danceable"), (118, 128), 4, ("minor", "dorian", "major"),
          ((1, 6, 3, 7), (1, 4), (6, 4, 1, 5), (1, 7, 6, 7), (2, 5, 1, 1)), 4, (1, 2),
          ({"kick": "X...X...X...X...", "clap": "....x.......x...", "open": "..x...x...x...x.",
            "hat": "g.g.g.g.g.g.g.g."},
           {"kick": "X...X...X...X...", "clap": "....x.......x...", "hat": "xxxxxxxxxxxxxxxx",
            "shaker": "..g...g...g...g."}),
          ("..R...R...R...R.", "R..R..O...R..F..", "..R-..R-..R-.OR."),
          ("..x...x...x..x..", "x..x..x...x..x..", "...x..x....x..x."),
          {"drums": (24, 25, 0), "bass": (38, 39, 33), "chords": (0, 4, 61), "melody": (81, 11, 80), "pad": (89, 88)},
          {"pad": 0.6, "melody": 0.7}, swing=(0.5, 0.54), melody=(0.3, 2, True)),
    Style("dnb", "drum and bass", ("drum and bass", "drum & bass", "liquid drum and bass", "DnB"),
          ("energetic", "driving", "rolling", "fast-paced"), (164, 176), 4, ("minor", "dorian"),
          ((1, 6, 3, 7), (1, 4), (1, 7, 6, 7), (1, 6, 4, 5)), 4, (1, 2),
          ({"kick": "X.........X.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
           {"kick": "X.........x..X..", "snare": "....X..g.g..X..g", "hat": "xgxgxgxgxgxgxgxg"},
           {"kick": "X.........X.....", "snare": "....X.......X...", "ride": "x.x.x.x.x.x.x.x.",
            "shaker": "gggggggggggggggg"}),
          ("R-------..R-----", "R-----.R-.......", "R---------R.F---"),
          ("x---------------", "x.....x.........", "x-------x-------"),
          {"drums": (24, 0, 25), "bass": (38, 39), "chords": (4, 89, 5), "melody": (81, 11, 88), "pad": (89, 91, 95)},
          {"pad": 0.6, "melody": 0.7}, melody=(0.25, 2, True), registers={"bass": (28, 43)}),
    Style("funk", "funk", ("funk", "funky groove", "seventies funk", "funk jam"),
          ("groovy", "tight", "danceable", "punchy"), (96, 116), 4, ("dorian", "mixolydian"),
          ((1, 4), (1, 1, 4, 1), (1, 7, 1, 4), (1, 4, 1, 5)), 4, (1, 2),
          ({"kick": "X..x....X.x.....", "snare": "....X..g.g..X..g", "hat": "XxxxXxxxXxxxXxxx"},
           {"kick": "X.....x.X.....x.", "snare": "....X.......X..g", "hat": "x.x.x.x.x.x.x.x.",
            "cowbell": "x...x...x...x..."}),
          ("R...R.gOR...F.A.", "R.gR..O.R.gR.F.A", "R..OR...R..FR.A."),
          ("x.g.x.g.x.g.x.g.", "..x...x...x...x.", "x..gx..gx..gx..g"),
          {"drums": (0, 8), "bass": (36, 33, 34), "chords": (28, 7, 27), "melody": (61, 65, 66, 56), "pad": (16, 17)},
          {"pad": 0.3}, swing=(0.5, 0.56), melody=(0.4, 2, True), registers={"chords": (60, 76)}),
    Style("jazz", "jazz trio", ("jazz trio", "piano trio", "swing jazz", "small-group jazz"),
          ("swinging", "smoky", "sophisticated", "relaxed"), (100, 180), 4, ("major", "minor"),
          ((2, 5, 1, 1), (1, 6, 2, 5), (2, 5, 1, 6), (3, 6, 2, 5), (1, 4, 3, 6, 2, 5, 1, 1)), 4, (0.5, 1),
          ({"ride": "x...x.x.x...x.x.", "pedal": "....x.......x...", "kick": "g...g...g...g..."},
           {"ride": "x...x.x.x...x.x.", "pedal": "....x.......x...", "snare": "......g.......g."}),
          ("walking",),
          ("x-----x.........", "....x-....x-....", "..x-......x-....", ".....x-.x-......"),
          {"drums": (32, 40), "bass": (32,), "chords": (0,), "melody": (0,)},
          swing=(0.62, 0.68), swing_unit=8, melody=(0.45, 2, False),
          registers={"chords": (52, 70), "melody": (64, 86)}),
    Style("rock", "rock", ("rock", "indie rock", "guitar rock", "classic rock"),
          ("driving", "energetic", "raw", "anthemic"), (100, 150), 4, ("major", "mixolydian", "minor"),
          ((1, 5, 6, 4), (1, 4, 5, 4), (6, 4, 1, 5), (1, 7, 4, 1), (1, 4)), 2, (1, 2),
          ({"kick": "X.......X.x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
           {"kick": "X.x.....X.x..x..", "snare": "....X.......X...", "ride": "x.x.x.x.x.x.x.x."},
           {"kick": "X.......X.......", "snare": "....X.......X...", "hat": "xxxxxxxxxxxxxxxx"}),
          ("R.R.R.R.R.R.R.R.", "R-R-R-R-R-R-R-F-", "R-..R.R.R-..F.A."),
          ("x-x-x-x-x-x-x-x-", "X-------X-------", "x.x.x.x.x.x.x.x."),
          {"drums": (0, 16, 8), "bass": (34, 33), "chords": (29, 30), "melody": (30, 29, 27), "pad": (18, 16)},
          {"pad": 0.35}, melody=(0.35, 2, True), registers={"chords": (40, 64), "melody": (60, 84)}),
    Style("ambient", "ambient", ("ambient", "ambient pad music", "atmospheric ambient", "ambient soundscape"),
          ("calm", "dreamy", "spacious", "meditative", "ethereal"), (60, 84), 4, ("major", "minor", "dorian"),
          ((1, 4), (1, 6), (1, 5, 6, 4), (4, 1), (1, 3, 4, 4)), 4, (2, 4),
          ({"shaker": "x.x.x.x.x.x.x.x.", "kick": "X..............."},
           {"shaker": "g.x.g.x.g.x.g.x.", "rim": "....x.......x..."}),
          ("R---------------", "R-------R-------"),
          ("a.a.a.a.a.a.a.a.", "a.a.a.a.a.a.a.a.", "a-a-a-a-a-a-a-a-"),
          {"drums": (24, 0), "bass": (38, 35), "chords": (8, 10, 11, 46, 4), "melody": (73, 75, 79),
           "pad": (88, 89, 91, 92, 94, 95)},
          {"drums": 0.35, "melody": 0.6}, melody=(0.12, 4, True), drum_level=0.55,
          registers={"chords": (60, 84), "pad": (48, 76)}),
    Style("chiptune", "chiptune", ("chiptune", "8-bit music", "video game music", "chip music"),
          ("bouncy", "playful", "upbeat", "retro"), (120, 160), 4, ("major", "minor"),
          ((1, 5, 6, 4), (6, 4, 5, 1), (1, 6, 4, 5), (1, 4, 5, 5)), 3, (1,),
          ({"kick": "X.......X.......", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
           {"kick": "X..X..X.X.......", "snare": "....X..x....X...", "hat": "xxxxxxxxxxxxxxxx"}),
          ("R.O.R.O.R.O.R.O.", "R.R.O.R.R.R.O.R.", "R-O-F-O-R-O-F-O-"),
          ("aaaaaaaaaaaaaaaa", "a.a.a.a.a.a.a.a."),
          {"drums": (24, 25), "bass": (38, 81), "chords": (80, 81), "melody": (80, 81)},
          melody=(0.55, 2, False), humanize=0.0, registers={"chords": (60, 79), "melody": (67, 91)}),
    Style("reggae", "reggae", ("reggae", "roots reggae", "one-drop reggae", "dub-tinged reggae"),
          ("laid-back", "sunny", "relaxed", "skanking"), (66, 84), 4, ("major", "minor"),
          ((1, 4), (1, 4, 5, 4), (6, 4, 1, 5), (1, 5, 4, 4)), 3, (1, 2),
          ({"kick": "........X.......", "rim": "........X.......", "hat": "x.x.x.x.x.x.x.x."},
           {"kick": "X...X...X...X...", "rim": "........X.......", "hat": "x.xgx.xgx.xgx.xg"}),
          ("R-..F-.TR-......", "....R-.OF-.R-...", "R--.R.F.T-.F-..."),
          ("....x.......x...", "..x...x...x...x."),
          {"drums": (0, 8), "bass": (33, 38), "chords": (27, 16, 4), "melody": (56, 65, 17), "pad": (16, 17)},
          {"pad": 0.4, "melody": 0.7}, swing=(0.5, 0.6), melody=(0.3, 2, True), registers={"chords": (60, 76)}),
    Style("waltz", "orchestral waltz", ("orchestral waltz", "waltz", "classical waltz", "romantic waltz"),
          ("elegant", "romantic", "graceful", "lilting"), (96, 160), 3, ("major", "minor"),
          ((1, 4, 5, 1), (1, 6, 2, 5), (1, 5, 5, 1), (1, 1, 4, 5), (6, 2, 5, 1)), 3, (1,),
          (),
          ("R...........", "R.......F..."),
          ("....x...x...", "....x-..x-.."),
          {"bass": (45, 43), "chords": (45, 46, 0), "melody": (40, 73, 68, 71), "pad": (48, 49, 60)},
          {"pad": 0.7}, melody=(0.6, 4, False), humanize=0.012),
    Style("bossa", "bossa nova", ("bossa nova", "Brazilian bossa nova", "bossa", "bossa nova groove"),
          ("breezy", "warm", "gentle", "sophisticated"), (120, 144), 4, ("major", "minor"),
          ((2, 5, 1, 1), (1, 2, 5, 1), (1, 4, 3, 6), (1, 6, 2, 5)), 4, (1,),
          ({"rim": "x..x..x...x..x..", "kick": "X..xX..xX..xX..x", "shaker": "xgxgxgxgxgxgxgxg"},
           {"rim": "x..x...x..x..x..", "kick": "X..xX..xX..xX..x", "hat": "gggggggggggggggg"}),
          ("R-----.FR-----.F", "R...F...R...F..."),
          ("x-..x-..x-..x-..", "x..x..x...x..x..", "x.x.x..xx.x.x..x"),
          {"drums": (40, 32), "bass": (32, 33), "chords": (24,), "melody": (73, 65, 11)},
          melody=(0.35, 2, False), drum_level=0.8, registers={"chords": (52, 72)}),
)}


def style(name: str) -> Style:
    from ....errors import ConfigError
    if name not in STYLES:
        raise ConfigError(f"unknown style {name!r}; choose from {', '.join(STYLES)}")
    return STYLES[name]
