"""ARC-Forcing: rollouts equal Stream, one gradient step per chunk, detached caches, mismatched
prompts, loss formulas, the discriminator, and a short run that trains."""
import json
from pathlib import Path

import pytest
import torch

import lmdm

from conftest import tiny_model
from lmdm.errors import ConfigError, TrainingError
from lmdm.models.discriminator import ConvNeXtBlock1d, Discriminator
from lmdm.train import arc_forcing as arc
from lmdm.train.config import TrainConfig, load_config
from test_train import make_latent_dir

PATTERNS = ["block-causal", "enc-dec"]


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread avoids oversubscription on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def stream_reference(model, context, blocks, seed=3, prompt="dub techno"):
    """Stream's blocks and the per-block noise it drew (its `_noise()` is a function of (seed, block))."""
    stream = model.stream(prompt, seed=seed, steps=model.config.steps, context=context)
    noises, outs = [], []
    for _ in range(blocks):
        noises.append(stream._noise())
        outs.append(stream.next_latents())
    return stream, noises, torch.cat(outs, -1)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_rollout_with_last_exit_equals_stream(pattern):
    model = tiny_model(pattern)
    C, K, S = model.config.pattern.context_frames, 2, model.config.steps
    context = torch.randn(1, model.config.dit.io_channels, C, generator=torch.Generator().manual_seed(1))
    stream, noises, want = stream_reference(model, context, K)
    with torch.no_grad():
        got = arc.rollout(model.dit, model.config.pattern, context, torch.ones(1, 1, C), stream.cond, noises, [S] * K)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_rollout_early_exit_is_streams_x0_prediction(pattern):
    """With exit step k < S the chunk is the x0 prediction x − t·v of Stream's k-th denoising call
    (from Stream.trace), for the same noise: the first k steps are Stream's own."""
    model = tiny_model(pattern)
    C, S = model.config.pattern.context_frames, model.config.steps
    context = torch.randn(1, model.config.dit.io_channels, C, generator=torch.Generator().manual_seed(2))
    stream = model.stream("dub techno", seed=5, context=context)
    stream.trace = []
    noise = stream._noise()
    stream.next_latents()
    k = 3
    from lmdm.engine.sampling import sao_schedule
    t = sao_schedule(S)[k - 1]
    call = stream.trace[k - 1]
    want = call["x"] - t * call["v"]
    with torch.no_grad():
        got = arc.rollout(model.dit, model.config.pattern, context, torch.ones(1, 1, C), stream.cond, [noise], [k])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_exactly_one_step_per_chunk_has_gradient(pattern):
    model = tiny_model(pattern)
    model.train()
    C, B, io = model.config.pattern.context_frames, model.config.pattern.block_frames, model.config.dit.io_channels
    K, S, b = 3, 6, 2
    gen = torch.Generator().manual_seed(0)
    noise = [[torch.randn(b, io, B, generator=gen) for _ in range(S)] for _ in range(K)]
    cond = model.dit.condition(*model.text_conditioning(["a", "b"]))
    calls = []   # an independent count: forward calls of the first block while autograd records
    hook = model.dit.transformer.layers[0].register_forward_hook(
        lambda m, i, o: calls.append(torch.is_grad_enabled()))
    trace, exits = [], [2, 5, 1]
    try:
        out = arc.rollout(model.dit, model.config.pattern, torch.randn(b, io, C, generator=gen),
                          torch.ones(b, 1, C), cond, noise, exits, trace=trace)
    finally:
        hook.remove()
    context_passes = 1 if pattern == "block-causal" else K   # bootstrap once / prefill per chunk, no_grad
    assert sum(calls) == K and len(calls) == sum(exits) + context_passes
    assert [(c["chunk"], c["step"]) for c in trace if c["grad"]] == [(j, k - 1) for j, k in enumerate(exits)]
    assert out.shape == (b, io, K * B) and out.requires_grad
    # each chunk's gradient reaches the weights, and only through its own exit step: chunk j's
    # output does not depend (in the graph) on earlier chunks' outputs, whose K/V were detached
    for j in range(K):
        g = torch.autograd.grad(out[..., j * B:(j + 1) * B].square().sum(), list(model.dit.parameters()),
                                retain_graph=True, allow_unused=True)
        assert any(x is not None and x.abs().sum() > 0 for x in g)
    # the whole rollout's graph holds exactly K DiT passes (one self- and one cross-attention per
    # layer each): one per chunk, nothing from the no-grad steps or the cache
    def count(fn, seen):
        if fn is None or fn in seen:
            return 0
        seen.add(fn)
        name = type(fn).__name__
        return ("Attention" in name or "Softmax" in name) + sum(count(f, seen) for f, _ in fn.next_functions)
    assert count(out.sum().grad_fn, set()) == K * 2 * model.config.dit.depth


