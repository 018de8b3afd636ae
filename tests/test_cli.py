import json
import subprocess
import sys

import pytest


def test_bench_json_reports_every_pattern():
    out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--blocks", "2",
                          "--warmup", "1", "--json"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["config"]["preset"] == "tiny"
    rows = report["patterns"]
    assert set(rows) == {"bidirectional", "enc-dec", "block-causal"}
    assert rows["bidirectional"]["speedup"] == 1.0
    assert rows["block-causal"]["tokens_per_block"] == (8 + 1) * 4 + 8
    assert "fused_step_ms" in rows["block-causal"] and "prefill_ms" in rows["enc-dec"]
    for row in rows.values():
        assert row["block_ms_median"] > 0 and row["realtime_factor"] > 0


def test_cli_errors_are_clean():
    out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--block", "5"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "whole number of chunks" in out.stderr and "Traceback" not in out.stderr


def test_bench_device_is_reported_and_a_missing_gpu_is_a_clear_error():
    import torch
    out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--blocks", "1", "--warmup", "1",
                          "--patterns", "block-causal", "--device", "cpu", "--json"], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout)["config"]["device"] == "cpu"
    if not torch.cuda.is_available():
        out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--device", "cuda"],
                             capture_output=True, text=True)
        assert out.returncode == 2 and "no CUDA GPU" in out.stderr and "Traceback" not in out.stderr


def test_bench_end_to_end_batch_and_compare(tmp_path):
    def bench(*extra):
        out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--blocks", "2", "--warmup",
                              "1", "--json", "--patterns", "enc-dec", "block-causal", *extra],
                             capture_output=True, text=True, check=True)
        return out.stdout
    (tmp_path / "a.json").write_text(bench())
    e2e = json.loads(bench("--end-to-end", "--batch", "2"))
    assert e2e["config"]["end_to_end"] and e2e["config"]["batch"] == 2
    assert e2e["prompt_change_ms"]["median_ms"] > 0 and e2e["config"]["decoder_delay_ms"] > 0
    assert e2e["gflop_per_audio_second"]["magenta-rt-v1"] > e2e["gflop_per_audio_second"]["block-causal"]
    assert "block_ms_p99" in e2e["patterns"]["block-causal"] and e2e["peak_rss_mb"] > 0
    (tmp_path / "b.json").write_text(json.dumps(e2e))
    out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--compare", str(tmp_path / "a.json"),
                          str(tmp_path / "b.json")], capture_output=True, text=True, check=True).stdout
    assert "block-causal" in out and "B/A" in out


def test_flops_counts_are_consistent():
    from lmdm.config import preset
    from lmdm.bench.flops import MagentaRT, dit_flops_per_block
    cfg = preset("sao-small").dit
    bidi = dit_flops_per_block(cfg, "bidirectional", 192, 48, 8)
    bc = dit_flops_per_block(cfg, "block-causal", 192, 48, 8)
    # matmul FLOPs scale with tokens: close to the 4.4x token bound (attention makes it a bit more)
    assert 4.0 < bidi / bc < 5.5
    # Magenta RT v1: ~0.8 B parameters, ~1800 tokens per 2 s chunk (decoder x2 for CFG)
    assert 0.8e12 < MagentaRT().flops_per_audio_second() < 1.6e12


def test_bench_with_guidance_counts_both_passes():
    def bench(*extra):
        out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--blocks", "1", "--warmup",
                              "1", "--json", "--patterns", "block-causal", *extra],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    plain, guided = bench(), bench("--cfg", "3")
    assert plain["config"]["cfg_scale"] == 1.0 and guided["config"]["cfg_scale"] == 3.0
    a, b = plain["patterns"]["block-causal"], guided["patterns"]["block-causal"]
    assert a["dit_gflop_per_block"] > 0 and b["dit_gflop_per_block"] == pytest.approx(2 * a["dit_gflop_per_block"], rel=0.01)


def test_bench_sketched_streams():
    """--sketch times streams with a sketch set: sketch guidance adds a model branch (2x the FLOPs),
    control guidance needs --end-to-end, and a model without the sketch group says so. Prompt and beat
    guidance are each timed without them too, side by side."""
    def bench(*extra, check=True):
        return subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "default", "--dtype", "fp32",
                               "--blocks", "1", "--warmup", "1", "--json", "--patterns", "block-causal",
                               "--beat-cfg", "1", *extra], capture_output=True, text=True, check=check)
    guided = json.loads(bench("--sketch", "--sketch-cfg", "3", "--control-guidance", "0.3", "--end-to-end").stdout)
    assert guided["config"]["sketch"] == {"sketch_cfg": 3.0, "control_guidance": 0.3}
    plain = json.loads(bench().stdout)
    a, b = plain["patterns"]["block-causal"], guided["patterns"]["block-causal"]
    assert b["dit_gflop_per_block"] == pytest.approx(2 * a["dit_gflop_per_block"], rel=0.01)
    # the default model guides by its prompt, so every run also times the same pattern without that, side by side
    off = plain["patterns"]["block-causal (prompt guidance off)"]
    assert a["prompt_guidance_cost"] == pytest.approx(a["block_ms_median"] / off["block_ms_median"], rel=0.01)
    assert list(json.loads(bench("--prompt-guidance", "0").stdout)["patterns"]) == ["block-causal"]
    # with its beat guidance (3 of 8 steps run a branch without the clock) it is timed without that too
    beat = json.loads(bench("--prompt-guidance", "0", "--beat-cfg", "3").stdout)["patterns"]
    off = beat["block-causal (beat guidance off)"]
    assert beat["block-causal"]["dit_gflop_per_block"] == pytest.approx(11 / 8 * off["dit_gflop_per_block"], rel=0.01)
    assert beat["block-causal"]["beat_guidance_cost"] == pytest.approx(
        beat["block-causal"]["block_ms_median"] / off["block_ms_median"], rel=0.01)
    out = bench("--sketch", "--control-guidance", "0.3", check=False)
    assert out.returncode == 2 and "--end-to-end" in out.stderr
    out = subprocess.run([sys.executable, "-m", "lmdm", "bench", "--preset", "tiny", "--sketch", "--blocks", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no 'sketch' input group" in out.stderr
