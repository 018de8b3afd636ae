"""Oobleck VAE: SAO names and shapes, parity with a stable-audio-tools-style reference, exact
streaming encode/decode, latency, input checks."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmdm.errors import ConfigError, ShapeError
from lmdm.models.autoencoder import Autoencoder, AutoencoderConfig, kl_divergence
from lmdm.models.streaming_conv import WNConv1d, WNConvTranspose1d, to_channels_last
from streaming_pieces import stream_in_pieces

TINY = dict(channels=8, c_mults=[1, 2], strides=[2, 4], latent_dim=4)  # ratio 8

SAO_PRETRANSFORM = {"type": "autoencoder", "config": {
    "encoder": {"type": "oobleck", "config": {"in_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16],
                                              "strides": [2, 4, 4, 8, 8], "latent_dim": 128, "use_snake": True}},
    "decoder": {"type": "oobleck", "config": {"out_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16],
                                              "strides": [2, 4, 4, 8, 8], "latent_dim": 64, "use_snake": True,
                                              "final_tanh": False}},
    "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 2048, "io_channels": 2}}


def tiny(seed: int = 0, dtype=torch.float32, **overrides) -> Autoencoder:
    """A tiny model with every parameter random (snake alpha/beta included), outputs of order 1."""
    torch.manual_seed(seed)
    model = Autoencoder(AutoencoderConfig(**{**TINY, **overrides})).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif name.endswith("weight_g"):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.25)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if name.endswith("bias") else 1.0))
    return model.to(dtype)


# --- names and shapes -------------------------------------------------------------------------

def sao_small_expected_shapes() -> dict[str, tuple]:
    """Written from SPEC §1 / stable-audio-tools' OobleckEncoder/Decoder, independently of our code."""
    shapes, ch, m, strides = {}, 128, [1, 1, 2, 4, 8, 16], [2, 4, 4, 8, 8]

    def conv(p, cout, cin, k, bias=True):
        shapes[p + ".weight_g"], shapes[p + ".weight_v"] = (cout, 1, 1), (cout, cin, k)
        if bias:
            shapes[p + ".bias"] = (cout,)

    def snake(p, c):
        shapes[p + ".alpha"] = shapes[p + ".beta"] = (c,)

    def unit(p, c):
        snake(p + ".layers.0", c), conv(p + ".layers.1", c, c, 7)
        snake(p + ".layers.2", c), conv(p + ".layers.3", c, c, 1)

    conv("encoder.layers.0", 128, 2, 7)
    for i in range(5):
        p, cin, cout, s = f"encoder.layers.{i + 1}.layers", m[i] * ch, m[i + 1] * ch, strides[i]
        for j in range(3):
            unit(f"{p}.{j}", cin)
        snake(f"{p}.3", cin), conv(f"{p}.4", cout, cin, 2 * s)
    snake("encoder.layers.6", 2048), conv("encoder.layers.7", 128, 2048, 3)
    conv("decoder.layers.0", 2048, 64, 7)
    for j, i in enumerate(range(5, 0, -1)):
        p, cin, cout, s = f"decoder.layers.{j + 1}.layers", m[i] * ch, m[i - 1] * ch, strides[i - 1]
        snake(f"{p}.0", cin)
        # transposed conv weight is (in, out, k); weight_norm(dim=0) norms per *input* channel
        shapes[f"{p}.1.weight_g"], shapes[f"{p}.1.weight_v"] = (cin, 1, 1), (cin, cout, 2 * s)
        shapes[f"{p}.1.bias"] = (cout,)
        for k in range(3):
            unit(f"{p}.{k + 2}", cout)
    snake("decoder.layers.6", 128), conv("decoder.layers.7", 2, 128, 7, bias=False)
    return shapes


