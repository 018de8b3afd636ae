"""What the shipped tagger hears in audio files, per 10-s window: style, tempo class, instruments,
plus RMS and peak, and the evaluation's beat tracker's BPM (`data.tempo.estimate_tempo`, at the
file's own rate) of the whole file and of each window. The model card's listening notes come from
`python tools/tag_audio.py src/lmdm/default_model/examples/*.flac`.
Usage: python tools/tag_audio.py FILE [FILE ...]"""
import sys

import numpy as np
import soundfile as sf
import torch

from lmdm.audio.io import load_audio
from lmdm.data.tempo import estimate_tempo
from lmdm.eval.metrics import windows
from lmdm.eval.tagger import Tagger

tagger = Tagger.load()[0]
sr = tagger.cfg.sample_rate
for path in sys.argv[1:]:
    audio = load_audio(path, sr, 1)
    parts = windows(audio, sr, 10.0) or [audio]
    heard = tagger.predict(torch.from_numpy(np.stack(parts)), sr)
    native, rate = sf.read(path, always_2d=True)
    bpm = [estimate_tempo(native.T, rate)] + [estimate_tempo(native[round(k * 10 * rate):round((k + 1) * 10 * rate)].T, rate)
                                              for k in range(len(heard))]
    print(f"{path}: {audio.shape[-1] / sr:.1f} s, RMS {np.sqrt((audio ** 2).mean()):.3f}, peak {np.abs(audio).max():.2f}, "
          f"{bpm[0]:.0f} BPM")
    for k, h in enumerate(heard):
        print(f"  window {k + 1}: {h['style']}, {h['tempo']}, {', '.join(h['instruments'])}; {bpm[k + 1]:.0f} BPM")
