"""The v2 style book: 24 styles played by recorded instruments. Pure data; `compose.py` plays it.

A v2 style is a `Style` (see v1/styles.py for the pattern language) whose "drums" palette names kits
of `KITS` (recorded drum kits from Debian's sample packages) instead of GM kit numbers, whose
melodic palettes are General MIDI programs played from the MuseScore General soundfont, and
whose keys are major or minor only (so every piece has a key a listener and a key finder can
name). Names and aliases are unique across the book, so a caption names exactly one style.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..v1.styles import STYLES as V1, Style

# v2 plain names for the GM programs (no style words inside: "rock organ" would read as a style).
PROGRAMS = {
    0: "grand piano", 1: "bright piano", 4: "electric piano", 5: "electric piano", 7: "clavinet", 8: "celesta",
    10: "music box", 11: "vibraphone", 12: "marimba", 16: "drawbar organ", 17: "percussive organ",
    19: "church organ", 21: "accordion", 22: "harmonica", 24: "nylon-string guitar", 25: "steel-string guitar",
    26: "hollow-body guitar", 27: "clean electric guitar", 28: "muted electric guitar", 29: "overdriven guitar",
    30: "distorted guitar", 32: "upright bass", 33: "electric bass", 34: "picked bass", 35: "fretless bass",
    36: "slap bass", 38: "synth bass", 39: "synth bass", 40: "violin", 41: "viola", 42: "cello",
    43: "contrabass", 45: "pizzicato strings", 46: "harp", 48: "string section", 49: "slow strings",
    50: "synth strings", 52: "choir", 56: "trumpet", 57: "trombone", 60: "french horn", 61: "brass section",
    64: "soprano sax", 65: "alto sax", 66: "tenor sax", 68: "oboe", 71: "clarinet", 73: "flute", 75: "pan flute",
    79: "ocarina", 80: "square-wave lead", 81: "sawtooth lead", 88: "new age pad", 89: "warm pad",
    90: "polysynth pad", 91: "choir pad", 92: "bowed pad", 94: "halo pad", 95: "sweep pad", 105: "banjo",
    110: "fiddle",
}


@dataclass(frozen=True)
class Kit:
    source: str          # hydrogen | sonicpi | avldrums | soundfont
    description: str     # how captions name it
    where: str           # hydrogen folder, avldrums .sf2 file, or soundfont "bank:program"; unused for sonicpi
    voices: tuple = ()   # ((voice, instrument-name prefix or sample files), ...)


_PEARL = (("kick", "Pearl Kick"), ("rim", "Pearl Side Stick"), ("snare", "Pearl Snare"), ("clap", "Hand Clap"),
          ("hat", "Sabian Hat Closed"), ("pedal", "Sabian Hat Pedal"), ("open", "Sabian Hat Open"),
          ("ride", "Paiste Ride"), ("crash", "Sabian Crash"), ("cowbell", "Cowbell"), ("tom_hi", "Pearl Tom 1"),
          ("tom_mid", "Pearl Tom 2"), ("tom_floor", "Pearl Tom Floor"))
_MILLO = (("kick", "Kick"), ("rim", "Stick"), ("snare", "Snare Rock"), ("clap", "Hand Clap"), ("hat", "Closed HH"),
          ("pedal", "Pedal HH"), ("open", "Open HH"), ("ride", "Ride Rock"), ("crash", "Crash"),
          ("cowbell", "Cowbell"), ("tom_hi", "Tom Hi"), ("tom_mid", "Tom Mid"), ("tom_lo", "Tom Low"))
KITS = {
    "pearl": Kit("hydrogen", "acoustic drum kit", "The Black Pearl 1.0", _PEARL),
    "forzee": Kit("hydrogen", "stereo-miked drum kit", "ForzeeStereo",
                  (("kick", "Kick"), ("snare", "Snare ("), ("rim", "Rim Click"), ("hat", "Hi-Hat Closed"),
                   ("open", "Hi-Hat Open"), ("pedal", "Hi-Hat Pedal"), ("ride", "Ride ("), ("crash", "Crash ("),
                   ("tom_hi", "Tom High"), ("tom_mid", "Tom Mid"), ("tom_lo", "Tom Low"), ("tamb", "Tambourine ("),
                   ("cowbell", "Agogo High"))),
    "millo": Kit("hydrogen", "live drum kit", "Millo_MultiLayered2", _MILLO),
    "colombo": Kit("hydrogen", "wooden drum kit", "ColomboAcousticDrumkit",
                   (("kick", "BassDrum"), ("rim", "Stick"), ("snare", "Snare1"), ("hat", "Closed HH"),
                    ("pedal", "Pedal HH"), ("open", "Open HH"), ("ride", "ride-crash20inch"),
                    ("crash", "crash16inch"), ("tom_hi", "Tom Hi"), ("tom_mid", "Tom Mid"), ("tom_lo", "Tom Low"))),
    "hardelectro": Kit("hydrogen", "electronic drum kit", "HardElectro1",
                       (("kick", "Kick 1"), ("snare", "Snare"), ("clap", "Clap 1"), ("hat", "Closed HH 1"),
                        ("open", "Open HH"))),
    "empire": Kit("hydrogen", "electronic drum machine", "ElectricEmpireKit",
                  (("kick", "Kick Hard 1"), ("snare", "Snare 1"), ("clap", "Clap"), ("hat", "Hat Closed Bs"),
                   ("open", "Hat Op Dirty"), ("tom_hi", "Conga 1"), ("tom_lo", "Conga 2"))),
    "hands": Kit("hydrogen", "hand percussion (cajon, bongos, shaker)", "Gimme A Hand 1.0",
                 (("kick", "Cajon Thump"), ("snare", "Cajon Slap"), ("shaker", "Maraca"), ("hat", "Maraca"),
                  ("clap", "Hand Clap"), ("tamb", "Tambourine"), ("cowbell", "Cowbell"), ("rim", "Clave"),
                  ("tom_hi", "Bongo Hi"), ("tom_lo", "Bongo Lo"))),
    "djembe": Kit("hydrogen", "djembe and dunun drums", "circAfrique v4",
                  (("kick", "Dununba1 Head Hit"), ("snare", "Djembe1 Slap"), ("rim", "Djembe2 Slap"),
                   ("hat", "Kenkeni1 Bell Hit"), ("shaker", "Kenkeni1 Bell Mute"), ("cowbell", "Sangban1 Bell Hit"),
                   ("tom_hi", "Djembe1 Tone"), ("tom_lo", "Djembe1 Bass"), ("tom_mid", "Sangban1 Head Hit"))),
    "breaks": Kit("hydrogen", "breakbeat kit", "VariBreaks",
                  (("kick", "VariBreaks Kick 1"), ("snare", "VariBreaks Snare 1"), ("hat", "VariBreaks Hat 1 Cl"),
                   ("open", "VariBreaks Hat 1 Op"), ("pedal", "VariBreaks Hat 1 Pd"), ("ride", "VariBreaks Hat 2 Cl"),
                   ("tom_hi", "VariBreaks Tom Hi"), ("tom_mid", "VariBreaks Tom Mid"),
                   ("tom_lo", "VariBreaks Tom Low"))),
    "avl_pearl": Kit("avldrums", "studio drum kit", "Black_Pearl_4_LV2.sf2"),
    "avl_zeppelin": Kit("avldrums", "big studio drum kit", "Red_Zeppelin_4_LV2.sf2"),
    "brushes": Kit("soundfont", "brushed drums", "128:40"),
    "orchestra": Kit("soundfont", "orchestral percussion", "128:48"),
    "sp808": Kit("sonicpi", "808 drum machine",  "",
                 (("kick", ("bd_808",)), ("snare", ("sn_dolf",)), ("clap", ("perc_snap", "perc_snap2")),
                  ("hat", ("drum_cymbal_closed",)), ("open", ("drum_cymbal_open",)), ("pedal", ("drum_cymbal_pedal",)),
                  ("crash", ("drum_splash_soft", "drum_splash_hard")), ("cowbell", ("drum_cowbell",)),
                  ("rim", ("elec_tick",)))),
    "spclub": Kit("sonicpi", "club drum machine", "",
                  (("kick", ("bd_haus",)), ("snare", ("sn_zome",)), ("clap", ("perc_snap2",)),
                   ("hat", ("drum_cymbal_closed",)), ("open", ("drum_cymbal_open",)), ("shaker", ("elec_tick",)),
                   ("crash", ("drum_splash_soft",)), ("rim", ("elec_wood",)))),
    "sptechno": Kit("sonicpi", "analog drum machine", "",
                    (("kick", ("bd_tek",)), ("snare", ("elec_snare",)), ("clap", ("elec_filt_snare",)),
                     ("hat", ("elec_tick",)), ("open", ("drum_cymbal_open",)), ("ride", ("elec_cymbal",)),
                     ("rim", ("elec_blip",)))),
    "spacoustic": Kit("sonicpi", "dry acoustic kit", "",
                      (("kick", ("drum_bass_soft", "drum_heavy_kick")),
                       ("snare", ("drum_snare_soft", "drum_snare_hard")),
                       ("hat", ("drum_cymbal_closed",)), ("pedal", ("drum_cymbal_pedal",)),
                       ("open", ("drum_cymbal_open",)), ("crash", ("drum_cymbal_soft", "drum_cymbal_hard")),
                       ("tom_hi", ("drum_tom_hi_soft", "drum_tom_hi_hard")),
                       ("tom_mid", ("drum_tom_mid_soft", "drum_tom_mid_hard")),
                       ("tom_lo", ("drum_tom_lo_soft", "drum_tom_lo_hard")), ("cowbell", ("drum_cowbell",)))),
    "spchip": Kit("sonicpi", "bleepy electronic percussion", "",
                  (("kick", ("elec_soft_kick",)), ("snare", ("elec_hi_snare",)), ("hat", ("elec_tick",)),
                   ("open", ("elec_plip",)), ("rim", ("elec_blip2",)))),
}


def _s(base: str, name: str, label: str, aliases, moods, tempo, palette, modes=("major", "minor"), **kw) -> Style:
    """A v2 style derived from a v1 one (its patterns), with new names, kits and instruments."""
    return replace(V1[base], name=name, label=label, aliases=tuple(aliases), moods=tuple(moods), tempo=tempo,
                   palette=palette, modes=modes, **kw)


ROCK_BASS = ("R.R.R.R.R.R.R.R.", "R-R-R-R-R-R-R-F-", "R-..R.R.R-..F.A.")
STRAIGHT = ({"kick": "X.......X.x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
            {"kick": "X.x.....X.x..x..", "snare": "....X.......X...", "ride": "x.x.x.x.x.x.x.x."})

STYLES: dict[str, Style] = {s.name: s for s in (
    _s("lofi", "lofi", "lo-fi hip hop", ("lo-fi hip hop", "lofi beat", "chillhop"),
       ("mellow", "dusty", "laid-back", "nostalgic"), (72, 90),
       {"drums": ("millo", "colombo", "spacoustic"), "bass": (33, 32, 35), "chords": (4, 0, 26),
        "melody": (11, 73, 26), "pad": (89,)}),
    _s("house", "house", "deep house", ("deep house", "house music", "four-on-the-floor house"),
       ("groovy", "uplifting", "hypnotic", "warm"), (118, 126),
       {"drums": ("spclub", "hardelectro"), "bass": (38, 39, 33), "chords": (0, 4, 16), "melody": (81, 11),
        "pad": (89, 88)}),
    replace(V1["house"], name="techno", label="techno", aliases=("techno", "Berlin techno", "warehouse techno"),
            moods=("hypnotic", "dark", "driving", "relentless"), tempo=(126, 134), modes=("minor",),
            progressions=((1, 1, 6, 7), (1, 4), (1, 1, 1, 6)), chord_size=3,
            grooves=({"kick": "X...X...X...X...", "open": "..x...x...x...x.", "hat": "xxxxxxxxxxxxxxxx",
                      "clap": "....x.......x..."},
                     {"kick": "X...X...X...X...", "ride": "x.x.x.x.x.x.x.x.", "rim": "..x..x....x..x.."}),
            bass=("..R...R...R...R.", "R.RR.RR.R.RR.RR."), comp=("x.....x.....x...", "...x..x....x..x."),
            palette={"drums": ("sptechno", "empire"), "bass": (38, 39), "chords": (81, 90), "melody": (81,),
                     "pad": (95, 92)}, optional={"melody": 0.4, "pad": 0.7}),
    _s("dnb", "dnb", "drum and bass", ("drum and bass", "drum & bass", "jungle"),
       ("energetic", "rolling", "fast-paced", "urgent"), (168, 176),
       {"drums": ("breaks", "spacoustic"), "bass": (38, 39), "chords": (4, 89), "melody": (81, 11),
        "pad": (89, 95)}, modes=("minor",)),
    replace(V1["dnb"], name="trap", label="trap", aliases=("trap", "trap beat", "Atlanta trap"),
            moods=("dark", "menacing", "hard-hitting", "moody"), tempo=(130, 150), modes=("minor",),
            progressions=((1, 6), (1, 6, 7, 6), (1, 4, 6, 5)), chord_size=3, chord_bars=(2,),
            grooves=({"kick": "X.....X...X.....", "snare": "........X.......", "hat": "x.x.x.x.xxxxx.x."},
                     {"kick": "X..X......X..X..", "clap": "........X.......", "hat": "xxx.x.x.xxx.xxxx"}),
            bass=("R-------..R-----", "R-----R---R-----"), comp=("x---------------", "x.......x......."),
            palette={"drums": ("sp808",), "bass": (38,), "chords": (10, 8, 49), "melody": (10, 12, 8),
                     "pad": (49, 91)}, optional={"pad": 0.5}, swing=(0.5, 0.5), registers={"bass": (26, 40)}),
    replace(V1["funk"], name="hiphop", label="boom bap hip hop",
            aliases=("boom bap hip hop", "boom bap", "East Coast hip hop", "nineties hip hop"),
            moods=("gritty", "head-nodding", "soulful", "dusty"), tempo=(86, 96), modes=("minor",),
            progressions=((1, 6), (1, 4), (1, 1, 6, 5)), chord_size=4, chord_bars=(2,),
            grooves=({"kick": "X.......x.X.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
                     {"kick": "X..x......X.....", "snare": "....X.......X..g", "hat": "x.xxx.x.x.xxx.x."}),
            bass=("R-------..R-----", "R-----.R..R-.F.."), comp=("x-------x-------", "x-----x---------"),
            palette={"drums": ("pearl", "colombo"), "bass": (33, 32), "chords": (0, 4, 48), "melody": (56, 11, 45),
                     "pad": (48, 49)}, optional={"pad": 0.4}, swing=(0.54, 0.6)),
    _s("funk", "funk", "funk", ("funk", "seventies funk", "funk jam"), ("groovy", "tight", "punchy", "sweaty"),
       (96, 112), {"drums": ("forzee", "pearl"), "bass": (36, 33), "chords": (7, 28, 27), "melody": (61, 65, 56),
                   "pad": (16,)}),
    replace(V1["house"], name="disco", label="disco", aliases=("disco", "seventies disco", "disco funk"),
            moods=("glittering", "joyful", "danceable", "uplifting"), tempo=(114, 124),
            modes=("minor", "major"), progressions=((2, 5, 1, 6), (1, 4), (6, 2, 5, 1), (1, 6, 2, 5)), chord_size=4,
            grooves=({"kick": "X...X...X...X...", "snare": "....X.......X...", "open": "..x...x...x...x.",
                      "hat": "x.g.x.g.x.g.x.g."},),
            bass=("R.O.R.O.R.O.R.O.", "R.O.R.O.F.O.R.OA"), comp=("..x...x...x...x.", "x.x.x.x.x.x.x.x."),
            palette={"drums": ("pearl", "forzee"), "bass": (33, 34), "chords": (27, 0, 48), "melody": (48, 61, 73),
                     "pad": (48, 49)}, optional={"pad": 0.6}),
    _s("jazz", "jazz", "jazz trio", ("jazz trio", "piano trio", "swing jazz"),
       ("swinging", "smoky", "sophisticated", "late-night"), (108, 170),
       {"drums": ("brushes", "colombo"), "bass": (32,), "chords": (0,), "melody": (66, 56, 0)}),
    _s("rock", "rock", "rock", ("rock", "guitar rock", "classic rock"), ("driving", "energetic", "raw", "anthemic"),
       (108, 144), {"drums": ("avl_zeppelin", "avl_pearl", "forzee"), "bass": (34, 33), "chords": (29, 30),
                    "melody": (29, 27), "pad": (16,)}),
    replace(V1["rock"], name="metal", label="heavy metal", aliases=("heavy metal", "metal", "thrash metal"),
            moods=("aggressive", "heavy", "dark", "relentless"), tempo=(150, 184), modes=("minor",),
            progressions=((1, 6, 7, 1), (1, 7, 6, 7), (1, 2, 1, 6)), chord_size=2, chord_bars=(1,),
            grooves=({"kick": "XxXxXxXxXxXxXxXx", "snare": "....X.......X...", "ride": "x.x.x.x.x.x.x.x."},
                     {"kick": "X.x.X.x.X.x.X.x.", "snare": "....X.......X...", "crash": "x.......x......."}),
            bass=("RRRRRRRRRRRRRRRR", "R.RRR.RRR.RRR.RR"), comp=("xxxxxxxxxxxxxxxx", "X.xxX.xxX.xxX.xx"),
            palette={"drums": ("avl_zeppelin", "avl_pearl"), "bass": (34,), "chords": (30,), "melody": (30,)},
            optional={}, registers={"chords": (40, 59), "melody": (57, 79), "bass": (28, 43)}),
    replace(V1["rock"], name="pop", label="pop", aliases=("pop", "pop song", "radio pop", "mainstream pop"),
            moods=("catchy", "bright", "upbeat", "feel-good"), tempo=(100, 124), modes=("major",),
            progressions=((1, 5, 6, 4), (6, 4, 1, 5), (1, 6, 4, 5), (4, 1, 5, 6)), chord_size=3,
            bass=("R-..R-..R-..R-..", "R.R.R.R.F.F.R.R."), comp=("x-x-x-x-x-x-x-x-", "x--x--x-x--x--x-"),
            palette={"drums": ("pearl", "millo", "spclub"), "bass": (33, 38), "chords": (0, 27, 25),
                     "melody": (81, 73, 11), "pad": (89, 48)}, optional={"pad": 0.6},
            registers={"chords": (55, 74), "melody": (65, 86)}),
    replace(V1["house"], name="synthwave", label="synthwave", aliases=("synthwave", "retrowave", "outrun"),
            moods=("nostalgic", "neon", "cinematic", "nocturnal"), tempo=(96, 116), modes=("minor",),
            progressions=((1, 6, 3, 7), (6, 4, 1, 5), (1, 7, 6, 7)), chord_size=3, chord_bars=(1, 2),
            grooves=({"kick": "X.......X.......", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},),
            bass=("RRRRRRRRRRRRRRRR", "R.R.R.R.R.R.R.R."), comp=("x-------x-------", "x-----x-----x---"),
            palette={"drums": ("empire", "hardelectro"), "bass": (38, 39), "chords": (90, 50), "melody": (81, 80),
                     "pad": (89, 90, 95)}, optional={"pad": 0.7}),
    _s("ambient", "ambient", "ambient", ("ambient", "ambient soundscape", "ambient drone music"),
       ("calm", "dreamy", "spacious", "meditative"), (60, 80),
       {"drums": ("spacoustic",), "bass": (35, 42), "chords": (46, 11, 8), "melody": (73, 75, 79),
        "pad": (88, 89, 91, 92, 94)}),
    replace(V1["waltz"], name="strings", label="classical strings",
            aliases=("classical strings", "string quartet", "chamber strings"),
            moods=("elegant", "stately", "bittersweet", "lyrical"), tempo=(72, 108), meter=4,
            progressions=((1, 4, 5, 1), (1, 6, 4, 5), (6, 4, 1, 5), (1, 5, 6, 3)),
            bass=("R-------R-------", "R-------F-------"), comp=("x-------x-------", "x---x---x---x---"),
            palette={"bass": (42, 43), "chords": (48, 41), "melody": (40,), "pad": (49,)}, optional={"pad": 0.5},
            registers={"bass": (36, 55)}),
    replace(V1["waltz"], name="ballad", label="piano ballad", aliases=("piano ballad", "solo piano ballad"),
            moods=("tender", "heartfelt", "wistful", "intimate"), tempo=(64, 80), meter=4, modes=("major", "minor"),
            progressions=((1, 5, 6, 4), (1, 6, 4, 5), (6, 4, 1, 5)),
            bass=("R---------------", "R-------F-------"), comp=("a.a.a.a.a.a.a.a.", "x-------x-------"),
            palette={"bass": (0,), "chords": (0,), "melody": (0,), "pad": (49, 48)}, optional={"pad": 0.4},
            registers={"bass": (36, 52)}, melody=(0.45, 2, False)),
    replace(V1["jazz"], name="blues", label="blues", aliases=("blues", "Chicago blues", "slow blues shuffle"),
            moods=("soulful", "gritty", "lonesome", "swaggering"), tempo=(72, 100), modes=("major",),
            progressions=((1, 1, 4, 1, 5, 4, 1, 5), (1, 4, 1, 5)), chord_size=3, chord_bars=(1,),
            grooves=({"kick": "X.......X.......", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},),
            bass=("R...T...F...O...", "R...F...O...F..."), comp=("x.x.x.x.x.x.x.x.", "x-..x-..x-..x-.."),
            palette={"drums": ("colombo", "millo"), "bass": (33, 32), "chords": (27, 16), "melody": (22, 65, 29)},
            swing=(0.64, 0.68)),
    replace(V1["rock"], name="country", label="country", aliases=("country", "country and western", "honky-tonk"),
            moods=("homey", "easygoing", "sunny", "twangy"), tempo=(96, 126), modes=("major",),
            progressions=((1, 4, 1, 5), (1, 5, 4, 1), (1, 1, 4, 5)), chord_size=3,
            grooves=({"kick": "X.......X.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},),
            bass=("R...F...R...F...", "R...F...O...F.A."), comp=("..x-..x-..x-..x-", "x.x.x.x.x.x.x.x."),
            palette={"drums": ("millo", "spacoustic"), "bass": (33, 32), "chords": (25, 24), "melody": (110, 105)},
            registers={"chords": (52, 72), "melody": (62, 84)}),
    replace(V1["bossa"], name="latin", label="salsa", aliases=("salsa", "Latin salsa", "Afro-Cuban salsa"),
            moods=("fiery", "festive", "danceable", "sunny"), tempo=(92, 112), modes=("minor", "major"),
            progressions=((1, 4, 5, 1), (2, 5, 1, 1), (1, 4, 5, 4)), chord_size=3,
            grooves=({"rim": "x..x..x...x.x...", "cowbell": "x.x.x.x.x.x.x.x.", "tom_hi": "..x...x...x...x.",
                      "tom_lo": "......xx......xx"},),
            bass=("...R..R....R..R.", "...R-.F-...R-.F-"), comp=("x.x..x.x.x..x.x.", "x..x..x.x..x..x."),
            palette={"drums": ("hands",), "bass": (33, 32), "chords": (0,), "melody": (61, 56, 57)},
            registers={"chords": (55, 76)}),
    replace(V1["funk"], name="afrobeat", label="afrobeat", aliases=("afrobeat", "Afrobeat groove", "Lagos afrobeat"),
            moods=("hypnotic", "joyful", "driving", "percussive"), tempo=(100, 118), modes=("minor",),
            progressions=((1, 4), (1, 1, 4, 4), (1, 7)), chord_size=3,
            grooves=({"kick": "X.....X...X.....", "snare": "....X..x....X...", "hat": "xxxxxxxxxxxxxxxx",
                      "cowbell": "x.x.xx.x.x.xx.x."},
                     {"kick": "X..x..X...X..x..", "tom_hi": "..x...x...x...x.", "shaker": "xgxgxgxgxgxgxgxg"}),
            palette={"drums": ("djembe", "millo"), "bass": (33,), "chords": (28, 27, 16), "melody": (61, 66),
                     "pad": (16,)}),
    _s("reggae", "reggae", "reggae", ("reggae", "roots reggae", "one-drop reggae"),
       ("laid-back", "sunny", "relaxed", "easy-skanking"), (66, 84),
       {"drums": ("colombo", "millo"), "bass": (33, 38), "chords": (27, 16), "melody": (22, 65), "pad": (16,)}),
    _s("bossa", "bossa", "bossa nova", ("bossa nova", "Brazilian bossa nova", "bossa"),
       ("breezy", "warm", "gentle", "sophisticated"), (120, 140),
       {"drums": ("hands", "brushes"), "bass": (32,), "chords": (24,), "melody": (73, 65)}),
    _s("chiptune", "chiptune", "chiptune", ("chiptune", "8-bit music", "video game music"),
       ("bouncy", "playful", "retro", "cheerful"), (128, 160),
       {"drums": ("spchip",), "bass": (80, 38), "chords": (80, 81), "melody": (80, 81)}),
    _s("waltz", "waltz", "orchestral waltz", ("orchestral waltz", "waltz", "romantic waltz"),
       ("elegant", "romantic", "graceful", "lilting"), (96, 150),
       {"bass": (43, 42), "chords": (45, 46), "melody": (40, 73, 68, 71), "pad": (48, 49, 60)}),
)}



# v2 harmony is tonic-centred: every chord loop returns to I (i) every other chord and holds a
# dominant (in minor, V with its leading tone: `harmonic_minor`). A loop like vi-IV-I-V leaves C
# major and A minor equally plausible to a listener and to a key finder; these do not, and a
# corpus whose captions state a key should sound in that key. Styles keep their own rhythm,
# voicing (7ths for jazz and lo-fi) and instruments.
TONIC_LOOPS = ((1, 4, 1, 5), (1, 6, 1, 5), (1, 4, 5, 1), (1, 5, 1, 4))
LOOPS = {"techno": ((1, 1, 6, 5), (1, 4, 1, 5)), "trap": ((1, 6, 1, 5), (1, 1, 6, 5)),
         "blues": ((1, 1, 4, 1, 5, 4, 1, 5), (1, 4, 1, 5)), "afrobeat": ((1, 4, 1, 5), (1, 1, 4, 5)),
         "metal": ((1, 6, 1, 5), (1, 7, 1, 5))}
SEVENTHS = ("jazz", "lofi")

# Melodies walk the full diatonic scale (v1 kept many on the pentatonic, which omits the 4th and
# 7th degrees: exactly the notes that tell a key from its neighbours a fifth away).
STYLES = {name: replace(s, progressions=LOOPS.get(name, TONIC_LOOPS), harmonic_minor=True,
                        chord_size=2 if name == "metal" else 4 if name in SEVENTHS else 3,
                        melody=(s.melody[0], s.melody[1], False))
          for name, s in STYLES.items()}

# The shared reverb's RT60 range (seconds) per style: clubs dry, halls and ambient wet.
ROOMS = {"ambient": (2.5, 3.5), "strings": (1.8, 2.6), "waltz": (1.8, 2.6), "ballad": (1.6, 2.4),
         "trap": (0.6, 1.0), "techno": (0.8, 1.4), "metal": (0.7, 1.1), "chiptune": (0.4, 0.8)}
# Extra high-shelf gain (dB, above 7-9 kHz) on every track: lo-fi is dusty, pop and EDM shine.
TONE = {"lofi": -9.0, "hiphop": -3.0, "ambient": -3.0, "ballad": -2.0, "jazz": -2.0, "bossa": -2.0,
        "reggae": -2.0, "blues": -2.0, "pop": 1.5, "house": 1.0, "techno": 1.0, "trap": 1.5, "synthwave": 1.0}


def style(name: str) -> Style:
    from ....errors import ConfigError
    if name not in STYLES:
        raise ConfigError(f"unknown v2 style {name!r}; choose from {', '.join(STYLES)}")
    return STYLES[name]
