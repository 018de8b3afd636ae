"""Write a synthetic corpus: pieces across styles, each as audio + stems + MIDI + JSON sidecar,
indexed by a `manifest.jsonl` in the format `lmdm.data.dataset` reads.

Layout under `out/`:
    manifest.jsonl               one line per piece (path, duration, sample_rate, channels,
                                 captions, metadata, stems, midi)
    corpus.json                  the generation settings and the summary
    audio/<id>.flac|wav          the mix (16-bit)
    audio/<id>.json, <id>.mid    sidecar: metadata + captions + mix settings; the MIDI itself
    stems/<id>/<stem>.flac|wav   with `stems=True`: post-processing stems, mix == sum(stems)

Piece i has style styles[i % len(styles)] and seed `seed * 1_000_000 + i`, so a corpus is the
same whatever the number of workers, and a larger corpus with the same seed extends a smaller one.

Two renderers, each a subpackage: "v1" (`v1/`: General MIDI soundfonts, the 11 styles of
`v1/styles.py`, what the shipped default model learned from) and "v2" (`v2/`: recorded instruments
from Debian's sample packages, the 24 styles of `v2/styles.py`, a mix with EQ, compression and a
shared reverb: `v2/render.py`). Both play pieces of the one composer (`compose.py`).
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path

from ...errors import DataError
from .v1.captions import captions as make_captions
from .compose import compose
from .v1.render import SAMPLE_RATE, render_piece
from .v1.styles import STYLES, style as get_style


def synth_piece(style: str, seed: int, seconds: float, backend: str = "tinysoundfont",
                sample_rate: int = SAMPLE_RATE):
    """Compose and render one piece -> (piece, stems, mix, metadata with captions and mix settings)."""
    piece = compose(style, seed, seconds)
    stems, mix, mix_info = render_piece(piece, backend, sample_rate)
    meta = piece.metadata()
    meta["sample_rate"], meta["backend"] = sample_rate, backend
    for name, info in mix_info.items():
        meta["stems"][name].update(info)
    return piece, stems, mix, meta


def _write_audio(path: Path, audio, sample_rate: int) -> None:
    import soundfile as sf
    path.parent.mkdir(parents=True, exist_ok=True)
    # FLAC at the fastest level: 20% quicker to write than the default, about 10% larger
    options = {"compression_level": 0.0} if path.suffix == ".flac" else {}
    sf.write(str(path), audio.T, sample_rate, subtype="PCM_16", **options)


def _job(task: dict) -> dict:
    """Make and write piece `task['index']`; returns its manifest entry. Top level for multiprocessing."""
    out, index, style = Path(task["out"]), task["index"], task["style"]
    seed = task["seed"] * 1_000_000 + index
    pid, ext = f"{index:06d}-{style}", task["format"]
    started = time.process_time()
    if task["renderer"] == "v2":
        from .v2.captions import captions as captions_v2
        from .v2.render import synth_piece_v2
        piece, stems, mix, meta = synth_piece_v2(style, seed, task["seconds"], task["sample_rate"])
        caps = captions_v2(meta)
    else:
        piece, stems, mix, meta = synth_piece(style, seed, task["seconds"], task["backend"], task["sample_rate"])
        caps = make_captions(meta)
    audio_rel = f"audio/{pid}.{ext}"
    _write_audio(out / audio_rel, mix, task["sample_rate"])
    stem_paths = {}
    if task["stems"]:
        for name, audio in stems.items():
            stem_paths[name] = f"stems/{pid}/{name}.{ext}"
            _write_audio(out / stem_paths[name], audio, task["sample_rate"])
    piece.to_midi().write(str(out / f"audio/{pid}.mid"))
    sidecar = {"id": pid, "captions": caps, "metadata": meta}
    (out / f"audio/{pid}.json").write_text(json.dumps(sidecar, indent=1))
    entry = {"path": audio_rel, "duration": task["seconds"], "sample_rate": task["sample_rate"], "channels": 2,
             "captions": caps, "metadata": meta, "midi": f"audio/{pid}.mid"}
    if stem_paths:
        entry["stems"] = stem_paths
    entry["_cpu"] = time.process_time() - started   # this worker's CPU time: a load-independent speed
    entry["_bytes"] = sum((out / p).stat().st_size for p in [audio_rel, entry["midi"], *stem_paths.values()])
    return entry


def _keep_freed_memory() -> None:
    """Let glibc keep freed blocks up to 1 GiB instead of returning them to the kernel: the v2 mix
    allocates many 10-MB stem buffers per piece, and re-faulting fresh pages for each cost ~10 %
    of the CPU time (measured: 269k -> 129k page faults, user+sys 6.0 -> 5.4 s for 12 pieces).
    Inherited by forked workers. A no-op where glibc is absent."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def generate_corpus(out: str | Path, hours: float = 2.0, seed: int = 0, styles: list[str] | None = None,
                    stems: bool = False, clip_seconds: float = 30.0, backend: str = "tinysoundfont",
                    workers: int | None = None, sample_rate: int = SAMPLE_RATE, audio_format: str = "flac",
                    progress: bool = True, renderer: str = "v1") -> dict:
    """Render about `hours` of music (ceil(hours * 3600 / clip_seconds) pieces of `clip_seconds`)
    into `out` and write its manifest. Returns the summary dict (see `format_summary`).
    `renderer` "v1" (the default here, what existing code and the shipped model's recipe use) or
    "v2" (recorded instruments; the `lmdm data synth` default)."""
    if renderer not in ("v1", "v2"):
        raise DataError(f"unknown renderer {renderer!r}; use v1 or v2")
    if renderer == "v2":
        from .v2.instruments import melodic_font
        from .v2.soundfont import playable
        from .v2.styles import STYLES as STYLES2, style as get_style2
        styles = list(styles or STYLES2)
        for s in styles:
            get_style2(s)
        if sample_rate != SAMPLE_RATE:
            raise DataError(f"the v2 renderer renders at {SAMPLE_RATE} Hz, not {sample_rate}")
        playable(melodic_font())   # decode an SF3 once, here, before the workers fork
        _keep_freed_memory()
        import importlib
        for module in ("v2.captions", "v2.mix", "v2.render"):   # imported once here, inherited by forked workers
            importlib.import_module(f"{__package__}.{module}")
    else:
        styles = list(styles or STYLES)
        for s in styles:
            get_style(s)
    if hours <= 0 or clip_seconds <= 0:
        raise DataError(f"--hours ({hours}) and --clip-seconds ({clip_seconds}) must be positive")
    if audio_format not in ("flac", "wav"):
        raise DataError(f"audio format must be flac or wav, got {audio_format!r}")
    if backend not in ("tinysoundfont", "fluidsynth"):
        raise DataError(f"unknown backend {backend!r}; use tinysoundfont or fluidsynth")
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    count = max(1, math.ceil(hours * 3600 / clip_seconds))
    tasks = [{"out": str(out), "index": i, "style": styles[i % len(styles)], "seed": seed, "seconds": clip_seconds,
              "backend": backend, "sample_rate": sample_rate, "stems": stems, "format": audio_format,
              "renderer": renderer}
             for i in range(count)]
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    from tqdm import tqdm
    started, entries = time.perf_counter(), []
    if workers == 1:
        results = map(_job, tasks)
    else:
        import multiprocessing as mp
        # fork (before tqdm starts its monitor thread) saves each worker re-importing torch; the
        # workers only run numpy and tinysoundfont
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        pool = mp.get_context(method).Pool(workers)
        results = pool.imap_unordered(_job, tasks)
    bar = tqdm(total=count, unit="piece", desc="lmdm data synth", disable=not progress)
    try:
        for entry in results:
            entries.append(entry)
            bar.update(1)
            bar.set_postfix(realtime=f"{len(entries) * clip_seconds / (time.perf_counter() - started):.0f}x")
    finally:
        bar.close()
        if workers > 1:
            pool.close()
            pool.join()
    wall = time.perf_counter() - started
    entries.sort(key=lambda e: e["path"])
    cpu = sum(e.pop("_cpu") for e in entries)
    disk = sum(e.pop("_bytes") for e in entries)
    with open(out / "manifest.jsonl", "w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
    audio_hours = count * clip_seconds / 3600
    summary = {"pieces": count, "audio_seconds": count * clip_seconds, "wall_seconds": round(wall, 2),
               "realtime_factor": round(count * clip_seconds / wall, 1), "workers": workers,
               "backend": backend if renderer == "v1" else "recorded instruments", "renderer": renderer,
               "cpu_seconds": round(cpu, 2), "audio_hours_per_cpu_hour": round(audio_hours * 3600 / max(cpu, 1e-9), 1),
               "disk_bytes": disk, "disk_mb_per_audio_hour": round(disk / 1e6 / audio_hours, 1),
               "realtime_per_core": round(count * clip_seconds / max(cpu, 1e-9), 1),
               "seconds_by_style": {s: sum(clip_seconds for e in entries if e["metadata"]["style"] == s)
                                    for s in styles},
               "tempos": [e["metadata"]["tempo"] for e in entries]}
    settings = {"hours": hours, "seed": seed, "styles": styles, "stems": stems, "clip_seconds": clip_seconds,
                "backend": backend, "renderer": renderer, "sample_rate": sample_rate, "format": audio_format}
    (out / "corpus.json").write_text(json.dumps({"settings": settings, "summary": summary}, indent=1))
    return summary


def format_summary(summary: dict) -> str:
    """Hours per style and a text histogram of tempi (10-BPM bins)."""
    lines = [f"{summary['pieces']} pieces, {summary['audio_seconds'] / 3600:.2f} h of audio in "
             f"{summary['wall_seconds']:.1f} s ({summary['realtime_factor']}x real time, "
             f"{summary['workers']} workers, {summary['backend']}; {summary['realtime_per_core']}x per busy core)",
             "", "hours per style:"]
    for style, seconds in summary["seconds_by_style"].items():
        lines.append(f"  {style:<10} {seconds / 3600:6.3f} h")
    lines += ["", "tempo histogram (BPM):"]
    bins = Counter(int(t // 10 * 10) for t in summary["tempos"])
    top = max(bins.values()) if bins else 1
    for lo in range(min(bins, default=60), max(bins, default=60) + 10, 10):
        n = bins.get(lo, 0)
        lines.append(f"  {lo:3d}-{lo + 9:3d} {'#' * max(n > 0, round(40 * n / top)):<40} {n}")
    if "audio_hours_per_cpu_hour" in summary:   # the speed line the corpus card quotes
        per_cpu = summary["audio_hours_per_cpu_hour"]
        lines += ["", f"speed: {summary['realtime_factor']}x real time by the wall clock ({summary['workers']} "
                  f"worker(s), shared with whatever else runs); {per_cpu} h of audio per CPU hour of rendering "
                  f"(= {per_cpu * summary['workers']:.0f}x real time on {summary['workers']} idle core(s)); "
                  f"disk {summary['disk_mb_per_audio_hour']:.0f} MB per hour of audio"]
    return "\n".join(lines)
