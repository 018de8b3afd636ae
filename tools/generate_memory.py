"""Benchmark (not a test): does a long `lmdm generate` to a file hold flat memory?

Runs `python -m lmdm generate` on the tiny random live model (`lmdm.live.testmodel`: a toy stereo
autoencoder, 128-frame blocks; at --sample-rate 8000 (default, so a few minutes of audio render in
minutes on a small shared CPU) a block is 0.51 s; the memory question is the same for any model and
rate: what is kept per block) for SECONDS of audio, sampling the process's resident memory (VmRSS) while it runs. Beside it, the
same render through the Python API with `collect=True` (generate keeps every block and
concatenates them at the end: what `lmdm generate` did before issue 34), so the two slopes are
measured side by side in one run. Prints warm RSS, growth after warm-up, the least-squares slope
and that slope extrapolated to one hour of audio.

    python tools/generate_memory.py 600          # 10 minutes of audio each way
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLLECT = """
import sys
from lmdm.audio.writer import AudioWriter
from lmdm.checkpoints import from_pretrained
model = from_pretrained(sys.argv[1])
with AudioWriter(sys.argv[3]) as w:
    w.start(model.sample_rate, 2)
    audio = model.generate("memory", float(sys.argv[2]), on_audio=lambda a: w.write(a.numpy()), collect=True)
print(audio.shape)
"""


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(cmd: list[str], seconds: float, every: float, warm_fraction: float) -> dict:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        mb = rss_mb(proc.pid)
        if mb is not None:
            samples.append((time.monotonic() - t0, mb))
        time.sleep(every)
    wall = time.monotonic() - t0
    if proc.returncode:
        raise SystemExit(f"{cmd} failed: {proc.stderr.read()[-2000:]}")
    # audio position of each sample: the render runs at a steady pace once the model is loaded
    warm = [(t, m) for t, m in samples if t >= warm_fraction * wall] or samples[-2:]
    ts, ms = [t for t, _ in warm], [m for _, m in warm]
    tm, mm = sum(ts) / len(ts), sum(ms) / len(ms)
    var = sum((t - tm) ** 2 for t in ts)
    slope_per_s = sum((t - tm) * (m - mm) for t, m in zip(ts, ms)) / var if var else 0.0
    audio_per_wall = seconds / wall
    return {"wall_s": round(wall, 1), "samples": len(samples), "rss_warm_mb": round(warm[0][1], 1),
            "rss_end_mb": round(samples[-1][1], 1), "rss_max_mb": round(max(ms), 1),
            "growth_after_warm_mb": round(samples[-1][1] - warm[0][1], 1),
            "slope_mb_per_audio_hour": round(slope_per_s / audio_per_wall * 3600, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("seconds", type=float, help="seconds of audio to render each way")
    p.add_argument("--steps", type=int, default=1, help="denoising steps of the tiny model (default 1: fast)")
    p.add_argument("--sample-rate", type=int, default=8000, help="the toy model's rate (default 8000 Hz)")
    p.add_argument("--every", type=float, default=0.5, help="RSS sampling interval in seconds")
    p.add_argument("--warm", type=float, default=0.2, help="fraction of the run before memory counts as warm")
    p.add_argument("--no-collect", action="store_true", help="skip the collect=True comparison")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    from lmdm.live.testmodel import save_tiny_live_model
    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_live_model(Path(tmp) / "tiny", steps=args.steps, sample_rate=args.sample_rate)
        out = str(Path(tmp) / "out.wav")
        env_cmd = [sys.executable, "-m", "lmdm", "generate", "memory", "--model", str(model), "--seconds",
                   str(args.seconds), "-o", out, "--quiet"]
        report = {"seconds": args.seconds, "steps": args.steps, "sample_rate": args.sample_rate,
                  # what keeping the audio costs: float32 stereo, once in the pieces, again when concatenated
                  "kept_audio_mb_per_hour": round(2 * 4 * args.sample_rate * 3600 / 2 ** 20, 1), "command": " ".join(env_cmd[1:]),
                  "generate_cli": measure(env_cmd, args.seconds, args.every, args.warm)}
        report["wav_bytes"] = os.path.getsize(out)
        if not args.no_collect:
            report["collect_true"] = measure([sys.executable, "-c", COLLECT, str(model), str(args.seconds), out],
                                             args.seconds, args.every, args.warm)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
