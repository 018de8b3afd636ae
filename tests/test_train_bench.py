import json

from lmdm.train.bench import bench_training


def test_bench_training_tiny_is_a_json_report():
    r = bench_training("tiny", "bf16", steps=1, batch_size=2)
    json.dumps(r)
    assert r["ms_per_step"] > 0 and r["latent_frames_per_s"] > 0 and r["window_frames"] == 16
