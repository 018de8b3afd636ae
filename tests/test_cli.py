import json
import subprocess
import sys


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
