"""Render the corpus card's listening examples: four v2 styles, an 8-s excerpt of each (from the
first full groove) as FLAC, and a spectrogram PNG of each, into docs/corpus/.

    python tools/corpus_examples.py            # needs the Debian sample packages and matplotlib
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from lmdm.data.synth.v2.captions import captions
from lmdm.data.synth.v2.render import synth_piece_v2

# (style, seed, drum kit): kits whose licences let the excerpts ship with the docs (CC0 Sonic Pi,
# CC-BY-SA AVL and circAfrique; the strings need none); see docs/corpus.md for attributions.
EXAMPLES = (("lofi", 3, "spacoustic"), ("metal", 4, "avl_zeppelin"), ("strings", 2, None), ("afrobeat", 3, "djembe"))
SR, SECONDS, EXCERPT = 44100, 30.0, 8.0


def spectrogram(audio: np.ndarray, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import stft
    f, t, z = stft(audio.mean(0), SR, nperseg=2048, noverlap=1536)
    db = 20 * np.log10(np.abs(z) + 1e-7)
    fig, ax = plt.subplots(figsize=(6, 2.2), dpi=64)
    ax.pcolormesh(t, f, db, vmin=db.max() - 80, vmax=db.max(), shading="auto", cmap="magma", rasterized=True)
    ax.set_yscale("symlog", linthresh=250)
    ax.set_ylim(30, 20000)
    ax.set_xlabel("s")
    ax.set_ylabel("Hz")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(out: str = "docs/corpus") -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {}
    for style, seed, kit in EXAMPLES:
        _, _, mix, meta = synth_piece_v2(style, seed, SECONDS, kit=kit)
        # the fullest groove that leaves room for the excerpt
        grooves = [s for s in meta["sections"] if s["name"] == "groove" and s["start"] <= SECONDS - EXCERPT]
        start = max(grooves, key=lambda s: (len(s["stems"]), -s["start"]))["start"]
        clip = mix[:, int(start * SR):int((start + EXCERPT) * SR)]
        sf.write(str(out_dir / f"{style}.flac"), clip.T, SR, subtype="PCM_16")
        spectrogram(clip, out_dir / f"{style}.png", f"{style}: {meta['key']}, {meta['tempo']} BPM")
        index[style] = {"seed": seed, "excerpt_start": start, "key": meta["key"], "tempo": meta["tempo"],
                        "chords": meta["chords"], "instruments": meta["instruments"],
                        "sources": {k: v["source"] for k, v in meta["stems"].items()},
                        "sections": [(s["name"], s["start"], s["stems"]) for s in meta["sections"]],
                        "caption": captions(meta)[1]}
    (out_dir / "examples.json").write_text(json.dumps(index, indent=1))
    print(json.dumps(index, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
