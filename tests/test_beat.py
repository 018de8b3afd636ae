"""The beat clock (`lmdm.engine.beat`): tempo from prompts, a phase continuous across tempo changes, the
stream's cached path equal to the full masked forward with the group, and its training batches."""
import json
import math

import pytest
import torch

import lmdm
from conftest import banded_reference_error, randomized
from lmdm.engine.beat import BeatClock, beat_group, bpm_from_prompts, bpm_from_text, with_tempo
from lmdm.engine.cache import _leading_rows
from lmdm.errors import ConfigError

FS = lmdm.preset("tiny").frame_seconds


def beat_model(pattern="block-causal", seed=0):
    torch.manual_seed(seed)
    cfg = lmdm.preset("tiny", pattern)
    cfg.dit.input_groups = {"context": 9, "beat": 3}
    cfg.validate()
    return randomized(lmdm.LiveMusicModel(cfg).eval(), seed)


def ref_beat(first, n, changes):
    """[mask | sin | cos] for absolute frames first.., from a list of (frame, bpm) tempo changes,
    integrating the tempo frame by frame (independent of BeatClock)."""
    out = torch.zeros(3, n)
    for i in range(n):
        f, phase = first + i, 0.0
        if f >= 0:
            for k in range(f):
                phase += FS * [b for start, b in changes if start <= k][-1] / 60
        else:
            phase = f * FS * changes[0][1] / 60
        out[:, i] = torch.tensor([1.0, math.sin(2 * math.pi * phase), math.cos(2 * math.pi * phase)])
    return out


def test_tempo_from_prompts():
    assert bpm_from_text("funky bass groove with drums, 110 BPM") == 110
    assert bpm_from_text("Reggae track (92 bpm) in G minor") == 92
    assert bpm_from_text("a 7.5 bpm drone") is None and bpm_from_text("900 BPM") is None
    assert bpm_from_text("warm piano") is None and bpm_from_text("") is None
    assert bpm_from_prompts([("dub, 80 BPM", 0.3), ("house, 124 BPM", 0.7)]) == 124
    assert bpm_from_prompts([("dub, 80 BPM", 0.3), ("choir", 0.7)]) == 80
    assert bpm_from_prompts("choir") is None
    assert with_tempo("house groove", 80) == "house groove, 80 BPM"
    assert with_tempo("dub at 120 bpm, heavy", 92.5) == "dub at 92.5 BPM, heavy"


def test_clock_phase_is_continuous_across_tempo_changes_and_keeps_its_past():
    clock = BeatClock(FS, 120)
    before = clock.group(0, 90)
    clock.set_bpm(90, 40)
    clock.set_bpm(None, 70)
    got = clock.group(0, 90)
    torch.testing.assert_close(got[:, :40], before[:, :40])
    torch.testing.assert_close(got[:, :70], ref_beat(0, 70, [(0, 120), (40, 90)]), atol=1e-6, rtol=0)
    assert not got[:, 70:].any()                        # a stopped clock reads all zero
    clock.set_bpm(100, 80)                              # restarting keeps counting beats from the stop
    assert clock.phase_at(80) == pytest.approx(clock.phase_at(70))
    assert torch.equal(beat_group(torch.zeros(2), torch.tensor([True, False]))[:, 1], torch.zeros(3))
    with pytest.raises(ConfigError, match="bpm"):
        clock.set_bpm(1000, 90)


def test_a_clock_shown_late_is_the_same_grid_delayed_and_streams_take_the_models_lead():
    """`ModelConfig.beat_lead_frames`: a model that plays its beats ahead of its clock is shown the grid
    that many frames late (tempo changes too); the grid itself (`phase_at`) does not move."""
    late, grid = BeatClock(FS, 120, delay_frames=3), BeatClock(FS, 120)
    for clock in (late, grid):
        clock.set_bpm(90, 40)
    torch.testing.assert_close(late.group(10, 60), grid.group(7, 60))
    assert late.phase_at(50) == grid.phase_at(50)
    half = BeatClock(FS, 120, delay_frames=0.5).group(0, 4)[1]
    torch.testing.assert_close(half, torch.sin(2 * math.pi * (torch.arange(4.0) - 0.5) * FS * 2).float())
    model = beat_model()
    model.config.beat_lead_frames = 3.0
    s = model.stream("warm piano, 120 BPM", seed=0)
    assert s.beat.delay_frames == 3.0
    torch.testing.assert_close(s._window_groups(s.frame, s.B)["beat"][0], BeatClock(FS, 120).group(s.frame - 3, s.B))
    model.config.beat_lead_frames = 40.0
    with pytest.raises(ConfigError, match="beat_lead_frames"):
        model.config.validate()


