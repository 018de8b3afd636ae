"""Speed measurement of the streaming DiT, every attention pattern side by side in one run.

Timings are taken on the real `Stream` path; the cache methods are wrapped with timers so the
bootstrap, the fused first step and the subsequent steps are reported separately. Randomly
initialised weights time the same as trained ones. Speedups are ratios measured in the same
process, round-robin, so machine noise hits them alike. `end_to_end` times whole audio blocks
(DiT + streaming decode) and the text encoding of a prompt change; `batch` runs that many
streams at once (real-time factor counts all of them). `sketch` gives every stream a sketch (slow
random curves; models with the `sketch` input group), so `sketch_cfg` and `control_guidance` time
what a sketched stream costs (control guidance decodes, so it needs `end_to_end`).
Several dtypes (fp32 / bf16 / int8, `lmdm.nn.quant`) and thread counts run as more side-by-side
rows, each with its own copy of the same random weights. The report starts with the machine
(`lmdm.bench.machine`: CPU, ISA, bf16 native or emulated) and the measured matmul peak of each dtype and
thread count, which the rows' achieved GFLOP/s are read against. Every round reports the running
medians through `progress`, so a killed run still leaves figures.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import resource
import statistics
import time
from functools import wraps

import torch

from ..config import PATTERNS, PatternConfig, SamplingConfig, preset
from ..engine import guidance
from ..engine.model import LiveMusicModel
from ..errors import ConfigError
from .flops import comparison, dit_flops_per_block
from .machine import bf16_native, describe, headline, matmul_peak_gflops

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}


def resolve_bench_dtype(name: str) -> str:
    """'auto' as `lmdm generate` resolves it: bf16 where it is native (AVX-512 BF16 / AMX / a GPU), else fp32."""
    return ("bf16" if bf16_native() else "fp32") if name == "auto" else name


@dataclasses.dataclass
class Variant:
    """One arithmetic setting timed side by side: a dtype's copy of the model and a thread count."""

    model: LiveMusicModel
    dtype: str
    threads: int
    suffix: str = ""     # row-label suffix, e.g. " [int8, 1 thread]" (empty when it is the only one)


def tokens_per_block(pattern: str, C: int, B: int, steps: int) -> int:
    """Query tokens the DiT processes per block in steady state (T token included)."""
    if pattern == "bidirectional":
        return steps * (C + B + 1)
    if pattern == "enc-dec":
        return C + steps * (B + 1)
    return (steps + 1) * B + steps


