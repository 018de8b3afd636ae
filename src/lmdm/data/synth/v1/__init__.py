"""Corpus v1: General MIDI rendering (the TimGM6mb soundfont through tinysoundfont, or FluidR3
through the fluidsynth program), 11 styles, an algorithmic room and bus processing — what the
shipped default model learned from.

`styles.py` also holds what both versions share: the `Style` record, the pattern language and the
General MIDI tables; v2 builds on it (v2 imports v1, never the reverse)."""
