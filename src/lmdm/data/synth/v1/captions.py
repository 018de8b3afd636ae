"""Natural-language captions from a piece's metadata, in the manner of MusicCaps / Song Describer.

Every caption is built only from fields of the metadata dict (style, tempo, key, meter, the
stems' instrument descriptions, the sections), so it cannot contradict it: no instrument, tempo,
key or style is ever mentioned that the metadata does not hold. Variety comes from templates,
paraphrases of the style name, mood adjectives that fit the whole style, tempo words and the
order in which instruments are listed.
"""
from __future__ import annotations

import random

from .styles import STYLES

ROLE = {"drums": "{}", "bass": "{} line", "chords": "{} chords", "melody": "{} melody", "pad": "{}"}
PLURAL = ("chords", "arpeggios", "drums", "percussion", "strings")
PACE = {"slow": "slow", "mid-tempo": "moderate", "upbeat": "lively", "fast": "fast"}
ARPEGGIO_STYLES = ("ambient", "chiptune")


def tempo_word(bpm: float) -> str:
    return "slow" if bpm < 80 else "mid-tempo" if bpm < 110 else "upbeat" if bpm < 136 else "fast"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou8" else "a"


def _with_article(phrase: str) -> str:
    return phrase if phrase.endswith(PLURAL) else f"{_article(phrase)} {phrase}"


def _parts(meta: dict, rng: random.Random, articles: bool = False) -> list[str]:
    """'upright bass line', 'piano chords', ... one phrase per stem; a shared instrument is named once."""
    stems = meta["stems"]
    parts, seen = [], set()
    for name, info in stems.items():
        desc = info["description"]
        role = "{} arpeggios" if name == "chords" and meta["style"] in ARPEGGIO_STYLES else ROLE.get(name, "{}")
        if desc in seen:
            continue
        shared = [n for n, i in stems.items() if i["description"] == desc]
        seen.add(desc)
        parts.append(desc if len(shared) > 1 else role.format(desc))
    rng.shuffle(parts)
    return [_with_article(p) for p in parts] if articles else parts


def captions(meta: dict, seed: int | None = None, count: int = 6) -> list[str]:
    """`count` distinct captions (two short tag lists, the rest descriptive sentences)."""
    rng = random.Random(f"captions:{meta['style']}:{meta.get('seed', 0) if seed is None else seed}")
    st = STYLES[meta["style"]]
    bpm, key, meter = meta["tempo"], meta["key"], meta["meter"]
    sections = meta.get("sections", [])
    has_break = any(s["name"] == "break" for s in sections)
    intro = next((s for s in sections if s["name"] == "intro"), None)

    def style_name():
        return rng.choice(st.aliases)

    def mood():
        return rng.choice(st.moods)

    def instruments():
        return _join(_parts(meta, rng, articles=True))

    def meter_phrase():
        return f" in {meter} time" if meter != "4/4" or rng.random() < 0.3 else ""

    def structure():
        bits = []
        if intro and intro["stems"] and len(intro["stems"]) < len(meta["stems"]):
            names = dict.fromkeys(meta["stems"][s]["description"] for s in intro["stems"])
            bits.append(f"It opens with just the {_join(list(names))}")
        if has_break:
            bits.append(rng.choice(("a stripped-back break gives it room to breathe",
                                    "a breakdown midway thins the arrangement")))
        if not bits:
            return ""
        text = "; ".join(bits) + "."
        return " " + text[0].upper() + text[1:]

    def tags():
        words = [style_name(), mood()] + [p for p in _parts(meta, rng)]
        words += rng.sample([f"{bpm} bpm", key, tempo_word(bpm), meter if meter != "4/4" else "instrumental"], 2)
        rng.shuffle(words)
        return ", ".join(words)

    def cap(s: str) -> str:
        return s[0].upper() + s[1:]

    long_templates = [
        lambda: f"{cap(_article(m := mood()))} {m} {style_name()} track at {bpm} BPM in {key}, "
                f"featuring {instruments()}.",
        lambda: f"{cap(style_name())} instrumental in {key} with {instruments()}. The pace is {PACE[tempo_word(bpm)]}, "
                f"around {bpm} BPM.{structure()}",
        lambda: f"This is {_article(m := mood())} {m} {style_name()} piece{meter_phrase()}. You can hear "
                f"{instruments()}. It moves at {bpm} BPM in the key of {key}.",
        lambda: f"{cap(' and '.join(rng.sample(st.moods, 2)))} {style_name()}: {instruments()}; {bpm} BPM, {key}.",
        lambda: f"An instrumental {style_name()} song with {_article(m := mood())} {m} feel, built on "
                f"{instruments()}.{structure()}",
        lambda: f"{cap(tempo_word(bpm))} {style_name()} in {key}{meter_phrase()} ({bpm} BPM) where {instruments()} "
                f"play together.",
        lambda: f"{cap(instruments())} in {_article(m := mood())} {m} {style_name()} arrangement at {bpm} BPM.",
    ]
    return distinct([tags, tags] + rng.sample(long_templates, len(long_templates)), count)


def distinct(makers, count: int) -> list[str]:
    """Up to `count` different captions, one from each caption maker in turn (whitespace collapsed)."""
    out: list[str] = []
    for maker in makers:
        if len(out) >= count:
            break
        text = " ".join(maker().split())
        if text not in out:
            out.append(text)
    return out
