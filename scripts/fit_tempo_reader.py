"""Fit the tempo reader's octave choice (`lmdm/data/tempo_reader.json`) on a corpus with known tempi.

For each piece, a random crop is analysed like `lmdm.data.tempo.estimate_tempo` does: the first pass
and the Fourier tempogram's peak give a tempo each, they and their simple ratios are the candidates,
and a linear score over `candidate_features` is fitted (softmax cross-entropy, L2) to pick the
candidate within 4 % of the metadata tempo. With
`--model`, each crop first goes through that model's autoencoder, so the reader also sees audio
the way a model's decoder renders it. `--check` corpora are only measured, never fitted.

    lmdm data synth --renderer v1 --hours 2 --out runs/synth        # seed 0: the training corpus
    lmdm data synth --renderer v1 --hours 0.25 --seed 1 --out runs/heldout
    python scripts/fit_tempo_reader.py runs/synth --model default --check runs/heldout
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lmdm.audio.controls import to_mono
from lmdm.audio.io import load_audio
from lmdm.data.dataset import read_manifest
from lmdm.data.tempo import (READER_PATH, band_flux, candidate_features, first_pass_tempo, reader_layout,
                             tempo_candidates, tempogram_peak)

TOLERANCE = 0.04


def examples(corpus: Path, rate: int, crop: float, seed: int, autoencoder=None, pieces: int | None = None,
             desc: str = ""):
    """-> list of (features (n_candidates, d), label index or -1, (first pass, tempogram peak) correct, style) for
    `pieces` pieces spread evenly over the manifest (all by default)."""
    rng = np.random.default_rng(seed)
    entries = read_manifest(corpus / "manifest.jsonl")
    if pieces is not None and pieces < len(entries):
        entries = [entries[i] for i in np.linspace(0, len(entries) - 1, pieces).round().astype(int)]
    out = []
    for entry in tqdm(entries, desc=desc or str(corpus), unit="piece"):
        x = to_mono(load_audio(corpus / entry["path"], rate))
        n = int(crop * rate)
        if len(x) > n:
            start = int(rng.integers(0, len(x) - n))
            x = x[start:start + n]
        if autoencoder is not None:
            with torch.no_grad():
                x = autoencoder.decode(autoencoder.encode(torch.from_numpy(x)[None, None]))[0, 0].numpy()
        flux, frame_rate = band_flux(x, rate)
        bpm = float(entry["metadata"]["tempo"])
        first = first_pass_tempo(flux, frame_rate)
        if first == 0.0:
            out.append((None, -1, (False, False), entry["metadata"]["style"]))
            continue
        peak = tempogram_peak(flux, frame_rate)
        candidates = tempo_candidates(first, peak)
        hits = [abs(c / bpm - 1) <= TOLERANCE for c in candidates]
        out.append((candidate_features(flux, frame_rate, candidates, peak), hits.index(True) if any(hits) else -1,
                    (hits[0], abs(peak / bpm - 1) <= TOLERANCE), entry["metadata"]["style"]))
    return out


def padded(data):
    """Stack candidate lists of different lengths; missing candidates are masked out."""
    k = max(len(f) for f, *_ in data if f is not None)
    d = next(f for f, *_ in data if f is not None).shape[1]
    x = np.zeros((len(data), k, d))
    mask = np.zeros((len(data), k), dtype=bool)
    for i, (f, *_) in enumerate(data):
        if f is not None:
            x[i, :len(f)], mask[i, :len(f)] = f, True
    return x, mask


def accuracy(data, weights, mean, std) -> dict:
    x, mask = padded(data)
    scores = np.where(mask, ((x - mean) / std) @ weights, -np.inf)
    ok = np.array([label >= 0 and int(np.argmax(s)) == label for s, (_, label, *_) in zip(scores, data)])
    first, peak = np.array([f for *_, f, _ in data]).T
    styles = np.array([s for *_, s in data])
    return {"pieces": len(data), "first_pass": round(float(first.mean()), 3),
            "tempogram_peak": round(float(peak.mean()), 3), "reader": round(float(ok.mean()), 3),
            "reader_by_style": {s: round(float(ok[styles == s].mean()), 3) for s in sorted(set(styles))}}


def fit(data, l2: float):
    x, mask = padded(data)
    labels = np.array([label for _, label, *_ in data])
    keep = labels >= 0
    flat = x[mask]
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    xt = torch.tensor(((x - mean) / std)[keep])
    mt, yt = torch.tensor(mask[keep]), torch.tensor(labels[keep])
    w = torch.zeros(x.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = (xt @ w).masked_fill(~mt, float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits, yt) + l2 * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach().numpy(), mean, std


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", type=Path, help="corpus directory with manifest.jsonl (the fit data)")
    p.add_argument("--check", type=Path, nargs="*", default=[], help="corpora only measured (held out)")
    p.add_argument("--model", default=None, help="also fit on crops round-tripped through this model's autoencoder "
                   "('default' or a model directory)")
    p.add_argument("--model-pieces", type=int, default=60,
                   help="how many pieces (spread over each corpus) go through the autoencoder (default 60; "
                   "about 10 s each on 2 CPU cores)")
    p.add_argument("--rate", type=int, default=22050, help="analysis sample rate (default 22050, the default model's)")
    p.add_argument("--crop", type=float, default=30.0, help="seconds analysed per piece (default 30)")
    p.add_argument("--l2", type=float, default=1e-2, help="L2 penalty on the standardised weights (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crop positions")
    p.add_argument("--out", type=Path, default=READER_PATH, help=f"where to write the reader (default {READER_PATH})")
    a = p.parse_args(argv)
    autoencoder = None
    if a.model:
        import lmdm
        autoencoder = lmdm.load(a.model).autoencoder.float().eval()
    train = examples(a.corpus, a.rate, a.crop, a.seed, desc="fit corpus")
    if autoencoder is not None:
        train += examples(a.corpus, a.rate, a.crop, a.seed + 1, autoencoder, a.model_pieces,
                          desc="fit corpus via autoencoder")
    weights, mean, std = fit(train, a.l2)
    report = {"fit": accuracy(train, weights, mean, std)}
    for i, corpus in enumerate(a.check):
        report[f"check {corpus.name}"] = accuracy(examples(corpus, a.rate, a.crop, 100 + i), weights, mean, std)
        if autoencoder is not None:
            report[f"check {corpus.name} via autoencoder"] = accuracy(
                examples(corpus, a.rate, a.crop, 200 + i, autoencoder, a.model_pieces), weights, mean, std)
    reader = {**reader_layout(), "weights": weights.tolist(), "mean": mean.tolist(), "std": std.tolist(),
              "fit": {"command": "python scripts/fit_tempo_reader.py " + " ".join(sys.argv[1:] if argv is None else argv),
                      "corpus": str(a.corpus), "rate": a.rate, "crop_seconds": a.crop, "l2": a.l2,
                      "autoencoder": a.model, "model_pieces": a.model_pieces if a.model else None,
                      "tolerance": TOLERANCE, "accuracy": report}}
    a.out.write_text(json.dumps(reader, indent=1) + "\n")
    for name, r in report.items():
        print(f"{name}: {r['pieces']} pieces, first pass {r['first_pass']:.3f}, tempogram peak "
              f"{r['tempogram_peak']:.3f}, reader {r['reader']:.3f}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
