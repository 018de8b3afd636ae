"""Corpus v2 (the `lmdm data synth` default): 24 styles played by recorded instruments from Debian's
sample packages (`instruments.py`; melodic ones from the MuseScore General soundfont through
libfluidsynth, `soundfont.py`), mixed with EQ, compression and a shared reverb (`mix.py`);
captions that state style, key and tempo and read back (`captions.py`). Entry: `render.synth_piece_v2`."""
