"""Sketch controls and accompaniment as router input groups, their stream paths, generative delay."""
import json

import numpy as np
import pytest
import torch

import lmdm
from conftest import banded_reference_error, randomized
from lmdm.engine import sketch as sk
from lmdm.train import group_dropout
from lmdm.audio.controls import extract_controls
from lmdm.engine.delay import DelayStream

TOL = 1e-5
SR, HOP = 44100, 512


def grouped_model(pattern, seed=0, **pattern_overrides):
    torch.manual_seed(seed)
    cfg = lmdm.preset("tiny", pattern)
    cfg.dit.input_groups = {"context": 9, "sketch": 4, "accompaniment": 9}
    for k, v in pattern_overrides.items():
        setattr(cfg.pattern, k, v)
    cfg.validate()
    return randomized(lmdm.LiveMusicModel(cfg).eval(), seed)


def ref_group(values, vstart, start, n, visible_until=None):
    """[mask | values] for absolute frames start.., built frame by frame (independent of the stream)."""
    b, ch, length = values.shape
    g = torch.zeros(b, 1 + ch, n)
    for i in range(n):
        f = start + i
        if vstart <= f < vstart + length and (visible_until is None or f < visible_until):
            g[:, 0, i] = 1
            g[:, 1:, i] = values[..., f - vstart]
    return g


def doubled(s, x):
    """x for every branch of the stream's model batch."""
    return torch.cat([x] * len(s.branches))


def branch_reference(s, sketch_group):
    """The sketch group and the conditioning each branch must get, built independently of the stream:
    "no_text" the null prompt (zeroed tokens), "no_sketch" an all-zero sketch group (mask 0)."""
    sketch = torch.cat([torch.zeros_like(sketch_group) if b == "no_sketch" else sketch_group for b in s.branches])
    tokens = torch.cat([torch.zeros_like(s.tokens) if b == "no_text" else s.tokens for b in s.branches])
    glob = None if s.global_cond is None else torch.cat([s.global_cond] * len(s.branches))
    return sketch, s.dit.condition(tokens, glob)


# -- utilities -------------------------------------------------------------------------------

def test_median_filter_removes_spikes_keeps_steps_and_kernel_one_is_identity():
    x = torch.zeros(2, 3, 20)
    x[..., 10:] = 1.0
    x[..., 4] = 5.0  # a one-frame spike
    y = sk.median_filter(x, 3)
    assert y[..., 4].abs().max() == 0
    assert torch.equal(y[..., 10:], x[..., 10:]) and torch.equal(y[..., :9], torch.zeros(2, 3, 9))
    assert torch.equal(sk.median_filter(x, 1), x)
    with pytest.raises(lmdm.errors.ShapeError):
        sk.median_filter(x, 4)
    assert sk.strength_to_kernel(1.0) == 1 and sk.strength_to_kernel(0.0, 31) == 31
    gen = torch.Generator().manual_seed(0)
    ks = {group_dropout.random_kernel(9, gen) for _ in range(200)}
    assert ks == {1, 3, 5, 7, 9}


def test_control_and_accompaniment_dropout():
    gen = torch.Generator().manual_seed(0)
    g = sk.sketch_group(torch.randn(4000, 3, 6))
    out = group_dropout.control_dropout(g, p_all=0.25, p_each=0.5, generator=gen)
    dropped_all = (out == 0).flatten(1).all(1)
    assert abs(dropped_all.float().mean() - 0.25) < 0.03
    kept = out[~dropped_all]
    assert torch.equal(kept[:, 0], torch.ones_like(kept[:, 0]))      # mask survives per-control dropout
    per_channel = (kept[:, 1:] == 0).all(-1).float().mean(0)
    assert torch.all((per_channel - 0.5).abs() < 0.03)
    assert torch.equal(group_dropout.control_dropout(g, 0.0, 0.0), g)

    acc = sk.accompaniment_group(torch.randn(4000, 8, 10))
    out = group_dropout.accompaniment_dropout(acc, p_all=0.2, p_prefix=0.3, generator=gen)
    zero = (out[:, 0] == 0)                                         # frames dropped per item
    assert torch.all(zero[:, 1:] <= zero[:, :-1])                   # always an old prefix
    assert abs(zero.all(1).float().mean() - (0.2 + 0.3 / 10)) < 0.03
    assert abs((zero.any(1) & ~zero.all(1)).float().mean() - 0.3 * 0.9) < 0.03
    assert torch.equal(out * ~zero[:, None], acc * ~zero[:, None])  # the rest is untouched