def test_sao_small_names_shapes_and_size():
    with torch.device("meta"):
        model = Autoencoder(AutoencoderConfig())
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == sao_small_expected_shapes()
    assert got["encoder.layers.0.weight_g"] == (128, 1, 1) and got["encoder.layers.0.weight_v"] == (128, 2, 7)
    assert got["encoder.layers.1.layers.0.layers.0.alpha"] == (128,)
    assert got["decoder.layers.1.layers.1.weight_v"] == (2048, 1024, 16)
    assert got["decoder.layers.7.weight_v"] == (2, 128, 7) and "decoder.layers.7.bias" not in got
    for part in (model.encoder, model.decoder):  # "about 78 M parameters each way"
        assert 77.5e6 < sum(p.numel() for p in part.parameters()) < 78.5e6


# --- config -----------------------------------------------------------------------------------

def test_config_from_sao_and_round_trip():
    cfg = AutoencoderConfig.from_sao(SAO_PRETRANSFORM)
    assert cfg == AutoencoderConfig() and cfg.downsampling_ratio == 2048
    whole = {"sample_rate": 44100, "model": {"pretransform": SAO_PRETRANSFORM}}
    assert AutoencoderConfig.from_sao(whole) == cfg
    assert AutoencoderConfig.from_dict(cfg.to_dict()) == cfg
    tanh = {**SAO_PRETRANSFORM, "config": {**SAO_PRETRANSFORM["config"], "decoder": {
        "type": "oobleck", "config": {k: v for k, v in SAO_PRETRANSFORM["config"]["decoder"]["config"].items()
                                      if k != "final_tanh"}}}}
    assert AutoencoderConfig.from_sao(tanh).final_tanh  # stable-audio-tools' default


@pytest.mark.parametrize("path, value, field", [
    (("encoder", "config", "use_snake"), False, "use_snake"),
    (("decoder", "config", "antialias_activation"), True, "antialias_activation"),
    (("decoder", "config", "channels"), 64, "channels"),
    (("encoder", "config", "latent_dim"), 64, "latent_dim"),
    (("bottleneck", "type"), "rvq", "bottleneck"),
    (("encoder", "type"), "dac", "encoder"),
    (("downsampling_ratio",), 1024, "downsampling_ratio"),
])
def test_config_from_sao_rejects_unsupported(path, value, field):
    import copy
    bad = copy.deepcopy(SAO_PRETRANSFORM)
    node = bad["config"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=field):
        AutoencoderConfig.from_sao(bad)


def test_config_rejects_bad_fields():
    with pytest.raises(ConfigError, match="colour"):
        AutoencoderConfig.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="strides"):
        AutoencoderConfig.from_dict({"strides": [3, 4, 4, 8, 8]})
    with pytest.raises(ConfigError, match="latent_dim"):
        AutoencoderConfig.from_dict({"latent_dim": "64"})


# --- weight norm --------------------------------------------------------------------------------

def _legacy(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.nn.utils.weight_norm(module)  # deprecated API: here only as the reference


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_norm_matches_torch(transposed):
    torch.manual_seed(0)
    if transposed:
        ref, ours = _legacy(nn.ConvTranspose1d(6, 5, 8, stride=4, padding=2)), WNConvTranspose1d(6, 5, 8, 4, 2)
    else:
        ref, ours = _legacy(nn.Conv1d(6, 5, 7, dilation=3, padding=9)), WNConv1d(6, 5, 7, padding=9, dilation=3)
    with torch.no_grad():
        ref.weight_g.uniform_(0.5, 2.0)
    ours.load_state_dict(ref.state_dict())  # same names, same shapes: weight_g, weight_v, bias
    assert ours.weight_g.shape == (6 if transposed else 5, 1, 1)
    for t in (3, 80):  # the transposed conv's channels-last path switches kernels at 64 frames
        x = torch.randn(2, 6, t, requires_grad=True)
        y_ref = ref(x)
        torch.testing.assert_close(ours(x), y_ref, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            y4 = ours(to_channels_last(x))[:, :, 0]
        torch.testing.assert_close(y4, y_ref.detach(), atol=1e-5, rtol=1e-5)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), (ref.weight_g, ref.weight_v))
    grads = torch.autograd.grad(ours(x).square().sum(), (ours.weight_g, ours.weight_v))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_folded_weight_cache_follows_parameter_updates():
    conv = WNConv1d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 10)
    with torch.no_grad():
        before = conv(x)
        conv.weight_g.mul_(2.0)  # in place: version counter moves
        torch.testing.assert_close(conv(x) - conv.bias[:, None], 2 * (before - conv.bias[:, None]))
        conv.load_state_dict({k: v * 0 + 1 for k, v in conv.state_dict().items()})
        assert torch.allclose(conv.weight, torch.full((4, 3, 3), 1 / 3))  # g * v / ||v|| = 1 * 1 / 3


