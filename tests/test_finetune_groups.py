"""Training integration of the sketch and accompaniment input groups and of mixed block sizes:
accompaniment pairs from `encode_dataset`, the groups `FinetuneObjective.load_batch` builds, the
shapes the DiT receives, and a short run that trains the group projections and resumes exactly."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

import lmdm
from lmdm.audio.controls import NAMES
from lmdm.audio.io import load_audio
from lmdm.data.dataset import LatentDataset, encode_audio, encode_dataset, write_manifest
from lmdm.errors import ConfigError
from lmdm.engine.sketch import median_filter, sketch_from_controls
from lmdm.train.config import TrainConfig
from lmdm.train.finetune import FinetuneObjective, build_model
from lmdm.train.loop import Trainer, list_checkpoints

SR, IO = 44100, 8
GROUPS = {"context": IO + 1, "sketch": 4, "accompaniment": IO + 1}


class ConvAE(torch.nn.Module):
    """A tiny randomised strided-conv encoder (512 samples per latent frame)."""
    sample_rate, downsampling_ratio, audio_channels = SR, 512, 2

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(2, IO, kernel_size=3 * 512, stride=512, padding=512)

    def encode(self, audio):
        return self.conv(audio)


def test_encode_dataset_accompaniment_pairs(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for i in range(4):
        stems = {}
        if i != 1:   # clip 1 has no stems; clips 0, 2, 3 are the 0th, 1st, 2nd with stems
            parts = [(0.2 * rng.standard_normal((SR // 4, 2))).astype(np.float32) for _ in range(2)]
            for name, a in zip(("bass", "keys"), parts):
                sf.write(tmp_path / f"c{i}_{name}.wav", a, SR, subtype="FLOAT")
                stems[name] = f"c{i}_{name}.wav"
            mix = parts[0] + parts[1]
        else:
            mix = (0.2 * rng.standard_normal((SR // 4, 2))).astype(np.float32)
        sf.write(tmp_path / f"c{i}.wav", mix, SR, subtype="FLOAT")
        entries.append({"path": f"c{i}.wav", "duration": 0.25, "sample_rate": SR, "channels": 2,
                        "captions": [f"clip {i}"], "metadata": {}, **({"stems": stems} if stems else {})})
    write_manifest(entries, tmp_path / "manifest.jsonl")
    ae = ConvAE()
    out = encode_dataset(tmp_path / "manifest.jsonl", ae, tmp_path / "lat", stems=False, controls=False,
                         progress=False, accompaniment_every=2)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert ["accompaniment" in r for r in records] == [True, False, False, True]
    assert "stems" not in records[0]
    # the pair index rotates the given stem through the sorted stem names
    assert records[0]["accompaniment"]["given"] == "bass" and records[3]["accompaniment"]["given"] == "keys"
    data = LatentDataset(tmp_path / "lat", 20, accompaniment=True, seed=0)
    for r, e in ((records[0], entries[0]), (records[3], entries[3])):
        acc = r["accompaniment"]
        mix = load_audio(tmp_path / e["path"], SR, 2)
        stem = load_audio(tmp_path / e["stems"][acc["given"]], SR, 2)
        assert torch.equal(data.tensors[acc["given_latents"]], encode_audio(ae, stem, int(60 * SR / 512)))
        rest = data.tensors[acc["rest_latents"]]
        assert torch.allclose(rest, encode_audio(ae, mix - stem), atol=1e-6)
        assert not torch.allclose(rest, data.tensors[r["latents"]], atol=1e-3)   # not just the mix
    item = data[0]
    assert set(item["accompaniment"]) == {"given", "rest"} and item["accompaniment"]["rest"].shape == (IO, 20)
    assert "accompaniment" not in data[1]


def make_latents(folder: Path, clips: int = 4, frames: int = 40) -> Path:
    """Latents with controls and, for even clips, an accompaniment pair, in `lmdm data encode`'s format."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(frames, dtype=torch.float32)
    tensors, lines = {}, []
    for i in range(clips):
        cid = f"{i:06d}"
        z = torch.sin(torch.linspace(0.1, 0.6, IO)[:, None] * (1 + 0.25 * i) * t + i)
        loud = -60 + 60 * torch.rand(frames, generator=g)
        centroid = 40 + 60 * torch.rand(frames, generator=g)
        f0 = torch.where(torch.rand(frames, generator=g) > 0.3, 100 + 700 * torch.rand(frames, generator=g),
                         torch.zeros(frames))
        tensors[f"{cid}/mix"] = z.contiguous()
        tensors[f"{cid}/controls"] = torch.stack((loud, centroid, f0, (f0 > 0).float())).contiguous()
        line = {"id": cid, "path": f"clip{i}.wav", "shard": "shard-00000.safetensors", "latents": f"{cid}/mix",
                "frames": frames, "duration": frames / 21.5, "captions": [f"pattern {i}"], "metadata": {},
                "controls": f"{cid}/controls"}
        if i % 2 == 0:
            tensors[f"{cid}/acc/given"] = (0.5 * z + 1.0).contiguous()
            tensors[f"{cid}/acc/rest"] = (0.5 * z - 1.0).contiguous()
            line["accompaniment"] = {"given": "bass", "given_latents": f"{cid}/acc/given",
                                     "rest_latents": f"{cid}/acc/rest"}
        lines.append(line)
    save_file(tensors, str(folder / "shard-00000.safetensors"))
    (folder / "latents.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def group_cfg(tmp: Path, latents: Path, pattern: str = "block-causal", run: dict | None = None, **finetune):
    model = lmdm.preset("tiny", pattern)
    model.dit.input_groups = dict(GROUPS)
    return TrainConfig.from_dict({
        "run": {"out_dir": str(tmp / "run"), "steps": 4, "batch_size": 4, "progress": False, "log_every": 1,
                "checkpoint_every": 2, "export": False, **(run or {})},
        "optim": {"lr": 2e-3},
        "finetune": {"model": model.to_dict(), "latents": str(latents), **finetune}})


def objective(cfg: TrainConfig) -> FinetuneObjective:
    f, model = cfg.finetune, build_model(cfg)
    p = model.config.pattern
    crop = max([p.window_frames] + [(p.context_frames // b) * b + b for b in f.block_frames_choices])
    data = LatentDataset(f.latents, crop, seed=cfg.run.seed, controls=True, accompaniment=True)
    return FinetuneObjective(model, data, cfg)


def test_sketch_group(tmp_path):
    lat = make_latents(tmp_path / "lat")
    on = objective(group_cfg(tmp_path, lat, p_sketch=1.0, sketch_drop_all=0.0, sketch_drop_each=0.0))
    keys = list(range(16))
    b = on.load_batch([0, 1, 2, 3] * 4, [0] * 16, keys)
    sk = b["groups"]["sketch"]
    assert sk.shape == (16, 4, 16) and bool((sk[:, 0] == 1).all())
    assert not b["groups"]["accompaniment"].any()   # p_accompaniment = 0: all-zero group
    # each item's controls are its stored controls, normalised and median-filtered with some odd kernel
    data = on.data
    filtered = 0
    for j in range(16):
        data.set_epoch(0)
        item = data[j % 4]
        raw = sketch_from_controls(dict(zip(NAMES, item["controls"].double().numpy())))
        kernels = [k for k in range(1, 32, 2) if torch.allclose(median_filter(raw, k)[..., -16:], sk[j, 1:])]
        assert kernels, j
        filtered += 1 not in kernels
    assert filtered > 0   # some items got a kernel > 1
    off = objective(group_cfg(tmp_path, lat))
    assert not off.load_batch([0, 1], [0, 0], [0, 1])["groups"]["sketch"].any()
    # the base draws (noise, t, context dropout) do not depend on the groups
    b0 = off.load_batch([0, 1, 2, 3] * 4, [0] * 16, keys)
    assert all(torch.equal(b[k], b0[k]) for k in ("latents", "noise", "t", "mask"))
    with pytest.raises(ConfigError, match="p_sketch"):
        cfg = group_cfg(tmp_path, lat, p_sketch=0.5)
        cfg.finetune.model["dit"]["input_groups"] = {"context": IO + 1}
        objective(cfg)


def test_no_sketch_on_accompaniment_items(tmp_path):
    """The stored controls describe the mix, an accompaniment item's target is the rest: no sketch there."""
    lat = make_latents(tmp_path / "lat")
    obj = objective(group_cfg(tmp_path, lat, p_sketch=1.0, sketch_drop_all=0.0, p_accompaniment=1.0,
                              accompaniment_drop_all=0.0))
    b = obj.load_batch([0, 1, 2, 3], [0] * 4, [0, 1, 2, 3])
    has_pair = [True, False, True, False]   # even clips have an accompaniment pair
    assert [bool(b["groups"]["sketch"][j].any()) for j in range(4)] == [not p for p in has_pair]
    assert [bool(b["groups"]["accompaniment"][j].any()) for j in range(4)] == has_pair


def test_augmented_items_always_carry_their_sketch(tmp_path):
    """A dynamics-augmented clip (`data.augment`) gets its sketch whatever p_sketch and drop_all say."""
    lat = make_latents(tmp_path / "lat")
    lines = [json.loads(x) for x in (lat / "latents.jsonl").read_text().splitlines()]
    for r in lines[1::2]:
        r["augment"] = {"gain_db": [[0.0, -6.0]]}
    (lat / "latents.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    obj = objective(group_cfg(tmp_path, lat, p_sketch=0.01, sketch_drop_all=1.0, sketch_drop_each=0.0))
    b = obj.load_batch([0, 1, 2, 3] * 2, [0] * 8, list(range(8)))
    assert [bool(b["groups"]["sketch"][j, 0].all()) for j in range(8)] == [False, True] * 4
    assert [bool(b["groups"]["sketch"][j].any()) for j in range(8)] == [False, True] * 4


@pytest.mark.parametrize("cutoff", [-1, 6])
def test_accompaniment_group_respects_the_stream_cutoff(tmp_path, cutoff):
    lat = make_latents(tmp_path / "lat")
    obj = objective(group_cfg(tmp_path, lat, p_accompaniment=1.0, accompaniment_cutoff=cutoff,
                              accompaniment_drop_all=0.0, accompaniment_drop_prefix=0.5))
    C, B = 12, 4   # the tiny preset
    visible = C - (B if cutoff < 0 else cutoff)
    idx = [0, 1, 2, 3] * 4
    b = obj.load_batch(idx, [0] * 16, list(range(100, 116)))
    acc, prefix_dropped = b["groups"]["accompaniment"], 0
    for j, i in enumerate(idx):
        obj.data.set_epoch(0)
        item = obj.data[i]
        if "accompaniment" not in item:   # odd clips have no pair: zero group, the mix's latents
            assert not acc[j].any() and torch.equal(b["latents"][j], item["latents"])
            continue
        assert torch.equal(b["latents"][j], item["accompaniment"]["rest"])
        assert not acc[j, :, visible:].any()
        kept = acc[j, 0, :visible] == 1
        assert bool((kept == (acc[j, 0, :visible] != 0)).all())
        # a dropped prefix (possibly all the visible frames), then kept frames up to the cutoff
        first = int(kept.float().argmax()) if kept.any() else visible
        assert bool(kept[first:].all())
        prefix_dropped += first > 0
        assert torch.equal(acc[j, 1:, first:visible], item["accompaniment"]["given"][:, first:visible])
    assert prefix_dropped > 0


def test_stream_cutoff_convention_matches(tmp_path):
    """The window-relative cutoff used in training is the one Stream._window_groups applies."""
    model = lmdm.preset("tiny")
    model.dit.input_groups = dict(GROUPS)
    from lmdm.engine.stream import Stream
    s = Stream(lmdm.LiveMusicModel(model).eval(), "x", cutoff_frames=6)
    s.set_accompaniment(torch.ones(IO, 200), start=-100)   # covers the whole first window
    g = s._window_groups(s.frame - s.C, s.C + s.B)["accompaniment"]
    assert bool((g[0, 0, : s.C - 6] == 1).all()) and not g[0, :, s.C - 6:].any()


def test_block_frames_choices(tmp_path):
    lat = make_latents(tmp_path / "lat")
    cfg = group_cfg(tmp_path, lat, block_frames_choices=[2, 4])
    obj = objective(cfg)
    seen, calls = {}, []
    real = obj.model.dit.forward

    def spy(x, t, cond, groups, pattern, context_frames, block_frames, context_chunks):
        calls.append((tuple(x.shape), {k: tuple(v.shape) for k, v in groups.items()}, context_frames,
                      block_frames, context_chunks))
        return real(x, t, cond, groups, pattern, context_frames=context_frames, block_frames=block_frames,
                    context_chunks=context_chunks)

    obj.model.dit.forward = spy
    for step in range(12):
        keys = list(range(step * 4, step * 4 + 4))
        b = obj.load_batch([0, 1, 2, 3], [0] * 4, keys)
        B = b["block_frames"]
        assert obj.load_batch([1], [0], keys[2:3])["block_frames"] == B   # one B per step
        seen[B] = seen.get(B, 0) + 1
        assert b["context_frames"] == 12 and b["context_chunks"] == 12 // B
        for j in range(4):
            obj.data.set_epoch(0)
            full = obj.data[j]["latents"]
            assert torch.equal(b["latents"][j], full[:, -(12 + B):])   # the target is the last B frames
        with torch.no_grad():
            obj.loss("model", b, step)
        assert calls[-1] == ((4, IO, 12 + B), {k: (4, c, 12 + B) for k, c in GROUPS.items()}, 12, B, 12 // B)
    assert set(seen) == {2, 4}
    with pytest.raises(ConfigError, match="block_frames_choices"):
        objective(group_cfg(tmp_path, lat, block_frames_choices=[8]))   # 12 // 8 = 1 chunk
    with pytest.raises(ConfigError, match="block_frames_choices"):
        group_cfg(tmp_path, lat, block_frames_choices=[0])


def test_enc_dec_block_choices_keep_the_context(tmp_path):
    lat = make_latents(tmp_path / "lat")
    obj = objective(group_cfg(tmp_path, lat, pattern="enc-dec", block_frames_choices=[1, 3]))
    for step in range(6):
        b = obj.load_batch([0, 1], [0, 0], [step * 4, step * 4 + 1])
        assert b["context_frames"] == 12 and b["latents"].shape[-1] == 12 + b["block_frames"]
        with torch.no_grad():
            assert torch.isfinite(obj.loss("model", b, step)[0])


def test_short_run_trains_the_groups_and_resumes_exactly(tmp_path):
    lat = make_latents(tmp_path / "lat")
    opts = dict(p_sketch=0.7, p_accompaniment=0.7, block_frames_choices=[2, 4], trainable=["dit.*"],
                control_loss_weight=1.0, control_probe_steps=20)

    def trainer(folder):
        cfg = group_cfg(folder, lat, **opts)
        return Trainer(objective(cfg), cfg)

    a = trainer(tmp_path / "a")
    before = {k: v.detach().clone() for k, v in a.obj.model.dit.input_groups.state_dict().items()}
    a.fit()
    after = a.obj.model.dit.input_groups.state_dict()
    for name in ("sketch", "accompaniment"):
        assert not torch.equal(before[f"{name}.weight"], after[f"{name}.weight"]), name
    metrics = [json.loads(x) for x in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 4 and all(np.isfinite(m["loss"]) for m in metrics)
    assert all(m["control_loss"] >= 0 for m in metrics) and any(m["control_loss"] > 0 for m in metrics)
    assert (tmp_path / "a" / "run" / "control-probe.safetensors").is_file()
    b = trainer(tmp_path / "b")
    b.fit(stop_at=2)
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "run")] == ["step-00000002.ckpt"]
    c = trainer(tmp_path / "b")
    c.fit(resume=True)
    pa, pc = a.obj.model.state_dict(), c.obj.model.state_dict()
    assert all(torch.equal(pa[k], pc[k]) for k in pa), [k for k in pa if not torch.equal(pa[k], pc[k])]


def test_input_group_lr_multiplier(tmp_path):
    lat = make_latents(tmp_path / "lat")
    cfg = group_cfg(tmp_path, lat, p_sketch=1.0, input_group_lr_mult=20.0)
    t = Trainer(objective(cfg), cfg)
    groups = {len(g["params"]): g["lr"] for g in t.optimizers[0].param_groups}
    n_router = len(list(t.obj.model.dit.input_groups.parameters()))
    assert len(t.optimizers[0].param_groups) == 2 and groups[n_router] == pytest.approx(20 * cfg.optim.lr)
    router = {id(p) for p in t.obj.model.dit.input_groups.parameters()}
    assert all((id(p) in router) == (g["lr"] > cfg.optim.lr) for g in t.optimizers[0].param_groups
               for p in g["params"])


def text_sensitive_model(folder: Path) -> str:
    """The group model with every weight perturbed (a fresh one zero-initialises its cross-attention
    output, so its prompt would change nothing), saved as an init directory."""
    from lmdm.checkpoints import save_pretrained
    model = lmdm.preset("tiny", "block-causal")
    model.dit.input_groups = dict(GROUPS)
    model = build_model(TrainConfig.from_dict({"finetune": {"model": model.to_dict()}}))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.dit.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    save_pretrained(model, folder)
    return str(folder)


def distill_cfg(tmp: Path, lat: Path, init: str, **finetune) -> TrainConfig:
    cfg = group_cfg(tmp, lat, **finetune)
    cfg.finetune.model, cfg.finetune.init = None, init
    return cfg


def test_guidance_distillation_targets_the_teachers_cfg_velocity(tmp_path):
    lat = make_latents(tmp_path / "lat")
    init = text_sensitive_model(tmp_path / "init")
    obj = objective(distill_cfg(tmp_path, lat, init, p_sketch=1.0, p_text_drop=0.0, distill_cfg=3.0))
    batch = obj.load_batch([0, 1, 2, 3], [0] * 4, [0, 1, 2, 3])
    model, C = obj.model, obj.C
    loss, _ = obj.loss("model", batch, 0)
    # independently: the model's own conditional and null-prompt velocities (student == teacher at init)
    x0, eps, t, mask = batch["latents"], batch["noise"], batch["t"], batch["mask"]
    xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * eps
    groups = {"context": torch.cat((mask, x0 * mask), 1), **batch["groups"]}
    with torch.no_grad():
        v = {}
        for name, captions in (("cond", batch["captions"]), ("null", [""] * 4)):
            cond = model.dit.condition(*model.text_conditioning(captions))
            v[name] = model.dit(xt, t, cond, groups, obj.pattern, context_frames=C, block_frames=obj.B,
                                context_chunks=obj.w)[..., C:]
    # target − v_c = (w − 1)(v_c − v_u): the loss is (w − 1)² · mean((v_c − v_u)²)
    expected = 4 * ((v["cond"] - v["null"]) ** 2).mean()
    assert expected > 1e-4 and float(loss.detach()) == pytest.approx(float(expected), rel=1e-4)
    # w = 1 is the conditional velocity itself: nothing to learn at init
    one = objective(distill_cfg(tmp_path, lat, init, p_text_drop=0.0, distill_cfg=1.0))
    assert float(one.loss("model", one.load_batch([0, 1], [0, 0], [0, 1]), 0)[0].detach()) < 1e-10


def test_guidance_distillation_trains_and_resumes_exactly(tmp_path):
    """The teacher is the initial weights, rebuilt on resume: a resumed run equals an uninterrupted one,
    and the teacher itself never moves."""
    lat = make_latents(tmp_path / "lat")
    init = text_sensitive_model(tmp_path / "init")

    def trainer(folder):
        cfg = distill_cfg(folder, lat, init, distill_cfg=2.0)
        return Trainer(objective(cfg), cfg)

    a = trainer(tmp_path / "a")
    teacher = {k: v.clone() for k, v in a.obj.teacher.state_dict().items()}
    a.fit()
    assert all(torch.equal(teacher[k], v) for k, v in a.obj.teacher.state_dict().items())
    moved = a.obj.model.dit.state_dict()
    assert any(not torch.equal(teacher[k], moved[k]) for k in teacher)
    b = trainer(tmp_path / "b")
    b.fit(stop_at=2)
    c = trainer(tmp_path / "b")
    c.fit(resume=True)
    pa, pc = a.obj.model.state_dict(), c.obj.model.state_dict()
    assert all(torch.equal(pa[k], pc[k]) for k in pa), [k for k in pa if not torch.equal(pa[k], pc[k])]