def test_controls_from_audio_follow_a_gain_ramp_and_a_sweep():
    n = SR  # 1 s
    t = np.arange(n) / SR
    gain_db = np.linspace(-40, -6, n)
    ramp = 10 ** (gain_db / 20) * np.sin(2 * np.pi * 1000 * t)   # 1 kHz: A-weighting ~0 dB
    c = sk.controls_from_audio(ramp, SR, HOP)
    frames = c.shape[-1]
    assert frames == n // HOP + (n % HOP > 0)
    mid = slice(4, frames - 4)
    want_db = np.interp((np.arange(frames) + 0.5) * HOP, np.arange(n), gain_db) - 3.0
    assert np.allclose(c[0, mid].numpy(), sk.normalise_loudness(want_db)[mid], atol=0.5 / 40)
    freqs = np.geomspace(200, 4000, n)
    sweep = 0.5 * np.sin(2 * np.pi * np.cumsum(freqs) / SR)
    c = sk.controls_from_audio(sweep, SR, HOP)
    swept = np.interp((np.arange(frames) + 0.5) * HOP, np.arange(n), freqs)
    want = sk.normalise_centroid(12 * np.log2(swept / 440) + 69)
    assert np.allclose(c[1, mid].numpy(), want[mid], atol=1.0 / 54)  # within a semitone
    raw = extract_controls(sweep, SR, HOP)
    assert torch.allclose(c[2], torch.from_numpy(sk.normalise_pitch(raw["f0"], raw["voicing"])).float())
    f = swept
    ok = (np.arange(frames) >= 4) & (f < 1500)  # YIN's range ends at 1600 Hz
    assert np.allclose(c[2, ok].numpy(), sk.normalise_pitch(f[ok]) * raw["voicing"][ok], atol=1.0 / 36)


def test_controls_from_curves_json_and_csv(tmp_path):
    curves = {"loudness": [[0.0, -40.0], [1.0, 0.0]], "pitch": [[0.0, 440.0], [1.0, 440.0]]}
    (tmp_path / "c.json").write_text(json.dumps(curves))
    (tmp_path / "c.csv").write_text("time,loudness,pitch\n0,-40,440\n1,0,440\n")
    a = sk.controls_from_curves(tmp_path / "c.json", 11, frame_rate=10)
    b = sk.controls_from_curves(tmp_path / "c.csv", 11, frame_rate=10)
    assert torch.allclose(a, b)
    assert torch.allclose(a[0], torch.linspace(0, 1, 11), atol=1e-6)
    assert torch.all(a[1] == 0) and torch.allclose(a[2], torch.full((11,), 9 / 36))


# -- stream paths ----------------------------------------------------------------------------

def test_unused_groups_leave_the_stream_unchanged_and_used_ones_matter():
    model = grouped_model("block-causal")
    a, b = model.stream("x", seed=2), model.stream("x", seed=2)
    c = model.stream("x", seed=2, sketch=torch.randn(3, 40))
    outs = [(a.next_latents(), b.next_latents(), c.next_latents()) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y, _ in outs)
    assert not torch.equal(outs[0][0], outs[0][2])
    with pytest.raises(lmdm.errors.ConfigError, match="sketch"):
        lmdm.LiveMusicModel(lmdm.preset("tiny")).stream("x", sketch=torch.zeros(3, 4))


@pytest.mark.parametrize("cfg_scale,sketch_cfg,branches", [
    (1.0, 1.0, ("cond",)), (2.0, 1.0, ("cond", "no_text")), (1.0, 3.0, ("cond", "no_sketch")),
    (2.0, 3.0, ("cond", "no_text", "no_sketch"))])
def test_enc_dec_with_sketch_and_accompaniment_equals_full_window_forward(cfg_scale, sketch_cfg, branches):
    model = grouped_model("enc-dec")
    gen = torch.Generator().manual_seed(1)
    sketch, acc = torch.randn(1, 3, 30, generator=gen), torch.randn(1, 8, 60, generator=gen)
    s = model.stream("warm piano", seed=3, cfg_scale=cfg_scale, sketch_cfg=sketch_cfg)
    assert s.branches == ("cond",) + tuple(b for b in branches if b == "no_text")   # no sketch yet
    s.set_sketch(sketch, start=2)
    assert s.branches == branches
    s.set_accompaniment(acc[..., :10], start=0)
    s.trace = []
    dit, C, B, cut = model.dit, s.C, s.B, s.cutoff_frames
    worst = 0.0
    for block in range(8):
        s.push_accompaniment(acc[..., 10 + 4 * block: 14 + 4 * block])   # live-style pushes
        P = s.frame
        hist, mask = doubled(s, s.history.clone()), doubled(s, s.history_mask.clone())
        sketch_group, cond = branch_reference(s, ref_group(sketch, 2, P - C, C + B))
        groups = {"context": torch.cat((torch.cat((mask, torch.zeros(mask.shape[0], 1, B)), -1),
                                        torch.cat((hist, torch.zeros(hist.shape[0], 8, B)), -1)), 1),
                  "sketch": sketch_group,
                  "accompaniment": doubled(s, ref_group(acc, 0, P - C, C + B, visible_until=P - cut))}
        s.trace.clear()
        s.next_latents()
        for rec in s.trace:
            x = torch.cat((torch.zeros_like(hist), rec["x"]), -1)
            with torch.no_grad():
                ref = dit(x, torch.full((x.shape[0],), rec["t"]), cond, groups, "enc-dec", context_frames=C)[..., C:]
            worst = max(worst, (ref - rec["v"]).abs().max().item())
    assert s.accompaniment_start > 0  # the buffer was trimmed
    assert worst < TOL, worst


