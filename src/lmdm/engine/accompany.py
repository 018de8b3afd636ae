"""Accompaniment for a song file (SPEC §4 "jamming"): what `lmdm accompany` runs.

The song is resampled / up- or down-mixed to the model's sample rate and channels
(`data.dataset.load_audio`), encoded with the model's autoencoder (its streaming encoder in
chunks: equal to the offline encode, in bounded memory) and given to the stream as the
`accompaniment` group from latent frame 0. Song frame f and generated frame f cover the same
samples [f * hop, (f + 1) * hop), hop = the downsampling ratio.

Cutoff: the block whose target starts at frame F sees song frames before F - cutoff_frames only,
i.e. song samples before (F - cutoff_frames) * hop + the encoder's look-ahead, never later ones
(the latency budget a live player gives the model; tested sample-exactly).

Alignment and the decoder delay: the answer is decoded with the streaming decoder, which holds back
`decoder.delay_samples` (its look-ahead). That delay is a wall-clock latency, not a shift on the
timeline: the first decoded block is that much shorter and `Stream.finish()` returns the held-back
tail, and the concatenation equals the offline decode of the latent stream, whose sample 0 is the
first sample of frame 0. So output sample n lines up with song sample n; the result is only cut to
the requested length, never shifted.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from .generate import block_pattern, generate, require_input_group

ENCODE_CHUNK = 1 << 16  # song samples per streaming-encoder push


def check_model(model) -> None:
    require_input_group(model, "accompaniment", "an accompaniment")
    if model.autoencoder is None:
        raise ConfigError("this model has no autoencoder, so it cannot encode a song or make audio")


def load_song(model, path) -> torch.Tensor:
    """A song file (any format soundfile reads) -> (channels, samples) float32 at the model's rate."""
    from ..audio.io import load_audio
    check_model(model)
    if not Path(path).is_file():
        raise DataError(f"song file {str(path)!r} does not exist")
    audio = torch.from_numpy(load_audio(path, model.sample_rate, model.autoencoder.config.audio_channels))
    if audio.shape[-1] == 0:
        raise DataError(f"song file {path} holds no audio")
    if not torch.isfinite(audio).all():
        raise DataError(f"song file {path} holds NaN or infinite samples")
    return audio


@torch.no_grad()
def encode_song(model, song: torch.Tensor) -> torch.Tensor:
    """(channels, samples) -> latents (io, ceil(samples / hop)) float32: `Autoencoder.encode` (the
    posterior mean), computed with the streaming encoder so a long song needs little memory."""
    ae = model.autoencoder
    encoder = ae.streaming_encoder()
    pieces = [encoder.push(song[None, :, i:i + ENCODE_CHUNK].to(ae.dtype)) for i in range(0, song.shape[-1], ENCODE_CHUNK)]
    pieces.append(encoder.flush())
    return torch.cat(pieces, -1)[0].float()


def default_cutoff(model, block_frames: int | None = None) -> int:
    """One block (the fine-tuning's default), except block-causal: 0, since its cache freezes a chunk's
    accompaniment when the chunk enters it, and with a cutoff of a block or more it would never see
    the song (see `Stream`)."""
    pattern = block_pattern(model, block_frames)
    return 0 if pattern.pattern == "block-causal" else pattern.block_frames


def check_cutoff(model, cutoff_frames: int, block_frames: int | None = None) -> None:
    p = block_pattern(model, block_frames)
    if cutoff_frames < 0:
        raise ConfigError(f"cutoff must be >= 0 latent frames, got {cutoff_frames}")
    if p.pattern == "block-causal" and cutoff_frames >= p.block_frames:
        raise ConfigError(f"a block-causal model sees the song only in the chunk it is finishing, so a cutoff of "
                          f"{cutoff_frames} frames (>= the block, {p.block_frames}) would hide it completely; use a "
                          f"cutoff below {p.block_frames}")
    if cutoff_frames >= p.context_frames:
        raise ConfigError(f"a cutoff of {cutoff_frames} frames is not shorter than the context "
                          f"({p.context_frames} frames): no song frame would ever be visible")


def accompany(model, song: torch.Tensor, prompt, seconds: float | None = None, *, cutoff_frames: int | None = None,
              block_frames: int | None = None, **generate_kwargs) -> torch.Tensor:
    """Generate a part to play with `song` (channels, samples) at the model's rate: audio (channels,
    round(seconds * sample_rate)), sample-aligned with the song (default length: the song's). Past the
    song's end the stream runs without accompaniment. `prompt` as in `lmdm.engine.generate.generate`;
    `cutoff_frames` default `default_cutoff`; other keywords (seed, steps, cfg_scale, progress,
    on_audio, on_change) go to `generate`."""
    check_model(model)
    cutoff = default_cutoff(model, block_frames) if cutoff_frames is None else int(cutoff_frames)
    check_cutoff(model, cutoff, block_frames)
    seconds = song.shape[-1] / model.sample_rate if seconds is None else seconds
    return generate(model, prompt, seconds, accompaniment=encode_song(model, song), cutoff_frames=cutoff,
                    block_frames=block_frames, **generate_kwargs)


def mix(song: torch.Tensor, generated: torch.Tensor) -> tuple[torch.Tensor, float]:
    """song + generated (the song cut or zero-padded to the generated length) -> (mix, peak before
    normalisation); divided by its peak only where it would clip (peak > 1)."""
    n = generated.shape[-1]
    dry = torch.nn.functional.pad(song[..., :n], (0, max(0, n - song.shape[-1])))
    out = dry + generated
    peak = float(out.abs().max()) if out.numel() else 0.0
    return (out / peak if peak > 1.0 else out), peak
