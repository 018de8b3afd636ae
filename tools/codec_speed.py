"""Streaming decode/encode CPU cost of the default model's Oobleck codec and the spectral codec-v1 shape,
side by side in one run (random weights; seconds of compute per second of audio, fp32, torch's threads).
Run from the repository root: python tools/codec_speed.py"""
import json
from lmdm.bench.autoencoder import bench_autoencoder, preset_autoencoder
from lmdm.models.codec import CodecConfig
spec = json.load(open("configs/train/codec-v1.json"))["autoencoder"]["model"]
for name, cfg in [("default Oobleck", preset_autoencoder("default")), ("spectral codec-v1", CodecConfig.from_dict(spec))]:
    r = bench_autoencoder(cfg, seconds=8, dtypes=("fp32",), repeats=3)["dtypes"]["fp32"]
    print(name, {k: round(v, 4) for k, v in r.items() if k.endswith("s_per_s")})