# --- parity with a stable-audio-tools-style reference ------------------------------------------

class RefSnake(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.alpha, self.beta = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))

    def forward(self, x):
        a, b = self.alpha.exp()[None, :, None], self.beta.exp()[None, :, None]
        return x + 1.0 / (b + 1e-9) * torch.sin(x * a) ** 2


class RefUnit(nn.Module):
    def __init__(self, cin, cout, d):
        super().__init__()
        self.layers = nn.Sequential(RefSnake(cout), _legacy(nn.Conv1d(cin, cout, 7, dilation=d, padding=(d * 6) // 2)),
                                    RefSnake(cout), _legacy(nn.Conv1d(cout, cout, 1)))

    def forward(self, x):
        return x + self.layers(x)


class RefBlock(nn.Module):
    def __init__(self, cin, cout, s, decoder):
        super().__init__()
        p = math.ceil(s / 2)
        if decoder:
            self.layers = nn.Sequential(RefSnake(cin), _legacy(nn.ConvTranspose1d(cin, cout, 2 * s, s, p)),
                                        *(RefUnit(cout, cout, d) for d in (1, 3, 9)))
        else:
            self.layers = nn.Sequential(*(RefUnit(cin, cin, d) for d in (1, 3, 9)), RefSnake(cin),
                                        _legacy(nn.Conv1d(cin, cout, 2 * s, s, p)))

    def forward(self, x):
        return self.layers(x)


class Reference(nn.Module):
    """stable-audio-tools' Oobleck encoder/decoder, transcribed with torch's own weight_norm."""

    def __init__(self, io, ch, c_mults, strides, latent):
        super().__init__()
        m = [1] + c_mults
        self.encoder = nn.Module()
        self.encoder.layers = nn.Sequential(
            _legacy(nn.Conv1d(io, m[0] * ch, 7, padding=3)),
            *(RefBlock(m[i] * ch, m[i + 1] * ch, strides[i], False) for i in range(len(m) - 1)),
            RefSnake(m[-1] * ch), _legacy(nn.Conv1d(m[-1] * ch, 2 * latent, 3, padding=1)))
        self.decoder = nn.Module()
        self.decoder.layers = nn.Sequential(
            _legacy(nn.Conv1d(latent, m[-1] * ch, 7, padding=3)),
            *(RefBlock(m[i] * ch, m[i - 1] * ch, strides[i - 1], True) for i in range(len(m) - 1, 0, -1)),
            RefSnake(m[0] * ch), _legacy(nn.Conv1d(m[0] * ch, io, 7, padding=3, bias=False)), nn.Identity())


def test_matches_reference_transcription():
    model = tiny()
    ref = Reference(2, TINY["channels"], TINY["c_mults"], TINY["strides"], TINY["latent_dim"]).eval()
    ref.load_state_dict(model.state_dict(), strict=True)
    z, x = torch.randn(2, 4, 70), torch.randn(2, 2, 560)  # 70 frames: both transposed-conv kernels run
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z), ref.decoder.layers(z), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.decode(z[..., :5]), ref.decoder.layers(z[..., :5]), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.encode(x), ref.encoder.layers(x)[:, :4], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.decoder(z), ref.decoder.layers(z), atol=1e-4, rtol=1e-4)  # 3-D path


# --- encode / decode ----------------------------------------------------------------------------

