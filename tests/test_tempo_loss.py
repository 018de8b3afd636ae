"""The tempo loss: a differentiable copy of the evaluation's tempo scores, a loss that is low only at
the asked BPM and whose gradient teaches it, and ARC-Forcing paying it on its rollouts."""
import numpy as np
import torch

from lmdm.data.dataset import LatentDataset
from lmdm.data.tempo import tempo_scores as numpy_tempo_scores
from lmdm.train.tempo_loss import onset_envelope, tempo_loss, tempo_scores

FRAME_RATE = 22050 / 1024


def pulse_loudness(bpm: float, frames: int = 288) -> torch.Tensor:
    """Loudness in dB with a decaying accent on every beat."""
    t = np.arange(frames) / FRAME_RATE
    return torch.tensor(-30 + 12 * np.exp(-(t % (60 / bpm)) / 0.08), dtype=torch.float32)[None]


def test_scores_equal_the_evaluation_estimator_at_whole_lags():
    rng = np.random.default_rng(0)
    for envelope in (np.abs(rng.standard_normal(300)), onset_envelope(pulse_loudness(97))[0].double().numpy()):
        bpms, want = numpy_tempo_scores(envelope, FRAME_RATE)
        got = tempo_scores(torch.from_numpy(envelope)[None], FRAME_RATE, torch.from_numpy(bpms))[0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_loss_is_low_only_at_the_asked_tempo_and_skips_unknown():
    loud = pulse_loudness(110).repeat(4, 1)
    loss, hit = tempo_loss(loud, torch.tensor([110.0, 80.0, 150.0, 0.0]), FRAME_RATE)
    assert loss[0] < 0.5 and loss[1] > 5 * loss[0] + 2 and loss[2] > 5 * loss[0] + 2
    assert loss[3] == 0
    assert hit.tolist() == [True, False, False, False]


def test_its_gradient_teaches_the_tempo():
    """Free loudness curves optimised on the loss alone end up at the asked tempo by the numpy estimator."""
    torch.manual_seed(0)
    want = torch.tensor([92.0, 140.0])
    loud = (-30 + 3 * torch.randn(2, 288)).requires_grad_(True)
    opt = torch.optim.Adam([loud], lr=0.3)
    first = None
    for _ in range(150):
        loss = tempo_loss(loud, want, FRAME_RATE)[0].mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    for curve, bpm in zip(loud.detach(), want.tolist()):
        envelope = onset_envelope(curve[None])[0].double().numpy()
        bpms, scores = numpy_tempo_scores(envelope, FRAME_RATE)
        assert abs(bpms[int(np.argmax(scores))] / bpm - 1) < 0.04


def test_arc_forcing_pays_the_tempo_loss_on_its_rollouts(tmp_path):
    from test_finetune_groups import group_cfg, make_latents
    from test_tag_probe import add_metadata
    from lmdm.train import arc_forcing as arc
    from lmdm.train.config import TrainConfig
    from lmdm.train.finetune import build_model
    cfg = group_cfg(tmp_path, add_metadata(make_latents(tmp_path / "lat", clips=3, frames=24)), control_probe_steps=5)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "steps": 2, "batch_size": 2},
                                 "arc": {"chunks": 2, "max_steps": 3, "disc_layers": 1, "head_channels": 8,
                                         "tempo_loss_weight": 0.5}})
    model = build_model(cfg)
    C, B = model.config.pattern.context_frames, model.config.pattern.block_frames
    obj = arc.ArcForcingObjective(model, LatentDataset(cfg.finetune.latents, C + 2 * B, seed=0, controls=True), cfg)
    batch = obj.load_batch([0, 1], [0, 0], [0, 1])
    assert batch["bpm"].tolist() == [80.0, 150.0]    # the clips' metadata
    loss, extra = obj.loss(arc.GEN, batch, 0)
    assert extra["tempo_loss"] > 0 and 0 <= extra["tempo_hit"] <= 1
    model.zero_grad()
    loss.backward()
    router = model.dit.transformer.project_in.weight.grad
    assert router is not None and torch.isfinite(router).all() and router.abs().sum() > 0
    assert (tmp_path / "run" / "control-probe.safetensors").exists()
    last = arc.Trainer(obj, cfg).fit()
    assert last["tempo_loss"] > 0


def test_without_the_weight_nothing_changes(tmp_path):
    from test_finetune_groups import group_cfg, make_latents
    from test_tag_probe import add_metadata
    from lmdm.train import arc_forcing as arc
    from lmdm.train.config import TrainConfig
    from lmdm.train.finetune import build_model
    cfg = group_cfg(tmp_path, add_metadata(make_latents(tmp_path / "lat", clips=3, frames=24)))
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "batch_size": 2},
                                 "arc": {"chunks": 2, "max_steps": 3, "disc_layers": 1, "head_channels": 8}})
    model = build_model(cfg)
    C, B = model.config.pattern.context_frames, model.config.pattern.block_frames
    obj = arc.ArcForcingObjective(model, LatentDataset(cfg.finetune.latents, C + 2 * B, seed=0, controls=True), cfg)
    batch = obj.load_batch([0, 1], [0, 0], [0, 1])
    assert "bpm" not in batch and obj.loudness_probe is None
    assert "tempo_loss" not in obj.loss(arc.GEN, batch, 0)[1]
