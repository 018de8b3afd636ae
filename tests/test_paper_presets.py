"""configs/train/paper-*.json: the paper authors' recipe (their saos_* configs), checked value by value
and run for a couple of steps at reduced size (the tiny preset, short rollouts, a 1-block discriminator)."""
from pathlib import Path

import pytest
import torch

from lmdm.train.config import load_config
from test_train import make_latent_dir

ROOT = Path(__file__).resolve().parents[1] / "configs" / "train"


@pytest.mark.parametrize("pattern", ["block-causal", "enc-dec"])
def test_stage1_presets_mirror_their_config(pattern):
    c = load_config(ROOT / f"paper-{pattern}.json")
    assert (c.optim.lr, c.optim.betas, c.optim.weight_decay, c.optim.grad_clip) == (5e-5, [0.9, 0.999], 0.0, 0.0)
    f = c.finetune
    assert (f.p_uncond, f.p_partial, f.p_text_drop, f.timesteps) == (0.2, 0.3, 0.1, "uniform")
    assert c.run.ema_decay == 0.0 and c.optim.schedule == "constant"


@pytest.mark.parametrize("pattern,chunks,contrastive,clip", [("block-causal", 12, 2.0, 1.0), ("enc-dec", 4, 1.0, 0.0)])
def test_arc_presets_mirror_their_config(pattern, chunks, contrastive, clip):
    c = load_config(ROOT / f"paper-arc-{pattern}.json")
    assert (c.optim.lr, c.optim.betas, c.optim.weight_decay, c.optim.grad_clip) == (1e-6, [0.9, 0.95], 0.01, clip)
    a = c.arc
    assert (a.chunks, a.max_steps, a.p_uncond, a.p_partial, a.disc_layers) == (chunks, 6, 0.25, 0.1, 12)
    assert (a.head_channels, a.head_strides, a.head_mults, a.head_blocks) == (128, [1, 2, 2], [1, 2, 4], 2)
    assert (a.contrastive_weight, a.disc_lr, a.disc_betas, a.disc_weight_decay) == (contrastive, 1e-6, [0.9, 0.95], 0.01)
    assert c.run.accumulate == 2 and c.run.batch_size % 4 == 0


def _reduced(tmp_path, name, pattern, extra=()):
    lat = make_latent_dir(tmp_path / "lat", clips=3, frames=24)
    return load_config(ROOT / f"{name}.json", [
        f"run.out_dir={tmp_path / 'run'}", "run.steps=2", "run.batch_size=2", "run.accumulate=1", "run.precision=fp32",
        "run.progress=false", "run.export=false", "run.demo_every=0", "run.checkpoint_every=2",
        "finetune.init=preset:tiny", f"finetune.pattern={pattern}", f"finetune.latents={lat}", *extra])


@pytest.mark.parametrize("pattern", ["block-causal", "enc-dec"])
def test_stage1_presets_run_at_reduced_size(tmp_path, pattern):
    from lmdm.train.finetune import finetune
    last = finetune(_reduced(tmp_path, f"paper-{pattern}", pattern))
    assert (tmp_path / "run" / "step-00000002.ckpt").exists()
    assert last is None or all(v == v for v in last.values() if isinstance(v, float))


@pytest.mark.parametrize("pattern", ["block-causal", "enc-dec"])
def test_arc_presets_run_at_reduced_size(tmp_path, pattern):
    from lmdm.train.arc_forcing import arc_forcing
    last = arc_forcing(_reduced(tmp_path, f"paper-arc-{pattern}", pattern, [
        "arc.chunks=2", "arc.max_steps=3", "arc.disc_layers=1", "arc.head_channels=8", "arc.disc_init="]))
    assert all(torch.isfinite(torch.tensor(last[k])) for k in ("generator_loss", "discriminator_loss", "d_contrastive"))