def test_block_causal_with_sketch_and_accompaniment_equals_one_banded_forward():
    """Each frame carries the group values visible when it entered the cache (bootstrap: frame <
    P0 - cutoff; a finished chunk at the next fused step: frame < P + B - cutoff)."""
    model = grouped_model("block-causal")
    gen = torch.Generator().manual_seed(2)
    sketch, acc = torch.randn(1, 3, 40, generator=gen), torch.randn(1, 8, 80, generator=gen)
    s = model.stream("warm piano", seed=5, cfg_scale=2.0, cutoff_frames=2, sketch=sketch)
    s.set_accompaniment(acc, start=-6)
    s.trace = []
    C, B, cut = s.C, s.B, 2
    worst, checked, lat, msk, grp = 0.0, 0, None, None, None
    for block in range(10):
        if block == 6:
            s.set_prompts([("dub techno", 1.0), ("warm piano", 0.5)])
        P = s.frame
        if s.needs_bootstrap or lat is None:
            lat, msk = doubled(s, s.history.clone()), doubled(s, s.history_mask.clone())
            grp = {"sketch": ref_group(sketch, 0, P - C, C),
                   "accompaniment": ref_group(acc, -6, P - C, C, visible_until=P - cut)}
        s.trace.clear()
        out = s.next_latents()
        err, calls = banded_reference_error(s, lat, msk, {
            "sketch": doubled(s, torch.cat((grp["sketch"], ref_group(sketch, 0, P, B)), -1)),
            "accompaniment": doubled(s, torch.cat((grp["accompaniment"],
                                                   ref_group(acc, -6, P, B, visible_until=P - cut)), -1))})
        worst, checked = max(worst, err), checked + calls
        lat = torch.cat((lat, doubled(s, out)), -1)
        msk = torch.cat((msk, torch.ones(msk.shape[0], 1, B)), -1)
        grp = {"sketch": torch.cat((grp["sketch"], ref_group(sketch, 0, P, B)), -1),
               "accompaniment": torch.cat((grp["accompaniment"],
                                           ref_group(acc, -6, P, B, visible_until=P + B - cut)), -1)}
    assert checked == 10 * s.steps
    assert worst < TOL, worst


@pytest.mark.parametrize("pattern,cutoff", [("enc-dec", None), ("block-causal", 2)])
def test_accompaniment_cutoff_is_enforced(pattern, cutoff):
    """Block j never depends on accompaniment at/after j*B - cutoff; it does on the frame before."""
    model = grouped_model(pattern)
    acc = torch.randn(1, 8, 40, generator=torch.Generator().manual_seed(3))
    j = 4
    B = model.config.pattern.block_frames
    cut = B if cutoff is None else cutoff

    def run(a):
        s = model.stream("x", seed=1, accompaniment=a, cutoff_frames=cutoff)
        assert s.accompaniment_start == 0
        return [s.next_latents() for _ in range(j + 1)]

    base = run(acc)
    for frame, changes in ((j * B - cut, False), (j * B - cut + 1, False), (j * B + 3, False),
                           (j * B - cut - 1, True)):
        a = acc.clone()
        a[..., frame] += 3.0
        out = run(a)
        assert all(torch.equal(x, y) for x, y in zip(base[:j], out[:j]))
        assert torch.equal(base[j], out[j]) != changes, frame


def test_sketch_guidance_combines_the_branches():
    """v = v_cond + (cfg - 1)(v_cond - v_no_text) + (sketch_cfg - 1)(v_cond - v_no_sketch)."""
    model = grouped_model("block-causal")
    s = model.stream("x", cfg_scale=2.5, sketch_cfg=4.0, sketch=torch.randn(3, 40))
    v = {"cond": 1.0, "no_text": 0.25, "no_sketch": -0.5}
    denoise = s._denoise_fn(lambda x, t, i: torch.cat([torch.full((1, 8, s.B), v[b]) for b in s.branches]))
    guided, uncond = denoise(torch.zeros(1, 8, s.B), 0.5, 0)
    assert torch.allclose(guided, torch.full_like(guided, 1.0 + 1.5 * 0.75 + 3.0 * 1.5))
    assert torch.equal(uncond, torch.full_like(uncond, 0.25))
    s.set_sketch(None)   # the no-sketch branch goes, the conditioning and the cache are rebuilt
    assert s.branches == s._branch_names == ("cond", "no_text") and s.needs_bootstrap
    s.next_latents()