def test_rollout_without_grad_keeps_no_graph():
    model = tiny_model("block-causal")
    C, B, io = model.config.pattern.context_frames, model.config.pattern.block_frames, model.config.dit.io_channels
    noise = [[torch.randn(1, io, B) for _ in range(4)] for _ in range(2)]
    with torch.no_grad():
        out = arc.rollout(model.dit, model.config.pattern, torch.randn(1, io, C), torch.ones(1, 1, C),
                          model.dit.condition(*model.text_conditioning(["x"])), noise, [2, 3])
    assert not out.requires_grad


def test_exit_steps_range_and_determinism():
    ks = arc.exit_steps(0, 7, 200, 6)
    assert set(ks) == {1, 2, 3, 4, 5}
    assert ks == arc.exit_steps(0, 7, 200, 6) and ks != arc.exit_steps(0, 8, 200, 6)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_mismatched_prompts_differ(n):
    captions = [f"caption {i}" for i in range(n)]
    before = list(captions)
    idx = arc.mismatched_indices(captions)
    assert captions == before
    assert all(i != j and captions[i] != captions[j] for j, i in enumerate(idx))
    # repeated captions: still another item, and another text when one exists
    dup = ["a", "a", "b"][:n] if n == 3 else ["a"] * (n - 1) + ["b"]
    idx = arc.mismatched_indices(dup)
    assert all(i != j and dup[i] != dup[j] for j, i in enumerate(idx))


def test_mismatched_prompts_reject_batch_of_one():
    with pytest.raises(TrainingError, match="at least 2 items"):
        arc.mismatched_indices(["only"])


def test_loss_formulas_on_hand_computed_scores():
    real, fake = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    sp = lambda x: torch.log1p(torch.exp(torch.tensor(x)))
    want_g = (sp(1.0) + sp(-3.0) + sp(0.0)) / 3
    want_d = (sp(-1.0) + sp(3.0) + sp(0.0)) / 3
    torch.testing.assert_close(arc.generator_loss(real, fake), want_g)
    torch.testing.assert_close(arc.discriminator_loss(real, fake), want_d)
    torch.testing.assert_close(arc.contrastive_loss(real, fake), want_d)
    assert float(arc.generator_loss(torch.tensor([0.0]), torch.tensor([0.0]))) == pytest.approx(0.6931471805599453)


def test_discriminator_shape_cut_and_head():
    model = tiny_model("block-causal")
    d = Discriminator(model.dit, layers=1, channels=16, strides=(1, 2, 2), mults=(1, 2, 4), blocks=2)
    assert len(d.dit.transformer.layers) == 1 and len(d.dit.input_groups) == 0
    assert len(d.head.stages) == 3 and all(len(s) == 3 for s in d.head.stages)
    assert [s[0].out_channels for s in d.head.stages] == [16, 32, 64]
    assert [s[0].stride[0] for s in d.head.stages] == [1, 2, 2]
    # a copy: training it leaves the generator alone
    with torch.no_grad():
        d.dit.transformer.layers[0].self_attn.to_qkv.weight.add_(1)
    assert not torch.equal(d.dit.transformer.layers[0].self_attn.to_qkv.weight,
                           model.dit.transformer.layers[0].self_attn.to_qkv.weight)
    cond = d.condition(*model.text_conditioning(["a", "b"]))
    s = d(torch.randn(2, 8, 12), torch.tensor([0.3, 0.7]), cond)
    assert s.shape == (2,) and torch.isfinite(s).all()
    with pytest.raises(ConfigError, match="layers"):
        Discriminator(model.dit, layers=3)
    blk = ConvNeXtBlock1d(4)
    for p in (blk.pw2.weight, blk.pw2.bias):
        torch.nn.init.zeros_(p)
    x = torch.randn(1, 4, 9)
    torch.testing.assert_close(blk(x), x)   # residual


