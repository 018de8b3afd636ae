"""`lmdm bench` says what machine it measured, prints figures as they come (so a killed run leaves
some), and times dtypes and thread counts side by side as rows of one run."""
import json
import re
import subprocess
import sys

import pytest

from lmdm.bench.machine import isa_name

BENCH = [sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--patterns", "block-causal"]


def test_isa_names():
    assert isa_name({"avx2", "fma"}) == "AVX2"
    assert isa_name({"avx2", "avx512f"}) == "AVX-512"
    assert isa_name({"avx2", "avx512f", "avx512_bf16"}) == "AVX-512-BF16"
    assert isa_name({"avx512f", "amx_bf16", "amx_tile"}) == "AMX"
    assert isa_name(set()) == "unknown"


def test_first_line_is_the_machine_and_rows_compare_dtypes_side_by_side():
    out = subprocess.run([*BENCH, "--blocks", "2", "--warmup", "1", "--dtype", "fp32", "int8", "--threads", "1"],
                         capture_output=True, text=True, check=True)
    first = out.stdout.splitlines()[0]   # stdout is a pipe here, not a terminal
    assert re.match(r"lmdm bench: CPU .+, ISA (AVX2|AVX-512|AVX-512-BF16|AMX|unknown|pre-AVX2) \(torch kernels \w+\), "
                    r"threads 1, dtype fp32/int8, bf16 (native|emulated)", first), first
    assert out.stdout.splitlines()[1].startswith("matmul peak (GFLOP/s")
    assert "block-causal [fp32]" in out.stdout and "block-causal [int8]" in out.stdout
    assert "vs [fp32, 1 thread(s)]" in out.stdout
    assert "so far (median block ms): block-causal [fp32]" in out.stderr


def test_json_has_machine_peaks_and_variant_speedups():
    out = subprocess.run([*BENCH, "--blocks", "1", "--warmup", "1", "--dtype", "fp32", "int8", "--json", "--end-to-end"],
                         capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["machine"]["bf16"] in ("native", "emulated") and report["machine"]["dtypes"] == ["fp32", "int8"]
    assert set(report["matmul_peak_gflops"]) == {f"{d}@{t}" for d in ("fp32", "int8") for t in report["machine"]["threads"]}
    rows = report["patterns"]
    fp32, int8 = rows["block-causal [fp32]"], rows["block-causal [int8]"]
    assert "variant_speedup" not in fp32
    # one timed round: the median of per-round ratios is the ratio of the two blocks
    assert int8["variant_speedup"] == pytest.approx(fp32["block_ms_median"] / int8["block_ms_median"], rel=0.01)
    peak = report["matmul_peak_gflops"][f"int8@{int8['threads']}"]
    assert peak > 0 and int8["fraction_of_matmul_peak"] == round(int8["achieved_gflops"] / peak, 3)
    assert int8["p99_over_block_duration"] > 0
    assert 0 < fp32["decode_share"] < 1 and fp32["decode_ms"]["n"] == 1   # the decoder's part of each block
    assert out.stderr.startswith("lmdm bench: CPU")   # the machine line goes to stderr under --json


def test_a_killed_run_leaves_the_machine_line_and_running_figures():
    proc = subprocess.Popen([*BENCH, "--blocks", "1000", "--warmup", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        partial = ""
        for line in proc.stderr:
            if "so far (median block ms)" in line:
                partial = line
                break
    finally:
        proc.kill()
        stdout = proc.stdout.read()
        proc.wait()
    assert re.search(r"block-causal \d+\.\d ms \(RTF \d+\.\d+, n=1\)", partial), partial
    assert stdout.startswith("lmdm bench: CPU") and "matmul peak" in stdout


def test_kernel_isa_overrides_are_named_in_the_first_line(monkeypatch):
    from lmdm.bench.machine import describe, headline
    monkeypatch.setenv("FBGEMM_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    line = headline(describe(["int8"], [1])).splitlines()[0]
    assert line.endswith("FBGEMM_ENABLE_INSTRUCTIONS=AVX2") and "ONEDNN_MAX_CPU_ISA" not in line