def test_sketch_guidance_follows_the_sketch_harder():
    """On the tiny model, the guided output moves away from the unsketched one along the sketch's
    direction: the difference to the no-sketch stream grows with the scale."""
    model = grouped_model("enc-dec")
    sketch = torch.randn(3, 40, generator=torch.Generator().manual_seed(5))
    plain = model.stream("x", seed=1).next_latents()
    diffs = [(model.stream("x", seed=1, sketch=sketch, sketch_cfg=g).next_latents() - plain).norm()
             for g in (1.0, 2.0, 4.0)]
    assert diffs[0] < diffs[1] < diffs[2], diffs


def test_stream_state_keeps_sketch_and_accompaniment(tmp_path):
    model = grouped_model("block-causal")
    s = model.stream("x", seed=4, sketch=torch.randn(3, 30), accompaniment=torch.randn(8, 30), cutoff_frames=1,
                     sketch_cfg=2.0)
    for _ in range(3):
        s.next_latents()
    s.save(tmp_path / "s.safetensors")
    want = [s.next_latents() for _ in range(3)]
    fresh = model.stream("x")
    fresh.restore(tmp_path / "s.safetensors")
    assert fresh.cutoff_frames == 1 and fresh.branches == ("cond", "no_sketch")
    assert all(torch.equal(fresh.next_latents(), w) for w in want)


# -- generative delay --------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,feedback", [("enc-dec", 1.0), ("block-causal", 0.5), ("enc-dec", 0.0)])
def test_generative_delay_lags_its_input_by_exactly_lag_blocks(pattern, feedback):
    model = grouped_model(pattern)
    inp = torch.randn(12, 8, 4, generator=torch.Generator().manual_seed(4))
    i = 2

    def run(x):
        d = DelayStream(model, "x", seed=3, feedback=feedback)
        return d, [d.process_latents(block) for block in x]

    d, base = run(inp)
    assert d.lag_blocks == 2 and d.cutoff_frames == 4
    poked = inp.clone()
    poked[i, :, 0] += 5.0  # an impulse in input block i
    _, out = run(poked)
    first = next(k for k, (a, b) in enumerate(zip(base, out)) if not torch.equal(a, b))
    assert first == i + d.lag_blocks


def audio_delay_model():
    torch.manual_seed(0)
    cfg = lmdm.preset("tiny", "enc-dec")
    cfg.pattern.context_frames = 28  # longer than the cutoff the encoder's look-ahead needs (20)
    cfg.dit.input_groups = {"context": 9, "accompaniment": 9}
    cfg.autoencoder = dict(channels=8, c_mults=[1, 2], strides=[2, 4], latent_dim=8)  # hop 8
    return randomized(lmdm.LiveMusicModel(cfg.validate()).eval())


def test_generative_delay_audio_dry_path_and_sample_exact_lag():
    model = audio_delay_model()
    hop, B = 8, 4
    x = torch.randn(2, 12 * B * hop, generator=torch.Generator().manual_seed(5))
    d = DelayStream(model, "x", wet=0.0)
    L = model.autoencoder.config.encoder_lookahead_samples
    assert d.cutoff_frames == B * -(-L // (hop * B)) and d.lag_samples == d.lag_blocks * B * hop
    assert d.delay_samples == d.lag_samples + d.stream.decoder.delay_samples
    out = torch.cat([d.process(x[:, i * B * hop:(i + 1) * B * hop]) for i in range(12)], -1)[0]
    assert out.shape[-1] == 12 * B * hop - d.stream.decoder.delay_samples
    assert torch.equal(out[:, :d.lag_samples], torch.zeros(2, d.lag_samples))  # wet 0: the delayed input
    assert torch.equal(out[:, d.lag_samples:], x[:, :out.shape[-1] - d.lag_samples])

    j = 8

    def blocks(y):
        d = DelayStream(model, "x", seed=1, steps=2)
        return [(d.process(y[:, i * B * hop:(i + 1) * B * hop]), d.last_latents)[1] for i in range(j + 2)]

    base = blocks(x)

    def first_changed_block(sample):
        y = x.clone()
        y[:, sample] += 1.0
        return next(k for k, (a, b) in enumerate(zip(base, blocks(y))) if not torch.equal(a, b))

    edge = (j * B - d.cutoff_frames) * hop + L  # block j reads input samples < edge
    assert first_changed_block(edge - 1) == j
    assert first_changed_block(edge) == j + 1