def test_block_causal_stream_with_a_beat_equals_one_banded_forward():
    """The prompt sets the clock (120 BPM), a new prompt changes it (90 BPM at block 5, a re-bootstrap);
    every denoising call equals the full forward over the stream with the reference phases."""
    model = beat_model()
    s = model.stream("warm piano, 120 BPM", seed=5, cfg_scale=2.0)
    s.trace = []
    B = s.B
    worst, checked, lat, msk, changes = 0.0, 0, None, None, [(0, 120.0)]
    for block in range(9):
        if block == 5:
            s.set_prompts("dub techno at 90 bpm")
            changes.append((s.frame, 90.0))
        P = s.frame
        if s.needs_bootstrap or lat is None:
            lat, msk = torch.cat([s.history] * 2), torch.cat([s.history_mask] * 2)
        s.trace.clear()
        out = s.next_latents()
        n = lat.shape[-1]
        err, calls = banded_reference_error(s, lat, msk, {"beat": torch.stack([ref_beat(P - n, n + B, changes)] * 2)})
        worst, checked = max(worst, err), checked + calls
        lat = torch.cat((lat, torch.cat([out] * 2)), -1)
        msk = torch.cat((msk, torch.ones(msk.shape[0], 1, B)), -1)
    assert checked == 9 * s.steps
    assert worst < 1e-5, worst


def test_beat_guidance_runs_a_branch_without_the_clock_only_while_it_runs(tmp_path):
    """Under beat guidance the model batch gains a branch whose beat group is all zero, run on the first
    `beat_cfg_steps` steps only; every denoising call equals the full forward of the rows it ran, each
    with its own group. No clock, no branch."""
    model = beat_model()
    s = model.stream("warm piano, 120 BPM", seed=5, beat_cfg=3.0, beat_cfg_steps=2)
    assert s.branches == ("cond", "no_beat")
    s.trace = []
    lat, msk, worst = torch.cat([s.history] * 2), torch.cat([s.history_mask] * 2), 0.0
    full_cond = s.cond
    for _ in range(4):
        P, n = s.frame, lat.shape[-1]
        s.trace.clear()
        out = s.next_latents()
        ref = ref_beat(P - n, n + s.B, [(0, 120.0)])
        both, cond_only = [r for r in s.trace if len(r["x"]) == 2], [r for r in s.trace if len(r["x"]) == 1]
        assert len(both) == 2 and len(cond_only) == s.steps - 2
        s.trace = both
        worst = max(worst, banded_reference_error(s, lat, msk, {"beat": torch.stack([ref, torch.zeros_like(ref)])})[0])
        s.trace, s.cond = cond_only, _leading_rows(None, full_cond, 1)[1]
        worst = max(worst, banded_reference_error(s, lat[:1], msk[:1], {"beat": ref[None]})[0])
        s.trace, s.cond = [], full_cond
        lat = torch.cat((lat, torch.cat([out] * 2)), -1)
        msk = torch.cat((msk, torch.ones(msk.shape[0], 1, s.B)), -1)
    assert worst < 1e-5, worst
    run = lambda prompt, **kw: model.stream(prompt, seed=2, **kw).next_latents()
    assert not torch.equal(run("house, 120 BPM", beat_cfg=3.0), run("house, 120 BPM"))
    assert torch.equal(run("warm piano", beat_cfg=3.0), run("warm piano"))          # no clock: nothing to guide
    first = run("house, 120 BPM", beat_cfg=3.0, beat_cfg_steps=1)                   # on the first step only
    assert not torch.equal(first, run("house, 120 BPM", beat_cfg=3.0)) and not torch.equal(first, run("house, 120 BPM"))
    s.set_beat_cfg(3.0, steps=2)
    s.save(tmp_path / "s.safetensors")
    want = s.next_latents()
    fresh = model.stream("warm piano")
    fresh.restore(tmp_path / "s.safetensors")
    assert (fresh.beat_cfg, fresh.beat_cfg_steps) == (3.0, 2) and torch.equal(fresh.next_latents(), want)
    s.set_bpm(0)                                       # the clock stops: so does its branch
    assert s.branches == ("cond",)
    s.set_bpm(90)
    s.set_beat_cfg(1.0)
    assert s.branches == ("cond",)
    cfg = lmdm.preset("tiny")
    cfg.beat_cfg_scale = 30.0
    with pytest.raises(ConfigError, match="beat_cfg_scale"):
        cfg.validate()
    cfg.beat_cfg_scale, cfg.beat_cfg_steps = 2.0, -1
    with pytest.raises(ConfigError, match="beat_cfg_steps"):
        cfg.validate()