def test_encode_decode_shapes_and_padding():
    model = tiny()
    audio = torch.randn(3, 2, 1001)
    with torch.no_grad():
        z = model.encode(audio)
        assert z.shape == (3, 4, 126) and z.dtype == torch.float32  # ceil(1001 / 8)
        torch.testing.assert_close(z, model.encode(F.pad(audio, (0, 7))))  # end zero-padded to 1008
        assert model.decode(z).shape == (3, 2, 1008)
        recon, kl = model(audio[..., :1000])
        assert recon.shape == (3, 2, 1000) and kl.dim() == 0


def test_vae_sampling_and_kl():
    model = tiny()
    audio = torch.randn(4, 2, 4096)
    with torch.no_grad():
        mean, std = model.encode_moments(audio)
        draw = model.encode(audio, sample=True, generator=torch.Generator().manual_seed(1))
        again = model.encode(audio, sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(draw, again) and torch.equal(model.encode(audio), mean)
    noise = (draw - mean) / std  # 4 * 4 * 512 standard normal values
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 1) < 0.05
    assert (std > 1e-4).all()
    m, s = torch.tensor([[[0.5]], [[0.0]]]), torch.tensor([[[2.0]], [[1.0]]])
    expected = ((0.25 + 4 - math.log(4) - 1) + 0.0) / 2
    assert kl_divergence(m, s).item() == pytest.approx(expected)


def test_bfloat16_model_runs_and_keeps_input_dtype():
    model = tiny()
    z = torch.randn(1, 4, 20)
    with torch.no_grad():
        ref = model.decode(z)
        model.to(torch.bfloat16)
        out = model.decode(z)
        assert out.dtype == torch.float32 and model.encode(torch.randn(1, 2, 64)).dtype == torch.float32
    snr = 10 * torch.log10(ref.square().sum() / (ref - out).square().sum())
    assert snr > 20  # loose: random weights with large snake frequencies; the bench measures real shapes


# --- streaming ----------------------------------------------------------------------------------

def test_latency_values_from_the_architecture():
    # decoder: k7 pad 3 at frame rate leaves 3 frames behind; each block upsamples by s, its transposed
    # conv's crop holds back ceil(s/2) and its residual units 3*(1+3+9) = 39; the last k7 conv 3 more.
    # tiny (decoder strides 4 then 2): ((3*4 + 2 + 39)*2 + 1 + 39) + 3 = 149
    assert AutoencoderConfig(**TINY).decoder_delay_samples == 149
    # SAO-small (8, 8, 4, 4, 2): 3 -> 67 -> 579 -> 2357 -> 9469 -> 18978, + 3
    sao = AutoencoderConfig()
    assert sao.decoder_delay_samples == 18981 and sao.decoder_lookahead_frames == 10
    # encoder: frame j needs input index j+1 of the last k3 conv; a block (kernel 2s, pad ceil(s/2), after
    # 39 samples of residual lookahead) maps index i to s*i + 2s - ceil(s/2) - 1 + 39; the first conv +3.
    # tiny: 1 -> 4+8-2-1+39 = 48 -> 96+4-1-1+39 = 137 -> 140: frame j complete after 8j + 141 samples
    assert AutoencoderConfig(**TINY).encoder_lookahead_samples == 141 - 8
    # SAO-small: 1 -> 58 -> 514 -> 2100 -> 8444 -> 16929 -> 16932: 2048j + 16933 samples
    assert sao.encoder_lookahead_samples == 16933 - 2048 == 14885


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_streaming_decoder_equals_offline(dtype, tol):
    model = tiny(dtype=dtype)
    z = torch.randn(2, 4, 100, dtype=dtype)
    with torch.no_grad():
        ref = model.decode(z)
    assert ref.abs().max() > 0.5  # a meaningful signal
    sd = model.streaming_decoder()
    assert sd.delay_samples == 149 and sd.lookahead_frames == 19
    for sizes in ([1], [7], [48], [0, 3, 1, 13, 2]):
        pieces = []
        for out, frames_in in stream_in_pieces(sd, z, sizes):
            pieces.append(out)
            if frames_in is not None:  # everything whose receptive field is complete, no more
                assert sd.produced == max(0, frames_in * 8 - 149)
        y = torch.cat(pieces, -1)
        assert y.shape == ref.shape and sd.produced == 0  # flush resets
        assert (y - ref).abs().max().item() < tol


