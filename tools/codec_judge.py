"""The judge's codec figures (issue 31) for one autoencoder on held-out corpus pieces.

Usage: python tools/codec_judge.py SOURCE HELDOUT/manifest.jsonl [--pieces N] [--seconds S] [--png FILE]
                                   [--json FILE] [--raw]
SOURCE: an autoencoder export folder (autoencoder.json + autoencoder.safetensors, as `lmdm train
autoencoder` writes under OUT/model), a training checkpoint `step-XXXXXXXX.ckpt` (its EMA weights
unless --raw), or an lmdm model directory / `default` (its autoencoder).

Per piece (its first S seconds): chroma-sequence and pitch-class-profile correlation with the source,
basic-pitch note F-measure against the piece's MIDI score for the round trip and for the source,
centroid and 95 % roll-off ratios (lmdm.eval.judge_suite.codec_figures), then the means and the bars
of issue 31 (chroma >= 0.85, PCP >= 0.9, note F >= 80 % of the source's, ratios within 15 %).
--png: log spectrograms of source and round trip of the first piece, one above the other.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lmdm.audio.io import load_audio
from lmdm.eval.judge_suite import codec_figures
from lmdm.eval.transcribe import midi_notes


def load_codec(source: str, raw: bool = False):
    path = Path(source)
    if path.suffix == ".ckpt":
        from lmdm.models.codec import build_autoencoder
        from lmdm.train.loop import read_checkpoint
        ck = read_checkpoint(path)
        ae = build_autoencoder(ck["config"]["autoencoder"]["model"])
        ae.load_state_dict(ck["modules"]["autoencoder"])
        if ck["ema"] is not None and not raw:
            with torch.no_grad():
                for name, value in ck["ema"].items():
                    ae.get_parameter(name).copy_(value)
        return ae.eval(), f"{path} (step {ck['step']}, {'raw' if raw or ck['ema'] is None else 'EMA'} weights)"
    if (path / "autoencoder.json").is_file():
        from lmdm.checkpoints import load_autoencoder_dir
        return load_autoencoder_dir(path), str(path)
    import lmdm
    return lmdm.load(source, dtype=torch.float32).autoencoder.eval(), source


def spectrogram_png(x: np.ndarray, y: np.ndarray, sr: int, out: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    for ax, a, name in zip(axes, (x, y), ("source", "round trip")):
        spec = np.abs(np.fft.rfft(np.lib.stride_tricks.sliding_window_view(a.mean(0), 4096)[::1024]
                                  * np.hanning(4096), axis=-1)).T
        db = 20 * np.log10(spec + 1e-6)
        ax.imshow(db, origin="lower", aspect="auto", vmin=db.max() - 90, vmax=db.max(), cmap="magma",
                  extent=(0, a.shape[-1] / sr, 0, sr / 2))
        ax.set_yscale("symlog", linthresh=500)
        ax.set_ylim(30, sr / 2)
        ax.set_ylabel(f"{name}: Hz")
    axes[0].set_title(title)
    axes[1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source")
    p.add_argument("manifest")
    p.add_argument("--pieces", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--png", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--raw", action="store_true", help="a checkpoint's raw weights, not its EMA")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ae, name = load_codec(args.source, args.raw)
    sr, ch = ae.sample_rate, ae.config.audio_channels
    manifest = Path(args.manifest)
    rows = []
    for i, line in enumerate(manifest.read_text().splitlines()[:args.pieces]):
        e = json.loads(line)
        n = round(args.seconds * sr)
        x = load_audio(manifest.parent / e["path"], sr, ch)[:, :n]
        with torch.no_grad():
            y = ae.decode(ae.encode(torch.from_numpy(x)[None]))[0, :, :x.shape[-1]].float().numpy()
        score = midi_notes(manifest.parent / e["midi"], 0.0, args.seconds) if e.get("midi") else None
        rows.append({"path": e["path"], **codec_figures(x, y, sr, score)})
        r = rows[-1]
        print(f"{e['path']}: chroma {r['chroma_correlation']:.3f} pcp {r['pcp_correlation']:.3f} "
              f"note F {r.get('note_f', float('nan')):.3f} (source {r.get('note_f_original', float('nan')):.3f}) "
              f"centroid x{r['centroid_ratio']:.3f} roll-off x{r['rolloff_ratio']:.3f} mrstft {r['mrstft']:.3f}",
              flush=True)
        if i == 0 and args.png:
            spectrogram_png(x, y, sr, args.png, f"{Path(e['path']).name} through {name}")

    def mean(k):
        v = [r[k] for r in rows if r.get(k) is not None]
        return float(np.mean(v)) if v else None
    s = {k: mean(k) for k in ("chroma_correlation", "pcp_correlation", "note_f", "note_f_original",
                               "centroid_ratio", "rolloff_ratio", "mrstft")}
    s["note_f_relative"] = s["note_f"] / s["note_f_original"] if s["note_f"] is not None and s["note_f_original"] else None
    bars = {"chroma >= 0.85": s["chroma_correlation"] >= 0.85, "pcp >= 0.9": s["pcp_correlation"] >= 0.9,
            "note F >= 80 % of source": s["note_f_relative"] is not None and s["note_f_relative"] >= 0.8,
            "centroid within 15 %": abs(s["centroid_ratio"] - 1) <= 0.15,
            "roll-off within 15 %": abs(s["rolloff_ratio"] - 1) <= 0.15}
    print(f"{name} on {len(rows)} pieces x {args.seconds:g} s: " + ", ".join(
        f"{k} {v:.3f}" for k, v in s.items() if v is not None))
    print("bars: " + ", ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in bars.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"source": name, "summary": s, "bars": bars, "pieces": rows}, indent=1))


if __name__ == "__main__":
    main()
