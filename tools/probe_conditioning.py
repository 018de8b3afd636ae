"""Does a model use its conditioning? The measurements behind the default model card's findings.

    python tools/probe_conditioning.py context MODEL_DIR LATENTS_DIR HELDOUT/manifest.jsonl
        1. stage-1 loss on 8 training windows with the real context vs the context masked out, at
           t = 0.3, 0.6, 0.9, 1.0 (at t = 1 the target can only come from context and text);
        2. a stream primed with 10 s of the first held-out piece vs the same stream unprimed (same
           caption and seed), relative L2 of each of 8 blocks, next to two seeds' difference.
    python tools/probe_conditioning.py caption-loss MODEL_DIR LATENTS_DIR
        the loss on 32 training windows without context at t = 0.5, 0.8, 0.95, 1.0 with each item's own
        caption, the empty caption and another item's caption: how much the model uses its prompt.
    python tools/probe_conditioning.py sketch MODEL_DIR
        the output's mean loudness over four 5-s sections of a drawn sketch alternating -60 / -8 dB,
        with and without the sketch.
    python tools/probe_conditioning.py sketch-loss MODEL_DIR LATENTS_DIR
        the loss on 16 training windows without context at t = 0.5, 0.8, 0.95 with each item's own
        sketch, no sketch, and another item's sketch: a model that reads its sketch has a clear gap
        between the first and the last.
    python tools/probe_conditioning.py sketch-follow MODEL_DIR LATENTS_DIR HELDOUT/manifest.jsonl
        where a sketch gets lost: the share of latent variance the controls explain linearly; the
        router projections' norms; a control probe fitted on the latents (held-out R²); how well the
        model's one-step clean estimate follows the sketch (probe loudness correlation, t = 1 and
        0.9, vs the true latents); and in 20-s streams of 4 held-out pieces, the generated latents
        (by the probe) and the decoded audio's loudness against the sketch.
    python tools/probe_conditioning.py tempo MODEL_DIR LATENTS_DIR CONTROL_PROBE HELDOUT/manifest.jsonl
        the tempo loss (`lmdm.train.tempo_loss`, through a run's control-probe.safetensors) of real
        latents (288-frame windows of the last 60 clips) and of 13-s streams (after the first block)
        for 12 held-out captions, seeds 0-11: mean and median cross-entropy against the caption's BPM
        (a uniform guess is ln 91 = 4.51) and the share read within 4 % of it.
    python tools/probe_conditioning.py clock-loss MODEL_DIR LATENTS_DIR
        the loss on 16 training windows without context at t = 0.5, 0.8, 0.95 with the right beat clock
        (`lmdm.engine.beat`, the piece's BPM from its first frame), none, one half a beat off, one at 0.8x tempo.
    python tools/probe_conditioning.py bpm-sweep MODEL_DIR HELDOUT/manifest.jsonl
        4 held-out captions (the eval's first 4), seeds 0-3, 18-s streams at --bpm 0, 80, 100, 130, 160:
        the beat tracker's tempo of each (does sampling keep the clock's tempo?).
    python tools/probe_conditioning.py adherence MODEL_DIR HELDOUT/manifest.jsonl [N] [SECONDS]
        the eval's first N (8) captions, seeds 0.., SECONDS (20) -s text-only streams: tagger style and
        instrument agreement and tempo error per stream (a quick look before `lmdm eval`).
    python tools/probe_conditioning.py styles MODEL_DIR CORPUS/manifest.jsonl STYLE[,STYLE...]
        can the model make a style at all? For the first 3 pieces of each style in a (training) corpus,
        their first 2 captions as 20-s streams (seed = the piece's rank, 1-3): the tagger's style for
        every 10-s window, counted.
    python tools/probe_conditioning.py primed MODEL_DIR HELDOUT/manifest.jsonl STYLE[,STYLE...]
        each held-out piece of those styles: the tagger's style per 10-s window of the piece, of its
        codec round trip, and of a 30-s stream primed with its first window (its caption, seed 0).
    python tools/probe_conditioning.py tag-probe MODEL_DIR LATENTS_DIR CORPUS/manifest.jsonl STYLE[,STYLE...]
        is the tag loss blind where the eval is not? The latent tag probe (fitted as ARC-Forcing fits
        it) on each 48-frame block of `styles`'s streams, next to the eval tagger on the decoded 10-s
        windows: a probe that reads the asked style where the tagger hears another gives the tag loss
        nothing to push.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import lmdm


def context(model_dir: str, latents: str, heldout: str) -> None:
    from lmdm.audio.io import load_audio
    from lmdm.data.dataset import LatentDataset
    torch.manual_seed(0)
    m = lmdm.from_pretrained(model_dir).float().eval()
    p = m.config.pattern
    C, B = p.context_frames, p.block_frames
    ds = LatentDataset(latents, C + B, seed=0)
    items = [ds[i] for i in range(0, 320, 40)]
    x0 = torch.stack([it["latents"][..., -(C + B):] for it in items]).float()
    cond = m.dit.condition(*m.text_conditioning([it["caption"] for it in items]))
    eps = torch.randn_like(x0)
    with torch.no_grad():
        for t in (0.3, 0.6, 0.9, 1.0):
            xt, losses = (1 - t) * x0 + t * eps, []
            for use in (1.0, 0.0):
                mask = torch.zeros(len(items), 1, C + B)
                mask[..., :C] = use
                v = m.dit(xt, torch.full((len(items),), t), cond, {"context": torch.cat((mask, x0 * mask), 1)},
                          p.pattern, context_frames=C, block_frames=B, context_chunks=p.context_chunks)
                losses.append(float(F.mse_loss(v[..., C:], (eps - x0)[..., C:])))
            print(f"t={t}: loss with context {losses[0]:.3f}, without {losses[1]:.3f}")
    m = lmdm.from_pretrained(model_dir, dtype="auto")
    entry = json.loads(Path(heldout).read_text().splitlines()[0])
    audio = load_audio(Path(heldout).parent / entry["path"], m.sample_rate, m.autoencoder.config.audio_channels)
    opening = torch.from_numpy(np.ascontiguousarray(audio[:, : 10 * m.sample_rate]))[None]
    ctx = m.autoencoder.encode(opening.to(m.autoencoder.dtype))[0].float()

    def run(context_latents, seed=0):
        s = m.stream(entry["captions"][0], seed=seed, context=context_latents)
        return [s.next_latents() for _ in range(8)]
    for i, (a, b, c) in enumerate(zip(run(None), run(ctx), run(None, seed=1))):
        print(f"block {i}: primed vs unprimed {float((a - b).norm() / a.norm()):.3f}, "
              f"seed 0 vs seed 1 {float((a - c).norm() / a.norm()):.3f}")


def sketch(model_dir: str) -> None:
    import tempfile
    from lmdm.audio.controls import extract_controls
    from lmdm.engine.generate import generate, load_sketch
    m = lmdm.load(model_dir, dtype="auto")
    curve = {"loudness": [[0, -60], [4.9, -60], [5, -8], [9.9, -8], [10, -60], [14.9, -60], [15, -8], [20, -8]]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(curve, f)
    controls = load_sketch(m, f.name, 20, 1.0)
    rate = m.sample_rate / m.config.downsampling_ratio
    for name, sk in (("sketch", controls), ("no sketch", None)):
        audio = generate(m, "funky bass groove with drums, 110 BPM", 20, seed=0, sketch=sk)
        loud = extract_controls(audio.float().numpy().reshape(-1), m.sample_rate, m.config.downsampling_ratio)["loudness"]
        sections = [loud[int(i * 5 * rate) + 5: int((i + 1) * 5 * rate) - 2].mean() for i in range(4)]
        print(f"{name}: section loudness (dB) {np.round(sections, 1).tolist()}  (sketch: -60, -8, -60, -8)")


def _window_losses(m, x0: torch.Tensor, ts, variants: dict) -> None:
    """Print the target-frame loss at each t for each variant name -> (conditioning, input groups)."""
    p = m.config.pattern
    C, B = p.context_frames, p.block_frames
    eps = torch.randn_like(x0)
    with torch.no_grad():
        for t in ts:
            xt, out = (1 - t) * x0 + t * eps, []
            for name, (cond, groups) in variants.items():
                v = m.dit(xt, torch.full((len(x0),), t), cond, groups, p.pattern,
                          context_frames=C, block_frames=B, context_chunks=p.context_chunks)
                out.append(f"{name} {float(F.mse_loss(v[..., C:], (eps - x0)[..., C:])):.4f}")
            print(f"t={t}: " + ", ".join(out))


def caption_loss(model_dir: str, latents: str) -> None:
    from lmdm.data.dataset import LatentDataset
    torch.manual_seed(0)
    m = lmdm.from_pretrained(model_dir).float().eval()
    T = m.config.pattern.context_frames + m.config.pattern.block_frames
    ds = LatentDataset(latents, T, seed=0)
    items = [ds[i] for i in range(0, len(ds), max(1, len(ds) // 32))][:32]
    x0 = torch.stack([it["latents"][..., -T:] for it in items]).float()
    captions, n = [it["caption"] for it in items], len(items)
    none = {"context": torch.zeros(n, 1 + x0.shape[1], T)}
    with torch.no_grad():
        variants = {name: (m.dit.condition(*m.text_conditioning(c)), none) for name, c in
                    (("own caption", captions), ("empty caption", [""] * n),
                     ("another item's caption", captions[1:] + captions[:1]))}
    _window_losses(m, x0, (0.5, 0.8, 0.95, 1.0), variants)


def sketch_loss(model_dir: str, latents: str) -> None:
    from lmdm.audio.controls import NAMES
    from lmdm.data.dataset import LatentDataset
    from lmdm.engine.sketch import sketch_from_controls, sketch_group
    torch.manual_seed(0)
    m = lmdm.from_pretrained(model_dir).float().eval()
    T = m.config.pattern.context_frames + m.config.pattern.block_frames
    ds = LatentDataset(latents, T, seed=0, controls=True)
    items = [ds[i] for i in range(0, len(ds), max(1, len(ds) // 16))][:16]
    x0 = torch.stack([it["latents"][..., -T:] for it in items]).float()
    sk = torch.stack([sketch_from_controls(dict(zip(NAMES, it["controls"].double().numpy())))[..., -T:]
                      for it in items])
    cond = m.dit.condition(*m.text_conditioning([it["caption"] for it in items]))
    n = len(items)
    none = torch.zeros(n, 1 + x0.shape[1], T)
    groups = {"own sketch": sketch_group(sk), "no sketch": torch.zeros(n, 4, T),
              "another item's sketch": sketch_group(sk[torch.roll(torch.arange(n), 1)])}
    _window_losses(m, x0, (0.5, 0.8, 0.95), {name: (cond, {"context": none, "sketch": g}) for name, g in groups.items()})


def sketch_follow(model_dir: str, latents: str, heldout: str) -> None:
    from lmdm.audio.controls import NAMES, extract_controls
    from lmdm.audio.io import load_audio
    from lmdm.data.dataset import LatentDataset
    from lmdm.engine.sketch import normalise_loudness, sketch_from_controls, sketch_group
    from lmdm.train.control_probe import fit_control_probe, probe_pairs
    corr = lambda a, b: float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])  # noqa: E731
    m = lmdm.from_pretrained(model_dir).float().eval()
    p = m.config.pattern
    C, B = p.context_frames, p.block_frames
    ds = LatentDataset(latents, C + B, seed=0, controls=True)
    pairs = probe_pairs(ds)
    X = torch.cat([z for z, _ in pairs], -1).T.numpy()
    Y = torch.cat([sketch_from_controls(dict(zip(NAMES, ds.tensors[r["controls"]].double().numpy()))).float()
                   for r in ds.records], -1).T.numpy()
    A = np.c_[Y, np.ones(len(Y))]
    resid = X - A @ np.linalg.lstsq(A, X, rcond=None)[0]
    print(f"controls explain {1 - resid.var(0).sum() / X.var(0).sum():.1%} of the latent variance (linear)")
    print("router projection norms:", {k: round(float(v.norm()), 2) for k, v in m.dit.state_dict().items()
                                       if k.startswith(("input_groups.", "transformer.project_in"))})
    probe, r2 = fit_control_probe(pairs, x_dim := X.shape[1], 1500, progress=False)
    print(f"control probe held-out R²: loudness {r2[0]:.2f}, centroid {r2[1]:.2f}")
    torch.manual_seed(0)
    items = [ds[i] for i in range(0, len(ds), max(1, len(ds) // 16))][:16]
    x0 = torch.stack([it["latents"][..., -(C + B):] for it in items]).float()
    sk = torch.stack([sketch_from_controls(dict(zip(NAMES, it["controls"].double().numpy())))[..., -(C + B):]
                      for it in items])
    cond = m.dit.condition(*m.text_conditioning([it["caption"] for it in items]))
    n = len(items)
    none = torch.zeros(n, 1 + x_dim, C + B)
    with torch.no_grad():
        truth = np.nanmedian([corr(probe(x0)[i, 0, C:], sk[i, 0, C:]) for i in range(n)])
        for t in (1.0, 0.9):
            eps = torch.randn_like(x0)
            xt = (1 - t) * x0 + t * eps
            v = m.dit(xt, torch.full((n,), t), cond, {"context": none, "sketch": sketch_group(sk)}, p.pattern,
                      context_frames=C, block_frames=B, context_chunks=p.context_chunks)
            est = probe(torch.cat((x0[..., :C], (xt - t * v)[..., C:]), -1))
            print(f"t={t}: one-step estimate follows the sketch at {np.nanmedian([corr(est[i, 0, C:], sk[i, 0, C:]) for i in range(n)]):.2f} "
                  f"(true latents {truth:.2f})")
    sr, hop = m.sample_rate, m.config.downsampling_ratio
    rows = []
    for line in Path(heldout).read_text().splitlines()[:4]:
        e = json.loads(line)
        a = load_audio(Path(heldout).parent / e["path"], sr, m.autoencoder.config.audio_channels)[:, : 20 * sr]
        sketch = sketch_from_controls(extract_controls(a, sr, hop))
        s = m.stream(e["captions"][0], seed=0, sketch=sketch)
        lat = torch.cat([s.next_latents() for _ in range(sketch.shape[-1] // s.B)], -1)
        with torch.no_grad():
            audio = m.autoencoder.decode(lat).float()[0].numpy()
            read = probe(lat)[0, 0].numpy()
        k = lat.shape[-1]
        heard = normalise_loudness(extract_controls(audio, sr, hop)["loudness"])[:k]
        rows.append((corr(read, sketch[0, :k]), corr(heard, sketch[0, :k])))
    med = np.median(np.array(rows), 0)
    print(f"streams: generated latents follow the sketch at {med[0]:.2f} (probe), the decoded audio at {med[1]:.2f}")


def tempo(model_dir: str, latents: str, control_probe: str, heldout: str) -> None:
    from safetensors.torch import load_file
    from lmdm.data.dataset import LatentDataset
    from lmdm.train.control_probe import ControlProbe
    from lmdm.train.tempo_loss import tempo_loss
    m = lmdm.from_pretrained(model_dir).float().eval()
    frame_rate, window = 1.0 / m.config.frame_seconds, 288
    probe = ControlProbe(m.config.dit.io_channels)
    probe.load_state_dict(load_file(control_probe))
    probe.eval()

    def read(z, bpm):   # latents (io, frames) -> (cross-entropy, hit); the probe reads (dB + 40) / 40
        with torch.no_grad():
            loss, hit = tempo_loss(40 * probe(z[None].float())[:, 0] - 40, torch.tensor([float(bpm)]), frame_rate)
        return float(loss), bool(hit)

    ds = LatentDataset(latents, window, seed=0)
    real = [read(ds.tensors[r["latents"]][:, s:s + window], r["metadata"]["tempo"]) for r in ds.records[-60:]
            for s in range(0, r["frames"] - window + 1, window)]
    made = []
    for i, line in enumerate(Path(heldout).read_text().splitlines()[:12]):
        e = json.loads(line)
        stream = m.stream(e["captions"][0], seed=i)
        blocks = [stream.next_latents()[0] for _ in range(1 + -(-window // stream.B))]
        made.append(read(torch.cat(blocks[1:], -1)[:, :window], e["metadata"]["tempo"]))
    for name, rows in (("real latents", real), ("streams", made)):
        ce = np.array([r[0] for r in rows])
        print(f"{name}: tempo cross-entropy mean {ce.mean():.2f}, median {np.median(ce):.2f}; "
              f"read within 4 % of the caption's BPM: {np.mean([r[1] for r in rows]):.0%} of {len(rows)}")


def clock_loss(model_dir: str, latents: str) -> None:
    from lmdm.engine.beat import beat_group, grid_phase
    from lmdm.data.dataset import LatentDataset
    torch.manual_seed(0)
    m = lmdm.from_pretrained(model_dir).float().eval()
    T, fs = m.config.pattern.context_frames + m.config.pattern.block_frames, m.config.frame_seconds
    ds = LatentDataset(latents, T, seed=0)
    picks = list(range(0, len(ds), max(1, len(ds) // 16)))[:16]
    items = [ds[i] for i in picks]
    x0 = torch.stack([it["latents"] for it in items]).float()
    phase = torch.stack([grid_phase(it["start"], T, ds.records[i]["metadata"]["tempo"], fs) for i, it in zip(picks, items)])
    cond = m.dit.condition(*m.text_conditioning([it["caption"] for it in items]))
    none = torch.zeros(len(items), 1 + x0.shape[1], T)
    clocks = {"right clock": beat_group(phase), "no clock": torch.zeros(len(items), 3, T),
              "half a beat off": beat_group(phase + 0.5), "0.8x tempo": beat_group(phase * 0.8)}
    _window_losses(m, x0, (0.5, 0.8, 0.95), {k: (cond, {"context": none, "beat": g}) for k, g in clocks.items()})


def _eval_captions(heldout: str, n: int) -> list[dict]:
    """The eval's first n held-out entries (`lmdm.eval.suite.evaluate`'s order for seed 0)."""
    from lmdm.data.dataset import read_manifest
    entries = read_manifest(heldout)
    return [entries[i] for i in np.random.default_rng(0).permutation(len(entries))[:n]]


def _stream_audio(m, caption: str, seed: int, seconds: float, **kw) -> np.ndarray:
    stream = m.stream(caption, seed=seed, **kw)
    blocks = [stream.next_block()[0] for _ in range(int(seconds / (stream.B * m.config.frame_seconds)) + 1)]
    return torch.cat(blocks, -1).float().numpy()


def bpm_sweep(model_dir: str, heldout: str) -> None:
    from lmdm.data.tempo import estimate_tempo
    m = lmdm.load(model_dir, dtype="auto")
    for k, e in enumerate(_eval_captions(heldout, 4)):
        heard = [f"{bpm} -> {estimate_tempo(_stream_audio(m, e['captions'][0], k, 18, bpm=bpm), m.sample_rate):.0f}"
                 for bpm in (0, 80, 100, 130, 160)]
        print(f"piece at {e['metadata']['tempo']} BPM: " + ", ".join(heard) + f"  ({e['captions'][0][:50]}...)")


def adherence(model_dir: str, heldout: str, n: str = "8", seconds: str = "20") -> None:
    from lmdm.engine.beat import bpm_from_text
    from lmdm.eval.suite import _adherence
    from lmdm.eval.tagger import Tagger
    m, tagger, rows = lmdm.load(model_dir, dtype="auto"), Tagger.load()[0], []
    for k, e in enumerate(_eval_captions(heldout, int(n))):
        a = _adherence(tagger, _stream_audio(m, e["captions"][0], k, float(seconds)), m.sample_rate, e["metadata"], 10.0)
        rows.append(a)
        print(f"{a['style']}: named BPM {bpm_from_text(e['captions'][0])}, asked {a['tempo']}, heard "
              f"{a['estimated_tempo']:.0f}; style {a['style_agreement']:.2f}, instruments {a['instrument_jaccard']:.2f}")
    print(f"style {np.mean([r['style_agreement'] for r in rows]):.2f}, instruments "
          f"{np.mean([r['instrument_jaccard'] for r in rows]):.2f}, median tempo error "
          f"{np.median([r['tempo_error'] for r in rows]):.1%}")


def _styles_heard(tagger, audio: np.ndarray, sr: int) -> list[str]:
    from lmdm.eval.metrics import windows
    return [p["style"] for p in tagger.predict(torch.from_numpy(np.stack(windows(audio, sr, 10.0))), sr)]


def styles(model_dir: str, corpus: str, names: str) -> None:
    from collections import Counter
    from lmdm.data.dataset import read_manifest
    from lmdm.eval.tagger import Tagger
    m, tagger, entries = lmdm.load(model_dir, dtype="auto"), Tagger.load()[0], read_manifest(corpus)
    for style in names.split(","):
        pieces = [e for e in entries if e["metadata"]["style"] == style][:3]
        heard = Counter(s for rank, e in enumerate(pieces, 1) for c in e["captions"][:2]
                        for s in _styles_heard(tagger, m.generate(c, 20.0, seed=rank).float().numpy(), m.sample_rate))
        print(f"{style}: {dict(heard.most_common())}")


def primed(model_dir: str, heldout: str, names: str) -> None:
    from lmdm.audio.io import load_audio
    from lmdm.data.dataset import read_manifest
    from lmdm.eval.tagger import Tagger
    m, tagger = lmdm.load(model_dir, dtype="auto"), Tagger.load()[0]
    sr, ae, root = m.sample_rate, m.autoencoder, Path(heldout).parent
    for e in read_manifest(heldout):
        if e["metadata"]["style"] not in names.split(","):
            continue
        audio = load_audio(root / e["path"], sr, ae.config.audio_channels)
        with torch.no_grad():
            codec = ae.decode(ae.encode(torch.from_numpy(audio[None]).to(ae.dtype)))[0].float().numpy()
            context = ae.encode(torch.from_numpy(audio[None, :, :round(m.window_seconds * sr)]).to(ae.dtype))[0]
        stream = _stream_audio(m, e["captions"][0], 0, 30.0, context=context)[:, :30 * sr]
        print(f"{e['metadata']['style']}: piece {_styles_heard(tagger, audio, sr)}, through the codec "
              f"{_styles_heard(tagger, codec, sr)}, primed stream {_styles_heard(tagger, stream, sr)}")


def tag_probe(model_dir: str, latents: str, corpus: str, names: str) -> None:
    from collections import Counter
    from lmdm.data.dataset import LatentDataset, read_manifest
    from lmdm.eval.tagger import Tagger
    from lmdm.train.tag_probe import fit_tag_probe
    m, tagger, entries = lmdm.load(model_dir, dtype="auto"), Tagger.load()[0], read_manifest(corpus)
    probe, acc = fit_tag_probe(LatentDataset(latents, m.config.pattern.window_frames), m.config.dit.io_channels)
    print(f"probe held-out accuracy: {acc}")
    for style in names.split(","):
        pieces = [e for e in entries if e["metadata"]["style"] == style][:3]
        by_probe, by_tagger = Counter(), Counter()
        for rank, e in enumerate(pieces, 1):
            for caption in e["captions"][:2]:
                stream = m.stream(caption, seed=rank)
                blocks = [stream.next_latents().float() for _ in range(9)]        # 9 x 48 frames = 20 s
                with torch.no_grad():
                    audio = m.autoencoder.decode(torch.cat(blocks, -1).to(m.autoencoder.dtype))[0].float().numpy()
                    by_probe.update(probe.styles[int(probe(b)["style"].argmax(-1)[0])] for b in blocks)
                by_tagger.update(_styles_heard(tagger, audio, m.sample_rate))
        print(f"{style}: probe per block {dict(by_probe.most_common())}; tagger per window {dict(by_tagger.most_common())}")


if __name__ == "__main__":
    {"context": context, "caption-loss": caption_loss, "sketch": sketch, "sketch-loss": sketch_loss,
     "sketch-follow": sketch_follow, "tempo": tempo, "clock-loss": clock_loss, "bpm-sweep": bpm_sweep,
     "adherence": adherence, "styles": styles, "primed": primed,
     "tag-probe": tag_probe}[sys.argv[1]](*sys.argv[2:])