def test_streaming_decoder_with_final_tanh_and_batch_one():
    model = tiny(seed=3, final_tanh=True)
    z = torch.randn(1, 4, 40)
    with torch.no_grad():
        ref = model.decode(z)
    sd = model.streaming_decoder()
    y = torch.cat([sd.push(z[..., i:i + 5]) for i in range(0, 40, 5)] + [sd.flush()], -1)
    assert (y - ref).abs().max().item() < 1e-4 and ref.abs().max() <= 1


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_streaming_encoder_equals_offline(dtype, tol):
    model = tiny(dtype=dtype)
    audio = torch.randn(2, 2, 1001, dtype=dtype)
    with torch.no_grad():
        ref = model.encode(audio)
    se = model.streaming_encoder()
    assert se.lookahead_samples == 133
    for sizes in ([1, 2, 0, 5], [37], [500], [4096]):
        pieces = []
        for out, samples_in in stream_in_pieces(se, audio, sizes):
            pieces.append(out)
            if samples_in is not None:
                assert se.produced == max(0, (samples_in - 133) // 8)
        y = torch.cat(pieces, -1)
        assert y.shape == ref.shape == (2, 4, 126)
        assert (y - ref).abs().max().item() < tol


def test_streaming_reset_and_bad_input():
    model = tiny()
    sd, se = model.streaming_decoder(), model.streaming_encoder()
    sd.push(torch.randn(2, 4, 30))
    with pytest.raises(ShapeError, match="batch"):
        sd.push(torch.randn(1, 4, 3))
    sd.reset()
    z = torch.randn(1, 4, 30)
    with torch.no_grad():
        ref = model.decode(z)
    torch.testing.assert_close(torch.cat((sd.push(z), sd.flush()), -1), ref, atol=1e-5, rtol=1e-5)
    assert sd.flush().shape[-1] == 0  # nothing pushed: nothing out
    bad = [torch.randn(1, 3, 10), torch.randn(1, 4), torch.full((1, 4, 5), float("nan")),
           torch.ones(1, 4, 5, dtype=torch.int64), [[0.0]]]
    for x in bad:
        with pytest.raises(ShapeError):
            sd.push(x)
    for x in [torch.randn(1, 1, 10), torch.full((1, 2, 5), float("inf"))]:
        with pytest.raises(ShapeError):
            se.push(x)


def test_offline_bad_input():
    model = tiny()
    for call, x in [(model.decode, torch.randn(1, 3, 10)), (model.decode, torch.randn(1, 4, 0)),
                    (model.decode, torch.randn(4, 10)), (model.encode, torch.randn(1, 1, 64)),
                    (model.encode, torch.tensor([[[float("nan")] * 8] * 2]))]:
        with pytest.raises(ShapeError, match=r"\("):
            call(x)


def test_bench_smoke():
    import json

    from lmdm.bench.autoencoder import bench_autoencoder
    out = bench_autoencoder(AutoencoderConfig(**TINY), seconds=0.02, block_frames=5, repeats=1)
    json.dumps(out, allow_nan=False)
    for row in out["dtypes"].values():
        assert row["decode_offline_s_per_s"] > 0 and row["decode_stream_s_per_s"] > 0 and row["encode_stream_s_per_s"] > 0
    assert out["dtypes"]["fp32"]["stream_max_abs_diff"] < 1e-4 and out["dtypes"]["bf16"]["decode_snr_db"] > 10
    assert out["decoder_delay_samples"] == 149
    with pytest.raises(ConfigError):
        bench_autoencoder(AutoencoderConfig(**TINY), dtypes=("fp8",))