def test_context_dropout_masks(tmp_path):
    lat = make_latent_dir(tmp_path / "lat", clips=3, frames=24)
    from lmdm.data.dataset import LatentDataset
    model = tiny_model("block-causal")
    C = model.config.pattern.context_frames

    def masks(p_uncond, p_partial):
        cfg = arc_cfg(tmp_path, lat, "block-causal")
        cfg.arc.p_uncond, cfg.arc.p_partial = p_uncond, p_partial
        obj = arc.ArcForcingObjective(model, LatentDataset(str(lat), 20, seed=0), cfg)
        batch = obj.load_batch([0, 1, 2] * 4, [0] * 12, list(range(12)))
        assert batch["noise"].shape == (12, 2, 3, 8, 4) and batch["latents"].shape[-1] == 20
        assert ((batch["t"] > 0) & (batch["t"] < 1)).all()
        return batch["mask"]

    assert (masks(1.0, 0.0) == 0).all() and (masks(0.0, 0.0) == 1).all()
    partial = masks(0.0, 1.0)
    kept = partial[:, 0].sum(-1)
    assert ((kept > 0) & (kept < C)).all() and (kept % 4 == 0).all()
    assert (partial[:, 0, -1] == 1).all()   # the leading chunks are the ones dropped


def arc_cfg(tmp: Path, latents: Path, pattern: str, **run) -> TrainConfig:
    return TrainConfig.from_dict({
        "run": {"out_dir": str(tmp / "run"), "steps": 2, "batch_size": 2, "progress": False, "log_every": 1,
                "checkpoint_every": 10, "export": False, **run},
        "optim": {"lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.01, "schedule": "constant"},
        "finetune": {"init": "preset:tiny", "pattern": pattern, "latents": str(latents), "trainable": ["dit.*"]},
        "arc": {"chunks": 2, "max_steps": 3, "disc_layers": 1, "head_channels": 8, "disc_lr": 1e-3,
                "r1_weight": 0.1, "r2_weight": 0.1}})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_short_run_changes_generator_and_stays_finite(tmp_path, pattern):
    cfg = arc_cfg(tmp_path, make_latent_dir(tmp_path / "lat", clips=3, frames=24), pattern)
    from lmdm.train.arc_forcing import arc_forcing
    import lmdm.train.arc_forcing as mod
    seen = {}
    real_trainer = mod.Trainer

    class Spy(real_trainer):
        def __init__(self, obj, cfg, ddp=None):
            super().__init__(obj, cfg, ddp)
            seen["obj"] = obj
            seen["before"] = {k: v.detach().clone() for k, v in obj.model.dit.state_dict().items()}
            seen["disc_before"] = {k: v.detach().clone() for k, v in obj.disc.state_dict().items()}

    mod.Trainer = Spy
    try:
        last = arc_forcing(cfg)
    finally:
        mod.Trainer = real_trainer
    obj = seen["obj"]
    assert [p.name for p in obj.phases] == ["generator", "discriminator"]
    changed = [k for k, v in obj.model.dit.state_dict().items() if not torch.equal(v, seen["before"][k])]
    assert changed, "generator weights did not move"
    assert any(not torch.equal(v, seen["disc_before"][k]) for k, v in obj.disc.state_dict().items())
    assert all(torch.isfinite(v).all() for v in obj.model.state_dict().values())
    for key in ("generator_loss", "discriminator_loss", "d_contrastive", "r1", "r2"):
        assert key in last and last[key] == last[key] and abs(last[key]) < 1e6, key
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert (tmp_path / "run" / "step-00000002.ckpt").exists()


def test_resume_is_exact(tmp_path):
    lat = make_latent_dir(tmp_path / "lat", clips=3, frames=24)
    from lmdm.data.dataset import LatentDataset

    def trainer(cfg):
        from lmdm.train.finetune import build_model
        model = build_model(cfg)
        data = LatentDataset(cfg.finetune.latents, 20, seed=0)
        return arc.Trainer(arc.ArcForcingObjective(model, data, cfg), cfg)

    a = trainer(arc_cfg(tmp_path / "a", lat, "block-causal"))
    a.fit()
    b = trainer(arc_cfg(tmp_path / "b", lat, "block-causal", checkpoint_every=1))
    b.fit(stop_at=1)
    c = trainer(arc_cfg(tmp_path / "b", lat, "block-causal", checkpoint_every=1))
    c.fit(resume=True)
    assert c.step == 2
    for name in ("model", "disc"):
        sa, sc = a.obj.modules[name].state_dict(), c.obj.modules[name].state_dict()
        assert all(torch.equal(sa[k], sc[k]) for k in sa), name


def test_batch_of_one_is_rejected_before_training(tmp_path):
    cfg = arc_cfg(tmp_path, make_latent_dir(tmp_path / "lat", clips=2, frames=24), "block-causal", batch_size=1)
    with pytest.raises(ConfigError, match="2 items per micro-batch"):
        arc.arc_forcing(cfg)


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs" / "train"
    sao = load_config(root / "arc-sao-small-gpus.json")   # the paper's settings
    assert sao.optim.lr == 1e-6 and sao.optim.betas == [0.9, 0.95] and sao.optim.weight_decay == 0.01
    assert sao.arc.contrastive_weight == 2.0 and sao.arc.max_steps == 6 and sao.run.batch_size >= 2
    # the default model's run: its own sampler length, a discriminator cut inside its 8 blocks
    default = load_config(root / "arc-default.json")
    shipped = lmdm.checkpoints.default_config()
    assert default.arc.max_steps == shipped.steps and default.arc.disc_layers < shipped.dit.depth
    assert default.arc.contrastive_weight == 2.0 and default.run.batch_size >= 2
    for name in ("default-model.json", "default-controls.json", "default-sketch.json", "default-autoencoder.json",
                 "default-decoder.json"):
        load_config(root / name)


def test_cli_has_arc_forcing(tmp_path, capsys):
    from lmdm.cli import main
    root = Path(__file__).resolve().parents[1]
    assert main(["train", "arc-forcing", "--config", str(root / "configs/train/arc-default.json"), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["arc"]["chunks"] == 6


def test_real_and_fake_share_noise_and_t_and_phases_alternate(tmp_path):
    """Both phases score real and fake re-noised with the same ε and t; the discriminator phase
    reuses the generator phase's detached rollout; c′ conditioning differs from c."""
    lat = make_latent_dir(tmp_path / "lat", clips=3, frames=24)
    from lmdm.data.dataset import LatentDataset
    cfg = arc_cfg(tmp_path, lat, "block-causal")
    model = tiny_model("block-causal")
    obj = arc.ArcForcingObjective(model, LatentDataset(str(lat), 20, seed=0), cfg)
    batch = obj.load_batch([0, 1, 2], [0] * 3, [0, 1, 2])
    calls = []
    forward = obj.disc.forward
    obj.disc.forward = lambda x, t, cond: (calls.append((x.detach(), t, cond)), forward(x, t, cond))[1]
    loss, extra = obj.loss("generator", batch, 0)
    loss.backward()
    assert all(p.grad is None for p in obj.disc.parameters())   # the discriminator is frozen here
    step, fake = batch["_fake"]
    real = batch["latents"][..., 12:]
    eps, t = batch["disc_noise"], batch["t"]
    torch.testing.assert_close(calls[0][0], arc.renoise(real, eps, t))
    torch.testing.assert_close(calls[1][0], arc.renoise(fake, eps, t))
    calls.clear()
    loss, extra = obj.loss("discriminator", batch, 0)
    loss.backward()
    (xr, tr, cr), (xf, tf, cf), (xm, tm, cm), (x1, _, _), (x2, _, _) = calls   # + approximate R1, R2
    torch.testing.assert_close(xr, arc.renoise(real, eps, t))
    torch.testing.assert_close(xf, arc.renoise(fake, eps, t))
    assert torch.equal(xm, xr) and torch.equal(tr, tf) and torch.equal(tr, tm)
    assert not torch.equal(cr.kv[0][0], cm.kv[0][0])
    r = batch["r_noise"] * cfg.arc.r_sigma
    torch.testing.assert_close(x1, xr + r)
    torch.testing.assert_close(x2, xf + r)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.disc.parameters())
    assert set(extra) >= {"d_adv", "d_contrastive", "d_mismatched", "r1", "r2"}


def test_cli_runs_a_tiny_arc_forcing(tmp_path, capsys):
    from lmdm.cli import main
    lat = make_latent_dir(tmp_path / "lat", clips=3, frames=24)
    sets = ["run.steps=1", "run.batch_size=2", "run.progress=false", "run.export=false", "run.threads=1",
            f"run.out_dir={tmp_path / 'run'}", "finetune.init=preset:tiny", f"finetune.latents={lat}",
            "arc.chunks=2", "arc.max_steps=3", "arc.disc_layers=1", "arc.head_channels=8"]
    assert main(["train", "arc-forcing", *[a for s in sets for a in ("--set", s)]]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 1 and "generator_loss" in out and "discriminator_loss" in out


# -- sketch-aware rollouts ---------------------------------------------------------------------

def sketch_model(pattern):
    from test_finetune_groups import GROUPS
    from conftest import randomized
    cfg = lmdm.preset("tiny", pattern)
    cfg.dit.input_groups = dict(GROUPS)
    torch.manual_seed(0)
    return randomized(lmdm.LiveMusicModel(cfg).eval(), 0)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_rollout_with_a_sketch_equals_stream_with_that_sketch(pattern):
    """A sketch over the whole window (context, then chunks) reaches every token as Stream gives it
    (`set_sketch` from the context's first frame), and it changes the output."""
    from lmdm.engine.sketch import sketch_group
    model = sketch_model(pattern)
    C, B, K, S = model.config.pattern.context_frames, model.config.pattern.block_frames, 2, model.config.steps
    g = torch.Generator().manual_seed(4)
    context = torch.randn(1, model.config.dit.io_channels, C, generator=g)
    controls = torch.randn(1, 3, C + K * B, generator=g)
    stream = model.stream("dub techno", seed=3, steps=S, context=context)
    stream.set_sketch(controls, start=-C)
    noises, outs = [], []
    for _ in range(K):
        noises.append(stream._noise())
        outs.append(stream.next_latents())
    with torch.no_grad():
        got = arc.rollout(model.dit, model.config.pattern, context, torch.ones(1, 1, C), stream.cond, noises,
                          [S] * K, groups={"sketch": sketch_group(controls)})
        plain = arc.rollout(model.dit, model.config.pattern, context, torch.ones(1, 1, C), stream.cond, noises,
                            [S] * K)
    torch.testing.assert_close(got, torch.cat(outs, -1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)


def test_arc_forcing_with_sketches_trains_and_logs_the_control_loss(tmp_path):
    from test_finetune_groups import make_latents, group_cfg
    cfg = group_cfg(tmp_path, make_latents(tmp_path / "lat", clips=3, frames=24), p_sketch=1.0,
                    control_loss_weight=1.0, control_probe_steps=5)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "steps": 2, "batch_size": 2},
                                 "arc": {"chunks": 2, "max_steps": 3, "disc_layers": 1, "head_channels": 8}})
    from lmdm.data.dataset import LatentDataset
    from lmdm.train.finetune import build_model
    model = build_model(cfg)
    C, B = model.config.pattern.context_frames, model.config.pattern.block_frames
    obj = arc.ArcForcingObjective(model, LatentDataset(cfg.finetune.latents, C + 2 * B, seed=0, controls=True), cfg)
    batch = obj.load_batch([0, 1], [0, 0], [0, 1])
    sketch = batch["groups"]["sketch"]
    assert sketch.shape == (2, 4, C + 2 * B) and (sketch[:, 0] > 0).any()
    last = arc.Trainer(obj, cfg).fit()
    assert "control_loss" in last and last["control_loss"] >= 0
    assert (tmp_path / "run" / "control-probe.safetensors").exists()
