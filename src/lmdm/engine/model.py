"""LiveMusicModel: the DiT and its conditioners under one config; the factory for streams."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ..models.conditioners import (ByteTextEncoder, NumberConditioner, PretrainedTextEncoder, Prompts, blend,
                                  check_prompts)
from ..models.dit import DiT


class LiveMusicModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        d = config.dit
        self.dit = DiT(d)
        t = config.text
        if t.kind == "bytes":
            self.text = ByteTextEncoder(d.cond_token_dim, t.max_tokens)
        else:
            self.text = PretrainedTextEncoder(t.kind, t.path, d.cond_token_dim, t.max_tokens)
        self.seconds_total = NumberConditioner(d.cond_token_dim, 0.0, t.seconds_max) if t.seconds_total else None
        self.autoencoder = None
        if config.autoencoder is not None:
            from ..models.codec import build_autoencoder   # Oobleck, or the spectral codec by "kind"
            self.autoencoder = build_autoencoder(config.autoencoder)
            if self.autoencoder.latent_dim != d.io_channels:
                raise ConfigError(f"autoencoder latent_dim {self.autoencoder.latent_dim} != dit.io_channels "
                                  f"{d.io_channels}")
        self.prompt_probe = None
        if config.prompt_probe is not None:   # prompt guidance's latent-text model (lmdm.engine.prompt_guidance)
            from .prompt_guidance import PromptProbe
            self.prompt_probe = PromptProbe(d.io_channels, d.cond_token_dim, **config.prompt_probe).requires_grad_(False)

    def quantize_int8(self) -> "LiveMusicModel":
        """int8 weights for the DiT's transformer blocks (nearly all of its arithmetic), in place, for
        CPU inference without native bf16 (`lmdm.nn.quant`). The embeddings, the text encoder, the
        prompt probe (guidance differentiates through it) and the autoencoder stay float."""
        from ..nn.quant import quantize_linears_int8
        quantize_linears_int8(self.dit.transformer.layers)
        return self

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def window_seconds(self) -> float:
        return self.config.pattern.window_frames * self.config.frame_seconds

    def text_conditioning(self, texts: list[str], seconds_total: float | list[float] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One conditioning per text: tokens (B, N, cond_dim) and global vector (B, dim) or None.
        Differentiable through trainable encoders (training uses this directly). An empty text
        gives the null condition: all-zero tokens, as SAO's classifier-free dropout does."""
        tokens = self.text(list(texts)).to(self.dit.dtype)
        empty = torch.tensor([t == "" for t in texts], device=tokens.device)
        tokens = torch.where(empty[:, None, None], torch.zeros_like(tokens), tokens)
        if self.seconds_total is None:
            return tokens, None
        seconds = self.window_seconds if seconds_total is None else seconds_total
        values = torch.tensor(seconds if isinstance(seconds, list) else [seconds] * len(texts), device=tokens.device)
        s = self.seconds_total(values).to(tokens.dtype)
        return torch.cat((tokens, s), 1), s[:, 0]

    @torch.no_grad()
    def encode_prompts(self, prompts: Prompts | str, seconds_total: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weighted prompts → (conditioning tokens (1, N, cond_dim), global vector (1, dim) or None).
        Prompts are blended in embedding space with weights normalised to sum 1."""
        prompts = check_prompts(prompts)
        tokens, glob = self.text_conditioning([text for text, _ in prompts], seconds_total)
        n_text = tokens.shape[1] - (0 if glob is None else 1)
        blended = blend(tokens[:, :n_text], [w for _, w in prompts])
        if glob is None:
            return blended, None
        return torch.cat((blended, tokens[:1, n_text:]), 1), glob[:1]

    def generate(self, prompt, seconds: float | None = None, *, sampling=None, **options) -> torch.Tensor | None:
        """Audio (channels, samples) of exactly `seconds`, float32 (`lmdm.engine.generate.generate`).

        `sampling`: a `lmdm.config.SamplingConfig` with the knobs (seconds, seed, steps, cfg_scale, each
        guidance's strength, ...); the keyword options below override it, unset knobs take the model's
        defaults.

        `prompt`: a string, weighted prompts [(text, weight)], or a schedule [(start seconds,
        prompts)] of timed changes (`lmdm.engine.prompts`). A plain SAO model (bidirectional, no context)
        samples one window offline, as SAO does, with `seconds_total` set to the request. An LMDM
        streams blocks through `Stream` (`block_frames` overrides the block size B).
        `on_audio(chunk)` receives each piece of audio as soon as it is decoded. `sketch`: normalised
        controls (3, frames) driving the stream from frame 0 (`lmdm.engine.generate.load_sketch` reads a file;
        needs a model with the "sketch" input group); past its end the stream runs without one.
        `sketch_cfg`: guidance on the sketch (default the model's `sketch_cfg_scale`; 1 = off);
        `control_guidance`: its strength through the decoder (`lmdm.engine.control_guidance`; 0 = off).
        `bpm`: the beat clock (models with a `beat` group): None follows the prompt's "... N BPM", a number
        fixes the tempo, 0 lets the model choose (`lmdm.engine.beat`). `prompt_guidance`: the strength of prompt
        guidance for a model with a prompt probe (`lmdm.engine.prompt_guidance`; default the model's, 0 = off).
        `beat_cfg`: guidance on the beat clock while it runs (default the model's `beat_cfg_scale`; 1 = off).
        `collect`: return the audio (default: only when there is no `on_audio`; streaming to `on_audio`
        alone returns None and holds flat memory however long the piece)."""
        from .generate import generate
        return generate(self, prompt, seconds, sampling=sampling, **options)

    def stream(self, prompt: Prompts | str = "", **kwargs):
        """A new streaming session; see `lmdm.engine.stream.Stream` for the options (`sampling=` a
        `SamplingConfig`, or its knobs as keywords)."""
        from .stream import Stream
        return Stream(self, prompt, **kwargs)
