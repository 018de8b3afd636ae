"""v2 captions: plain, varied wording that always states the style, the key and the tempo, and
`parse_caption`, which reads those three back.

A caption is built only from the piece's metadata (style, key, tempo, meter, instruments,
sections), so it cannot contradict it. Variety: a dozen sentence templates and tag lists, the
style's paraphrases, mood words, tempo words, several ways to say a key ("in A minor", "A minor
key", "key of A minor") and a tempo ("92 BPM", "92 beats per minute", "tempo 92"), instruments in
a random order, sometimes a word on the arrangement (intro, break). Grammar (docs/corpus.md):

    caption  := sentence | tags
    sentence := [mood] STYLE ... INSTRUMENTS ... KEY ... TEMPO [. structure]   (order varies)
    tags     := STYLE, mood, INSTRUMENT, ..., KEY, TEMPO                       (shuffled)
    KEY      := NOTE (major|minor) with "in", "key of", "... key" around it
    TEMPO    := N BPM | N bpm | N beats per minute | tempo N
"""
from __future__ import annotations

import random
import re

from ..v1.captions import distinct
from .styles import STYLES

_PACE = (80, "slow"), (108, "mid-tempo"), (136, "upbeat"), (999, "fast")


def tempo_word(bpm: float) -> str:
    return next(w for limit, w in _PACE if bpm < limit)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou8" else "a ") + word


def _instruments(meta: dict, rng: random.Random) -> list[str]:
    names = list(dict.fromkeys(i["description"] for i in meta["stems"].values()))
    rng.shuffle(names)
    return names


def captions(meta: dict, seed: int | None = None, count: int = 6) -> list[str]:
    rng = random.Random(f"captions2:{meta['style']}:{meta.get('seed', 0) if seed is None else seed}")
    st = STYLES[meta["style"]]
    bpm, key = meta["tempo"], meta["key"]
    sections = [s["name"] for s in meta.get("sections", [])]

    def style():
        return rng.choice(st.aliases)

    def mood():
        return rng.choice(st.moods)

    def insts(article=False):
        names = _instruments(meta, rng)
        return _join([_a(n) if article and not n.endswith(("drums", "strings")) and "percussion" not in n else n
                      for n in names])

    def k():      # a key phrase that reads after a noun ("... track in A minor")
        return rng.choice((f"in {key}", f"in the key of {key}", f"in {key}"))

    def k_list():  # one that stands alone in a list ("..., A minor key, ...")
        return rng.choice((f"in {key}", f"{key} key", f"key: {key}", f"key of {key}"))

    def t():
        return rng.choice((f"{bpm} BPM", f"{bpm} bpm", f"{bpm} beats per minute", f"at {bpm} BPM", f"tempo {bpm}"))

    def structure():
        bits = []
        if "break" in sections:
            bits.append(rng.choice(("A stripped-back break gives it room to breathe.",
                                    "Halfway through, a breakdown thins it out.")))
        if "fill" in sections and rng.random() < 0.5:
            bits.append("Drum fills mark the section changes.")
        return " " + " ".join(bits) if bits else ""

    def cap(s: str) -> str:
        return s[0].upper() + s[1:]

    templates = [
        lambda: f"{cap(_a(mood()))} {style()} track {k()}, {t()}, with {insts(True)}.",
        lambda: f"{cap(style())} {k()} at {_a(tempo_word(bpm))} {bpm} BPM: {insts()}.{structure()}",
        lambda: f"{cap(insts(True))} play {_a(mood())} {style()} groove, {t()}, {k_list()}.",
        lambda: f"{cap(tempo_word(bpm))} {style()}, {t()}, {k_list()}. {cap(insts())}.",
        lambda: f"Instrumental {style()} {k()} ({t()}) built on {insts(True)}; the mood is {mood()}.{structure()}",
        lambda: "{} and {} {} with {}, {}, {}.".format(*map(cap, rng.sample(st.moods, 1)), rng.choice(st.moods),
                                                      style(), insts(), k(), t()),
        lambda: f"A {style()} piece {k()} that moves at {bpm} beats per minute, featuring {insts(True)}.",
        lambda: f"{cap(style())} instrumental, {mood()}, {t()}, {k_list()}, {insts()}.",
    ]

    def tags():
        words = [style(), mood(), *_instruments(meta, rng), key, rng.choice((f"{bpm} bpm", f"{bpm} BPM"))]
        rng.shuffle(words)
        return ", ".join(words)

    return distinct([tags] + rng.sample(templates, len(templates)) + [tags, tags], count)


# -- reading a caption back ----------------------------------------------------------------

_ALIASES = sorted(((a.lower(), name) for name, s in STYLES.items() for a in (s.label, *s.aliases)),
                  key=lambda x: -len(x[0]))
_KEY = re.compile(r"\b([A-G][#b]?)[ -](major|minor)\b")
_TEMPO = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b|\btempo\s+(\d{2,3})\b", re.IGNORECASE)


def parse_caption(text: str) -> dict:
    """{'style', 'key', 'tempo'} read from a caption (None where absent or ambiguous): the longest
    style name or paraphrase found wins (so 'lo-fi hip hop' is not 'hip hop')."""
    low, style = text.lower(), None
    for alias, name in _ALIASES:
        m = re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", low)
        if m:
            style = name
            break
    keys = {f"{n} {m}" for n, m in _KEY.findall(text)}
    tempos = {int(a or b) for a, b in _TEMPO.findall(text)}
    return {"style": style, "key": keys.pop() if len(keys) == 1 else None,
            "tempo": tempos.pop() if len(tempos) == 1 else None}
