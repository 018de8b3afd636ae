"""Speed and precision of the Oobleck autoencoder, offline and streaming, per dtype.

Random weights (the default init: the real-time factor does not depend on the values; the bf16
signal-to-noise ratio does a little, so it is indicative only until measured on the checkpoint).
Pure functions returning JSON-able dicts; printing and CLI wiring belong to the caller.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Any, Callable

import torch

from ..errors import ConfigError
from ..models.autoencoder import AutoencoderConfig
from ..models.codec import build_autoencoder

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: folds and caches the weights, primes the allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _stream_all(streamer, x: torch.Tensor, block: int) -> torch.Tensor:
    pieces = [streamer.push(x[..., i:i + block]) for i in range(0, x.shape[-1], block)]
    return torch.cat(pieces + [streamer.flush()], dim=-1)


def _snr_db(ref: torch.Tensor, test: torch.Tensor) -> float | None:
    """10 log10(sum ref^2 / sum (ref - test)^2), in fp64; None when identical (JSON has no inf)."""
    ref, err = ref.double(), ref.double() - test.double()
    noise = err.square().sum().item()
    return None if noise == 0 else 10 * math.log10(ref.square().sum().item() / noise)


@torch.no_grad()
def bench_autoencoder(config: AutoencoderConfig | None = None, seconds: float = 4.0, block_frames: int = 48,
                      dtypes: tuple[str, ...] = ("fp32", "bf16"), repeats: int = 3, encoder: bool = True,
                      seed: int = 0) -> dict[str, Any]:
    """Time offline and streaming (blocks of `block_frames` latent frames) decoding of `seconds` of
    audio, and with `encoder` the same for encoding (streamed in blocks of the same duration).

    Reported per dtype: `*_s_per_s` = seconds of compute per second of audio (median of `repeats`;
    below 1 is faster than real time); `stream_max_abs_diff` between the streamed and the offline
    decode in that dtype; and for dtypes other than fp32 the signal-to-noise ratio against fp32 of
    the offline decode (`decode_snr_db`), the streamed decode (`decode_stream_snr_db`) and the
    encode (`encode_snr_db`): latents drawn N(0, 1), audio = the fp32 decode of those latents.
    Threads: torch's current setting. Timings on a shared 2-core VM vary by ~10-20% run to run.
    """
    cfg = config or AutoencoderConfig()
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or seconds <= 0 or block_frames <= 0 or repeats <= 0:
        raise ConfigError(f"bench_autoencoder: dtypes must be among {sorted(DTYPES)} (got {list(dtypes)}), "
                          f"seconds, block_frames and repeats positive (got {seconds}, {block_frames}, {repeats})")
    torch.manual_seed(seed)
    base = build_autoencoder(cfg.to_dict()).eval()   # Oobleck, or a CodecConfig's spectral codec
    ratio = cfg.downsampling_ratio
    frames = max(1, math.ceil(seconds * cfg.sample_rate / ratio))
    audio_seconds = frames * ratio / cfg.sample_rate
    latents = torch.randn(1, cfg.latent_dim, frames, generator=torch.Generator().manual_seed(seed))
    reference_audio = base.decode(latents)
    reference_latents = base.encode(reference_audio) if encoder else None

    result: dict[str, Any] = {
        "config": cfg.to_dict(), "frames": frames, "audio_seconds": audio_seconds, "block_frames": block_frames,
        "threads": torch.get_num_threads(), "repeats": repeats,
        "decoder_delay_samples": cfg.decoder_delay_samples,
        "decoder_delay_ms": 1000.0 * cfg.decoder_delay_samples / cfg.sample_rate,
        "encoder_lookahead_samples": cfg.encoder_lookahead_samples,
        "encoder_lookahead_ms": 1000.0 * cfg.encoder_lookahead_samples / cfg.sample_rate,
        "dtypes": {},
    }
    for name in dtypes:
        model = base if name == "fp32" else copy.deepcopy(base).to(DTYPES[name])
        decoder = model.streaming_decoder()
        row: dict[str, Any] = {
            "decode_offline_s_per_s": _median_seconds(lambda: model.decode(latents), repeats) / audio_seconds,
            "decode_stream_s_per_s": _median_seconds(lambda: _stream_all(decoder, latents, block_frames),
                                                 repeats) / audio_seconds,
        }
        offline, streamed = model.decode(latents), _stream_all(decoder, latents, block_frames)
        row["stream_max_abs_diff"] = (streamed - offline).abs().max().item()
        if name != "fp32":
            row["decode_snr_db"] = _snr_db(reference_audio, offline)
            row["decode_stream_snr_db"] = _snr_db(reference_audio, streamed)
        if encoder:
            live = model.streaming_encoder()
            block = block_frames * ratio
            row["encode_offline_s_per_s"] = _median_seconds(lambda: model.encode(reference_audio), repeats) / audio_seconds
            row["encode_stream_s_per_s"] = _median_seconds(lambda: _stream_all(live, reference_audio, block),
                                                       repeats) / audio_seconds
            if name != "fp32":
                row["encode_snr_db"] = _snr_db(reference_latents, model.encode(reference_audio))
        result["dtypes"][name] = row
    return result


def preset_autoencoder(preset: str):
    """The autoencoder config `lmdm bench --autoencoder` times for a model preset: the embedded default
    model's own (Oobleck or spectral codec), a toy one for `tiny`, SAO-small's shape for the others."""
    if preset == "default":
        from ..checkpoints import default_config
        return build_autoencoder(default_config().autoencoder).config
    if preset == "tiny":
        return AutoencoderConfig(channels=8, c_mults=[1, 2], strides=[2, 4], latent_dim=8)
    return AutoencoderConfig()