def _sync() -> None:
    """GPU work is asynchronous: wait for it before reading a clock (nothing to wait for on a CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(store: list[float], fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync()
        store.append(time.perf_counter() - start)
        return out
    return wrapper


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {}
    def pct(q):
        return round(ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))], 2)
    return {"median_ms": round(statistics.median(ms), 2), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "n": len(ms)}


NO_PROMPT_GUIDANCE = "(prompt guidance off)"
NO_BEAT_GUIDANCE = "(beat guidance off)"


class _PatternRun:
    """One pattern's stream with timers around its cache phases."""

    def __init__(self, variant: Variant, pattern: PatternConfig, end_to_end: bool, batch: int,
                 sampling: SamplingConfig, sketched: bool = False, off: str = ""):
        """`off`: the label suffix of a run with one guidance turned off (NO_PROMPT_GUIDANCE, ...)."""
        model = variant.model
        self.model, self.pattern, self.batch, self.variant = model, pattern, batch, variant
        self.base_label = pattern.pattern + (f" {off}" if off else "")
        self.label = self.base_label + variant.suffix
        # a prompt that names a tempo, as the main job's does: a model with a beat clock runs it
        self.stream = model.stream("bench, 120 BPM", sampling=sampling, pattern=pattern, batch=batch)
        self.steps = self.stream.steps
        if sketched:
            self.stream.set_sketch(_bench_sketch(100_000))
        # guidance runs the model once per branch (beat guidance only on its steps): mean rows per step
        n = len(self.stream.branches)
        self.model_batch = sum(self.stream.active_rows(i) or batch * n for i in range(self.steps)) / self.steps
        self.generate = self.stream.next_block if end_to_end else self.stream.next_latents
        self.phases: dict[str, list[float]] = {}
        cache = self.stream.cache
        for name in ("bootstrap", "prefill", "fused_step", "step"):
            if cache is not None and hasattr(cache, name):
                setattr(cache, name, _timed(self.phases.setdefault(name, []), getattr(cache, name)))
        if end_to_end:   # the streaming decoder's share of each block
            dec = self.stream.decoder
            dec.push = _timed(self.phases.setdefault("decode", []), dec.push)
        self.blocks: list[float] = []

    def block(self) -> float:
        torch.set_num_threads(self.variant.threads)
        _sync()
        start = time.perf_counter()
        self.generate()
        _sync()
        return time.perf_counter() - start

    def report(self, first_block: float) -> dict:
        C, B = self.pattern.context_frames, self.pattern.block_frames
        stats = _stats(self.blocks)
        audio_s = B * self.model.config.frame_seconds * self.batch
        flops = dit_flops_per_block(self.model.config.dit, self.pattern.pattern, C, B, self.steps) * self.model_batch
        out = {"block_ms_median": stats["median_ms"], "block_ms_p90": stats["p90_ms"],
               "block_ms_p99": stats["p99_ms"], "blocks_timed": stats["n"],
               "first_block_ms": round(first_block * 1000, 2),
               "tokens_per_block": tokens_per_block(self.pattern.pattern, C, B, self.steps),
               "realtime_factor": round(audio_s / (stats["median_ms"] / 1000), 3),
               "dit_gflop_per_block": round(flops / 1e9, 4), "dtype": self.variant.dtype,
               "threads": self.variant.threads,
               "p99_over_block_duration": round(stats["p99_ms"] / 1000 / (audio_s / self.batch), 3)}
        for name, times in self.phases.items():
            if times:
                out[f"{name}_ms"] = _stats(times)
        if "decode_ms" in out:
            out["decode_share"] = round(out["decode_ms"]["median_ms"] / stats["median_ms"], 3)
        return out