def test_the_clock_follows_the_prompt_a_number_or_nothing():
    model = beat_model()
    run = lambda prompt, **kw: model.stream(prompt, seed=2, **kw).next_latents()
    assert torch.equal(run("warm piano", bpm=0), run("warm piano"))    # no tempo named: no clock
    named = run("house, 120 BPM")
    assert torch.equal(run("house, 120 BPM", bpm=120), named)
    assert not torch.equal(run("house, 120 BPM", bpm=0), named)
    assert not torch.equal(run("house, 120 BPM", bpm=90), named)
    plain = lmdm.LiveMusicModel(lmdm.preset("tiny")).eval()
    plain.stream("warm piano, 120 BPM").next_latents()                 # a model without the group ignores it
    with pytest.raises(ConfigError, match="beat"):
        plain.stream("warm piano", bpm=120)


def test_stream_state_keeps_the_clock(tmp_path):
    model = beat_model()
    s = model.stream("x, 120 BPM", seed=4)
    for _ in range(2):
        s.next_latents()
    s.set_bpm(97)
    s.next_latents()
    s.save(tmp_path / "s.safetensors")
    want = [s.next_latents() for _ in range(3)]
    fresh = model.stream("x")
    fresh.restore(tmp_path / "s.safetensors")
    assert fresh.bpm_mode == 97 and fresh.beat.segments == s.beat.segments
    assert all(torch.equal(fresh.next_latents(), w) for w in want)


# -- training ---------------------------------------------------------------------------------

def tempo_latents(tmp_path):
    from test_finetune_groups import make_latents
    lat = make_latents(tmp_path / "lat")
    lines = [json.loads(x) for x in (lat / "latents.jsonl").read_text().splitlines()]
    for i, line in enumerate(lines):
        if i != 3:   # clip 3 has no tempo: never a clock
            line["metadata"] = {"tempo": 80 + 20 * i}
    (lat / "latents.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return lat


def test_finetune_beat_group_is_the_pieces_grid_at_the_windows_frames(tmp_path):
    from test_finetune_groups import group_cfg, objective
    cfg = group_cfg(tmp_path, tempo_latents(tmp_path), p_beat=1.0, add_input_groups={"beat": 3})
    obj = objective(cfg)
    assert obj.model.config.dit.input_groups["beat"] == 3 and not obj.model.dit.input_groups["beat"].weight.any()
    fs = obj.model.config.frame_seconds
    b = obj.load_batch([0, 1, 2, 3], [0] * 4, [0, 1, 2, 3])
    beat = b["groups"]["beat"]
    T = beat.shape[-1]
    for j in range(3):
        obj.data.set_epoch(0)
        item = obj.data[j]
        first = item["start"] + item["latents"].shape[-1] - T   # the window is the crop's last T frames
        phase = torch.arange(first, first + T, dtype=torch.float64) * fs * (80 + 20 * j) / 60
        torch.testing.assert_close(beat[j], beat_group(phase))
    assert not beat[3].any()
    off = objective(group_cfg(tmp_path, tempo_latents(tmp_path), p_beat=0.3, add_input_groups={"beat": 3}))
    drawn = off.load_batch([0, 1, 2] * 8, [0] * 24, list(range(24)))["groups"]["beat"][:, 0].amax(-1)
    assert 0 < drawn.sum() < 24
    with pytest.raises(ConfigError, match="add_input_groups"):
        objective(group_cfg(tmp_path, tempo_latents(tmp_path), add_input_groups={"sketch": 3}))


def test_arc_rollouts_carry_the_clock_from_the_crops_first_frame(tmp_path):
    from test_finetune_groups import group_cfg
    from lmdm.data.dataset import LatentDataset
    from lmdm.train import arc_forcing as arc
    from lmdm.train.config import TrainConfig
    from lmdm.train.finetune import build_model
    cfg = group_cfg(tmp_path, tempo_latents(tmp_path), p_beat=1.0, add_input_groups={"beat": 3})
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "steps": 2, "batch_size": 2},
                                 "arc": {"chunks": 2, "max_steps": 3, "disc_layers": 1, "head_channels": 8}})
    model = build_model(cfg)
    C, B = model.config.pattern.context_frames, model.config.pattern.block_frames
    obj = arc.ArcForcingObjective(model, LatentDataset(cfg.finetune.latents, C + 2 * B, seed=0), cfg)
    batch = obj.load_batch([1, 2], [0, 0], [0, 1])
    for j, i in enumerate((1, 2)):
        phase = torch.arange(batch["start"][j], batch["start"][j] + C + 2 * B, dtype=torch.float64)
        torch.testing.assert_close(batch["groups"]["beat"][j],
                                   beat_group(phase * model.config.frame_seconds * (80 + 20 * i) / 60))
    last = arc.Trainer(obj, cfg).fit()
    assert math.isfinite(last["generator_loss"])
    assert obj.model.dit.input_groups["beat"].weight.any()   # the rollouts' clock is trained


