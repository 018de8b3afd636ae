"""What the machine is, in the bench's first line: CPU model, ISA, threads, whether bf16 is native,
and the measured matmul peak that the bench's achieved GFLOP/s are read against.

The ISA comes from the CPU's flags (/proc/cpuinfo on Linux) and, separately, from the kernels
torch actually dispatches to (`ATEN_CPU_CAPABILITY` / `ONEDNN_MAX_CPU_ISA` can hold a wide CPU to
AVX2, and `FBGEMM_ENABLE_INSTRUCTIONS` fbgemm's int8 kernels, which is how an AVX2-only laptop's
figures can be approximated on a bigger CPU; the first line names every such override that is set).
"""
from __future__ import annotations

import os
import platform
import time
from functools import cache

import torch


ISA_OVERRIDES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS", "MKL_ENABLE_INSTRUCTIONS")


@cache
def _cpu_flags_and_model() -> tuple[frozenset[str], str]:
    flags, model = set(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "model name" and not model:
                    model = value.strip()
    except OSError:
        pass
    return frozenset(flags), model or platform.processor() or platform.machine()


def isa_name(flags: frozenset[str] | set[str]) -> str:
    """The widest of AVX2 / AVX-512 / AVX-512-BF16 / AMX the flags show ("unknown" without flags)."""
    if {"amx_bf16", "amx_tile"} <= flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512-BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "unknown" if not flags else "pre-AVX2"


def bf16_native() -> bool:
    """True where oneDNN has native bf16 matmuls (AVX-512 BF16 / AMX / AVX-NE-CONVERT) or on a GPU."""
    return torch.cuda.is_available() or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def describe(dtypes: list[str], threads: list[int], device: str = "cpu") -> dict:
    flags, model = _cpu_flags_and_model()
    info = {"cpu": model, "isa": isa_name(flags), "torch_kernels": torch.backends.cpu.get_cpu_capability(),
            "cores": torch.get_num_threads() if not threads else max(threads), "threads": threads,
            "dtypes": dtypes, "bf16": "native" if bf16_native() else "emulated", "device": device,
            # OpenMP's idle threads spin by default: on a CPU shared with other busy processes a second
            # thread can then cost several times what it gains, so the policy is part of the figures
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            # kernel ISA held below the CPU's (ATen, oneDNN, fbgemm's int8): how AVX2 figures are taken on a wider CPU
            "isa_overrides": {k: os.environ[k] for k in ISA_OVERRIDES if os.environ.get(k)}}
    if device != "cpu" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def headline(info: dict) -> str:
    """The bench's first line, and a warning line where bf16 is asked for but emulated."""
    line = (f"lmdm bench: CPU {info['cpu']}, ISA {info['isa']} (torch kernels {info['torch_kernels']}), "
            f"threads {'/'.join(map(str, info['threads']))}, dtype {'/'.join(info['dtypes'])}, "
            f"bf16 {info['bf16']}" + (f", GPU {info['gpu']}" if info.get("gpu") else "")
            + (f", OMP_WAIT_POLICY {info['omp_wait_policy']}" if info.get("omp_wait_policy", "default") != "default"
               else "") + "".join(f", {k}={v}" for k, v in info.get("isa_overrides", {}).items()))
    if info["bf16"] == "emulated" and "bf16" in info["dtypes"]:
        line += ("\nlmdm bench: warning: bf16 is emulated on this CPU (no AVX-512-BF16 / AMX kernels): it runs "
                 "several times slower than fp32; int8 or fp32 are the fast paths here")
    return line


def matmul_peak_gflops(dtype: str, threads: int, seconds: float = 0.4, n: int = 1024) -> float:
    """Measured GFLOP/s of one large square matmul (n x n x n) in `dtype` on `threads` threads: the
    arithmetic ceiling the model's achieved GFLOP/s are read against (int8: a dynamically quantized
    linear layer, activations quantized per call as the model's are)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen)
        if dtype == "int8":
            from ..nn.quant import quantize_linears_int8
            layer = quantize_linears_int8(torch.nn.Sequential(torch.nn.Linear(n, n, bias=False)))
            fn = lambda: layer(a)  # noqa: E731
        else:
            a = a.to(torch.bfloat16 if dtype == "bf16" else torch.float32)
            b = a.t().contiguous()
            fn = lambda: a @ b  # noqa: E731
        with torch.no_grad():
            fn()
            count, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds or count < 2:
                fn()
                count += 1
        return round(2 * n ** 3 * count / elapsed / 1e9, 1)
    finally:
        torch.set_num_threads(before)
