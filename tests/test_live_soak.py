"""The soak benchmark's harness (its numbers live in the README, not in tests)."""
import json

import pytest

pytest.importorskip("fastapi")
from lmdm.live.soak import main, rss_summary  # noqa: E402


def test_rss_summary_separates_warm_up_from_growth():
    flat = [(0.0, 100.0), (5.0, 180.0)] + [(10.0 + t, 200.0 + (t % 2)) for t in range(60)]
    s = rss_summary(flat, warmup=10)
    assert s["rss_warm_mb"] == 200.0 and s["rss_start_mb"] == 100.0 and s["rss_max_mb"] == 201.0
    assert abs(s["rss_slope_mb_per_min"]) < 0.5
    leak = [(float(t), 200.0 + t) for t in range(0, 120, 2)]   # 1 MB/s
    assert rss_summary(leak, warmup=10)["rss_slope_mb_per_min"] == pytest.approx(60.0)
    assert rss_summary(leak, warmup=10)["rss_growth_after_warmup_mb"] == 108.0


def test_soak_cli_runs_real_sessions_on_loopback(tmp_path, capsys):
    out = tmp_path / "soak.json"
    main(["2", "1.5", "--steps", "2", "--warmup", "0.5", "--json", str(out)])
    printed = json.loads(capsys.readouterr().out)
    report = json.loads(out.read_text())
    assert len(report["sessions"]) == 2 and len(report["rss_mb"]) >= 1
    for s in printed["sessions"]:
        assert s["seconds"] >= 1.5 and s["blocks"] >= 1 and s["rtf"] > 0
    assert "rss_slope_mb_per_min" in printed and "rss_mb" not in printed


def test_soak_flood_compares_the_same_sessions_with_and_without_a_flooding_client(capsys):
    main(["2", "1.0", "--steps", "1", "--warmup", "0.5", "--flood"])
    out = capsys.readouterr().out
    report = json.loads(out[:out.rindex("}") + 1])
    a, b = report["phases"]["no_flood"], report["phases"]["flood"]
    for phase in (a, b):
        assert len(phase["sessions"]) == 2 and phase["blocks"] >= 2 and "ack_ms_p95_max" in phase
        assert all(s["seconds"] >= 1.0 for s in phase["sessions"])
    assert b["flood"]["messages_sent"] > 0 and "flood" not in a
    assert report["flood_block_rate_ratio"] > 0 and "no flood" in out and "block rate ratio" in out