def _bench_sketch(frames: int) -> torch.Tensor:
    """Slow random normalised curves (3, frames): loudness and brightness moving every ~2 s, no pitch."""
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(2, frames // 43 + 2, generator=gen) - 0.5
    curves = torch.nn.functional.interpolate(points[None], size=frames, mode="linear", align_corners=True)[0]
    return torch.cat((curves, torch.zeros(1, frames)))


def bench_patterns(variants: list[Variant], patterns: list[PatternConfig], sampling: SamplingConfig, blocks: int,
                   warmup: int, progress=None, end_to_end: bool = False, batch: int = 1,
                   sketched: bool = False) -> dict[str, dict]:
    """Round-robin: each round runs one block of every pattern, so slow drifts of the machine
    (thermal, other load) hit all patterns alike and the speedups stay honest. A model whose streams
    use prompt guidance also runs each pattern without it (rows "<pattern> (prompt guidance off)"), and one
    with beat guidance without that (rows "<pattern> (beat guidance off)"; the bench's prompt names a tempo,
    so the clock runs), so each guidance's cost is a side-by-side ratio too (`prompt_guidance_cost`,
    `beat_guidance_cost` on the guided rows). Each variant (dtype, threads) runs every row again, and
    rows of later variants get `variant_speedup`, the first variant's block time over theirs. Ratios are
    medians of per-round ratios (`_paired`). Every stream samples with `sampling` (its knobs set, the
    rest the model's defaults)."""
    runs = []
    for v in variants:
        model = v.model
        runs += [_PatternRun(v, p, end_to_end, batch, sampling, sketched) for p in patterns]
        if model.prompt_probe is not None and _strength(sampling, model, "prompt_guidance") > 0:
            off = sampling.merged(prompt_guidance=0.0)
            runs += [_PatternRun(v, p, end_to_end, batch, off, sketched, NO_PROMPT_GUIDANCE) for p in patterns]
        if _strength(sampling, model, "beat_cfg") != 1.0 and "beat" in model.config.dit.input_groups:
            off = sampling.merged(beat_cfg=1.0)
            runs += [_PatternRun(v, p, end_to_end, batch, off, sketched, NO_BEAT_GUIDANCE) for p in patterns]
    first = [run.block() for run in runs]  # includes the block-causal bootstrap
    for run in runs:
        for name, times in run.phases.items():
            if name != "bootstrap":
                times.clear()
    for i in range(warmup - 1 + blocks):
        if progress:
            progress(f"round {i + 1}/{warmup - 1 + blocks}")
        for run in runs:
            elapsed = run.block()
            if i >= warmup - 1:
                run.blocks.append(elapsed)
            else:
                for name, times in run.phases.items():
                    if name != "bootstrap":
                        times.clear()
        if progress and i >= warmup - 1:   # running medians so far: what a killed run leaves
            progress("so far (median block ms): " + "; ".join(_partial(run) for run in runs))
    rows = {run.label: run.report(f) for run, f in zip(runs, first)}
    by_label = {run.label: run for run in runs}
    for run in runs:
        row = rows[run.label]
        for key, suffix in (("prompt_guidance_cost", NO_PROMPT_GUIDANCE), ("beat_guidance_cost", NO_BEAT_GUIDANCE)):
            off = by_label.get(f"{run.base_label} {suffix}{run.variant.suffix}")
            if off:
                row[key] = _paired(run.blocks, off.blocks)
        if run.variant is not variants[0]:
            row["variant_speedup"] = _paired(by_label[run.base_label + variants[0].suffix].blocks, run.blocks)
    return rows


def _strength(sampling: SamplingConfig, model, name: str) -> float:
    """A guidance's strength in the streams: the one `sampling` sets, else the model's default."""
    value = sampling.guidance.get(name)
    return guidance.get(name).default(model.config) if value is None else value


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i]: both blocks of a round ran back to back, so a load that
    comes and goes (other processes on a shared CPU) cancels in each ratio."""
    return round(statistics.median(x / y for x, y in zip(a, b)), 3)


def _partial(run: _PatternRun) -> str:
    med = statistics.median(run.blocks)
    rtf = run.pattern.block_frames * run.model.config.frame_seconds * run.batch / med
    return f"{run.label} {med * 1000:.1f} ms (RTF {rtf:.2f}, n={len(run.blocks)})"


def _variants(model: LiveMusicModel, dtypes: list[str], threads: list[int], dev: torch.device) -> list[Variant]:
    """A copy of the fp32 model per dtype (int8: its DiT blocks quantized), times each thread count."""
    out = []
    for dtype in dtypes:
        if dtype == "int8" and dev.type != "cpu":
            raise ConfigError("--dtype int8 is a CPU path (dynamically quantized linear layers); on a GPU use bf16")
        m = copy.deepcopy(model) if len(dtypes) > 1 else model
        m = m.quantize_int8() if dtype == "int8" else m.to(dev, DTYPES[dtype])
        for t in threads:
            parts = ([dtype] if len(dtypes) > 1 else []) + ([f"{t} thread{'s' * (t > 1)}"] if len(threads) > 1 else [])
            out.append(Variant(m.to(dev), dtype, t, f" [{', '.join(parts)}]" if parts else ""))
    return out


def _prompt_change_ms(model: LiveMusicModel, repeats: int = 5) -> dict:
    """Text encoding + cross-attention K/V of a prompt change (what a live control costs)."""
    stream = model.stream("bench")
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        stream.set_prompts([(f"prompt {i}", 1.0), ("bench", 0.5)])
        times.append(time.perf_counter() - start)
    return _stats(times[1:])


def run_bench(preset_name: str = "tiny", dtype: str | list[str] = "fp32", steps: int = 8, blocks: int = 5,
              warmup: int = 2, patterns: tuple[str, ...] = PATTERNS, block_frames: int | None = None,
              context_frames: int | None = None, threads: int | list[int] | None = None, progress=None, emit=None,
              end_to_end: bool = False, batch: int = 1, device: str = "cpu", cfg_scale: float = 1.0,
              sketch: dict | None = None, prompt_guidance: float | None = None, beat_cfg: float | None = None) -> dict:
    """`sketch`: None, or {"sketch_cfg": s, "control_guidance": g} to time sketched streams.
    `prompt_guidance`: the streams' prompt guidance strength (None: the preset's own; the default
    model's probe there has random weights, whose guidance costs what a trained one's does).
    `dtype` and `threads` may be lists: every combination is timed side by side (rows "[int8, 1 thread]").
    `emit(line)` gets the machine line and the matmul peaks as soon as they are known (the CLI prints
    them first), `progress(msg)` each round and its running medians (so a killed run leaves figures)."""
    emit = emit or progress
    dtypes = list(dict.fromkeys(resolve_bench_dtype(d) for d in ([dtype] if isinstance(dtype, str) else dtype)))
    for d in dtypes:
        if d not in DTYPES:
            raise ConfigError(f"dtype must be auto, fp32, bf16 or int8, got {d!r}")
    threads = [threads] if isinstance(threads, int) else list(threads or [torch.get_num_threads()])
    if any(t < 1 for t in threads):
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    dev = torch.device(device)
    if sketch and sketch.get("control_guidance") and not end_to_end:
        raise ConfigError("control guidance decodes every guided step: time it with --end-to-end")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to torch on this machine")
    machine = describe(dtypes, threads, device)
    if emit:
        emit(headline(machine))
    peaks = {} if dev.type != "cpu" else {f"{d}@{t}": matmul_peak_gflops(d, t) for d in dtypes for t in threads}
    if emit and peaks:
        emit(peak_line(peaks))
    if preset_name == "default":  # the embedded default model's shape, with its own autoencoder
        from ..checkpoints import default_config
        cfg = default_config()
    else:
        cfg = preset(preset_name)
    cfg.validate()
    sketch_knobs = sketch or {"sketch_cfg": 1.0, "control_guidance": 0.0}   # off without a sketch, whatever the model's
    sampling = SamplingConfig(seed=0, steps=steps, cfg_scale=cfg_scale, sketch_cfg=sketch_knobs.get("sketch_cfg", 1.0),
                              control_guidance=sketch_knobs.get("control_guidance", 0.0),
                              prompt_guidance=prompt_guidance, beat_cfg=beat_cfg).validate()
    if end_to_end and cfg.autoencoder is None:  # SAO-small's for the SAO shape, a toy one for tiny
        from ..models.autoencoder import AutoencoderConfig
        ae = AutoencoderConfig(channels=8, c_mults=[1, 2], strides=[4, 8], latent_dim=cfg.dit.io_channels) \
            if preset_name == "tiny" else AutoencoderConfig(latent_dim=cfg.dit.io_channels)
        cfg.autoencoder, cfg.downsampling_ratio = ae.to_dict(), ae.downsampling_ratio
    torch.manual_seed(0)
    model = LiveMusicModel(cfg).eval()
    B = block_frames or cfg.pattern.block_frames
    C = cfg.pattern.context_frames if context_frames is None else context_frames
    report = {"machine": machine, "matmul_peak_gflops": peaks,
              "config": {"preset": preset_name, "dtype": "/".join(dtypes), "steps": steps, "block_frames": B,
                         "context_frames": C, "block_seconds": round(B * cfg.frame_seconds, 4),
                         "threads": "/".join(map(str, threads)), "torch": torch.__version__, "device": str(dev),
                         "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                         "dit": dataclasses.asdict(cfg.dit), "end_to_end": end_to_end, "batch": batch,
                         "cfg_scale": cfg_scale, "sketch": sketch,
                         "prompt_guidance": _strength(sampling, model, "prompt_guidance"),
                         "beat_cfg": _strength(sampling, model, "beat_cfg"),
                         "dit_parameters": sum(p.numel() for p in model.dit.parameters())},
              "patterns": {}}
    pcfgs = [PatternConfig(name, B, C) for name in patterns]
    for p in pcfgs:
        p.validate()
    variants = _variants(model, dtypes, threads, dev)
    report["patterns"] = bench_patterns(variants, pcfgs, sampling, blocks, max(warmup, 1), progress, end_to_end, batch,
                                        bool(sketch))
    torch.set_num_threads(threads[0])
    if end_to_end:
        report["prompt_change_ms"] = _prompt_change_ms(variants[0].model)
        report["config"]["decoder_delay_ms"] = round(model.autoencoder.streaming_decoder().delay_ms, 1)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if dev.type == "cuda":
        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1)
    report["gflop_per_audio_second"] = comparison(cfg.dit, C, B, steps, cfg.frame_seconds, patterns)
    bound_base = tokens_per_block("bidirectional", C, B, steps)
    for name, row in report["patterns"].items():
        row["achieved_gflops"] = round(row["dit_gflop_per_block"] / (row["block_ms_median"] / 1000), 1)
        peak = peaks.get(f"{row['dtype']}@{row['threads']}")
        if peak:
            row["fraction_of_matmul_peak"] = round(row["achieved_gflops"] / peak, 3)
        # speedups against the bidirectional row sampled the same way (with or without each guidance)
        base = report["patterns"].get("bidirectional" + name[len(name.split(" ")[0]):])
        if base:
            row["speedup"] = round(base["block_ms_median"] / row["block_ms_median"], 3)
            row["token_bound"] = round(bound_base / row["tokens_per_block"], 3)
            row["fraction_of_bound"] = round(row["speedup"] / row["token_bound"], 3)
    return report


def peak_line(peaks: dict[str, float]) -> str:
    return ("matmul peak (GFLOP/s of a 1024^3 matmul, measured in this run): "
            + ", ".join(f"{k.split('@')[0]} {k.split('@')[1]} thread(s) {v}" for k, v in peaks.items()))


def _cell(value, width: int) -> str:
    """A ratio cell; "–" where it does not exist (no bidirectional baseline in the run)."""
    return f"{value:>{width}.2f}" if value is not None else f"{'–':>{width}}"


def format_table(report: dict, preamble: bool = True) -> str:
    """The report as text. Its first lines are the machine (`lmdm.bench.machine.headline`) and the matmul
    peaks, unless the caller printed them already (`preamble=False`)."""
    c = report["config"]
    what = "end to end (DiT + streaming decode)" if c.get("end_to_end") else "DiT only"
    w = max(14, *(len(name) + 2 for name in report["patterns"]))
    lines = [headline(report["machine"])] if preamble and "machine" in report else []
    if preamble and report.get("matmul_peak_gflops"):
        lines.append(peak_line(report["matmul_peak_gflops"]))
    lines += [f"lmdm bench: preset={c['preset']} dtype={c['dtype']} steps={c['steps']} C={c['context_frames']} "
              f"B={c['block_frames']} ({c['block_seconds']} s/block) threads={c['threads']} "
              f"{'' if c.get('device', 'cpu') == 'cpu' else 'device=' + c['device_name'] + ' '}"
              f"params={c['dit_parameters'] / 1e6:.1f}M batch={c.get('batch', 1)} cfg={c.get('cfg_scale', 1.0):g}"
              + (" sketch (sketch cfg {sketch_cfg:g}, control guidance {control_guidance:g})".format(**c["sketch"])
                 if c.get("sketch") else "") + (f" prompt guidance {c['prompt_guidance']:g}"
                                                 if c.get("prompt_guidance") else "")
              + (f" beat cfg {c['beat_cfg']:g}" if c.get("beat_cfg", 1.0) != 1.0 else "") + f" — {what}",
              f"{'pattern':<{w}}{'block ms':>10}{'p90':>9}{'p99/dur':>8}{'tokens':>8}{'RTF':>8}{'speedup':>9}"
              f"{'bound':>7}{'of bound':>9}{'GFLOP/s':>9}{'of peak':>8}  phases (median ms)"]
    for name, r in report["patterns"].items():
        phases = ", ".join(f"{k[:-3]} {v['median_ms']}" for k, v in r.items() if k.endswith("_ms") and
                           isinstance(v, dict))
        lines.append(f"{name:<{w}}{r['block_ms_median']:>10.1f}{r['block_ms_p90']:>9.1f}"
                     f"{_cell(r.get('p99_over_block_duration'), 8)}{r['tokens_per_block']:>8}"
                     f"{r['realtime_factor']:>8.2f}{_cell(r.get('speedup'), 9)}"
                     f"{_cell(r.get('token_bound'), 7)}{_cell(r.get('fraction_of_bound'), 9)}"
                     f"{r['achieved_gflops']:>9.1f}{_cell(r.get('fraction_of_matmul_peak'), 8)}"
                     f"  {phases}")
    lines.append("p99 block ms: " + ", ".join(f"{n} {r['block_ms_p99']}" for n, r in report["patterns"].items()))
    speedups = {n: r["variant_speedup"] for n, r in report["patterns"].items() if "variant_speedup" in r}
    if speedups:
        first = next(iter(report["patterns"].values()))
        lines.append(f"vs [{first['dtype']}, {first['threads']} thread(s)] (block time ratio, side by side; >1 faster): "
                     + ", ".join(f"{n} {v:.2f}x" for n, v in speedups.items()))
    for key in ("prompt_guidance_cost", "beat_guidance_cost"):
        costs = {n: r[key] for n, r in report["patterns"].items() if key in r}
        if costs:
            lines.append(f"{key[:-5].replace('_', ' ')} cost (block time with / without, side by side): "
                         + ", ".join(f"{n} {v:.2f}x" for n, v in costs.items()))
    if "prompt_change_ms" in report:
        lines.append(f"prompt change (text encoding + cross-attention K/V): median "
                     f"{report['prompt_change_ms']['median_ms']} ms; decoder look-ahead {c['decoder_delay_ms']} ms")
    lines.append("analytic GFLOP per second of audio: " + ", ".join(
        f"{k} {v}" for k, v in report["gflop_per_audio_second"].items()) + f"; peak RSS {report['peak_rss_mb']} MB"
        + (f", peak GPU memory {report['peak_gpu_mb']} MB" if "peak_gpu_mb" in report else ""))
    ae = report.get("autoencoder")
    if ae:
        lines.append(f"autoencoder (decoder delay {ae['decoder_delay_ms']:.1f} ms): compute seconds per audio second "
                     f"(lower is faster), {ae['block_frames']}-frame streaming blocks")
        for dtype, row in ae["dtypes"].items():
            snr = row.get("decode_snr_db")
            lines.append(f"  {dtype}: decode offline {row['decode_offline_s_per_s']:.3f}, streaming "
                         f"{row['decode_stream_s_per_s']:.3f}; encode offline {row['encode_offline_s_per_s']:.3f}, "
                         f"streaming {row['encode_stream_s_per_s']:.3f}"
                         + (f"; decode SNR vs fp32 {snr:.1f} dB" if snr is not None else ""))
    return "\n".join(lines)


def compare(path_a: str, path_b: str) -> str:
    """Ratios B/A of the per-pattern timings of two `lmdm bench --json` reports."""
    a, b = (json.loads(open(p).read()) for p in (path_a, path_b))
    lines = [f"{'pattern':<14}{'metric':<18}{'A':>10}{'B':>10}{'B/A':>8}"]
    for name in a.get("patterns", {}):
        if name not in b.get("patterns", {}):
            continue
        for key in ("block_ms_median", "block_ms_p90", "realtime_factor", "achieved_gflops"):
            va, vb = a["patterns"][name].get(key), b["patterns"][name].get(key)
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va:
                lines.append(f"{name:<14}{key:<18}{va:>10.2f}{vb:>10.2f}{vb / va:>8.2f}")
    return "\n".join(lines)