def test_beat_loss_and_the_clocks_own_learning_rate(tmp_path):
    from test_finetune_groups import group_cfg, objective
    from lmdm.train.loop import Trainer
    lat = tempo_latents(tmp_path)
    cfg = group_cfg(tmp_path, lat, p_beat=1.0, add_input_groups={"beat": 3}, beat_loss_weight=1.0,
                    control_probe_steps=5, input_group_lr_mult=2.0, group_lr_mults={"beat": 50.0})
    t = Trainer(objective(cfg), cfg)
    beat = t.obj.model.dit.input_groups["beat"].weight
    lr = {id(p): g["lr"] for g in t.optimizers[0].param_groups for p in g["params"]}
    assert lr[id(beat)] == pytest.approx(50 * cfg.optim.lr)
    assert lr[id(t.obj.model.dit.input_groups["sketch"].weight)] == pytest.approx(2 * cfg.optim.lr)
    last = t.fit()
    assert last["beat_loss"] > 0 and "control_loss" not in last   # no sketch loss asked for
    assert beat.any()
    with pytest.raises(ConfigError, match="beat_loss_weight"):
        objective(group_cfg(tmp_path, lat, add_input_groups={"beat": 3}, beat_loss_weight=1.0))
    with pytest.raises(ConfigError, match="group_lr_mults"):
        objective(group_cfg(tmp_path, lat, group_lr_mults={"tempo": 2.0}))


def test_generate_cli_follows_bpm_and_refuses_it_without_a_clock(tmp_path):
    import subprocess
    import sys
    import soundfile as sf
    from lmdm.checkpoints import save_pretrained
    from lmdm.live.testmodel import tiny_live_model
    with_clock = save_pretrained(tiny_live_model(block_frames=8, steps=1, groups=True), tmp_path / "clock")
    plain = save_pretrained(tiny_live_model(block_frames=8, steps=1), tmp_path / "plain")
    cmd = [sys.executable, "-m", "lmdm", "generate", "house", "--seconds", "0.5", "--quiet", "--dtype", "fp32"]
    out = subprocess.run(cmd + ["--model", str(with_clock), "--bpm", "120", "-o", str(tmp_path / "a.wav")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sf.info(str(tmp_path / "a.wav")).duration == pytest.approx(0.5, abs=1e-3)
    for bpm, message in (("120", "beat"), ("7", "--bpm must be a number in [0, 300] (0 = the model picks, else 30..300)")):
        model = plain if message == "beat" else with_clock
        out = subprocess.run(cmd + ["--model", str(model), "--bpm", bpm, "-o", str(tmp_path / "b.wav")],
                             capture_output=True, text=True)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
