"""The tag probe behind the tag loss: it reads style, instruments and tempo class from latents that
carry them, and stage 1 and ARC-Forcing add its loss on the model's clean estimates of captioned items."""
import json

import pytest
import torch
from safetensors.torch import save_file

from lmdm.data.dataset import LatentDataset
from lmdm.errors import DataError
from lmdm.train.tag_probe import TagProbe, fit_tag_probe, load_or_fit_tag_probe, record_labels

IO = 8
CALM = {"style": "calm", "tempo": 80, "stems": {"keys": {"program": 0, "is_drum": False}}}
BUSY = {"style": "busy", "tempo": 150, "stems": {"kit": {"program": 0, "is_drum": True},
                                                 "bass": {"program": 33, "is_drum": False}}}


def tagged_latents(folder, clips=10, frames=64):
    """Noise latents; the 'busy' clips (drums and bass, 150 BPM) carry +2 on channel 0."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    tensors, lines = {}, []
    for i in range(clips):
        meta = BUSY if i % 2 else CALM
        z = torch.randn(IO, frames, generator=g)
        z[0] += 2.0 * (i % 2)
        tensors[f"{i}/mix"] = z
        lines.append({"id": str(i), "path": f"clip{i}.wav", "shard": "shard-00000.safetensors", "latents": f"{i}/mix",
                      "frames": frames, "duration": frames / 21.5, "captions": [meta["style"]], "metadata": meta})
    save_file(tensors, str(folder / "shard-00000.safetensors"))
    (folder / "latents.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def add_metadata(folder):
    """Give `test_finetune_groups.make_latents` clips the corpus metadata the tag loss needs."""
    path = folder / "latents.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for i, line in enumerate(lines):
        line["metadata"] = BUSY if i % 2 else CALM
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def test_labels_follow_the_tagger_vocabulary():
    lab = record_labels({"path": "x", "metadata": BUSY}, ["busy", "calm"])
    assert int(lab["style"]) == 0 and int(lab["tempo"]) == 2   # > 130 BPM is "fast"
    from lmdm.data.labels import INSTRUMENTS
    assert {INSTRUMENTS[i] for i in lab["instruments"].nonzero().flatten().tolist()} == {"drums", "bass"}
    with pytest.raises(DataError, match="metadata"):
        record_labels({"path": "y.wav", "metadata": {}}, ["busy", "calm"])


def test_probe_reads_labels_the_latents_carry_and_only_those(tmp_path):
    data = LatentDataset(tagged_latents(tmp_path / "lat"), 16, seed=0)
    probe, acc = fit_tag_probe(data, IO, steps=150, crop=16, batch=8, progress=False)
    assert acc["style"] > 0.95 and acc["tempo"] > 0.95 and acc["instruments"] > 0.9, acc
    assert probe.styles == ["busy", "calm"] and not any(p.requires_grad for p in probe.parameters())
    # on latents without the offset it hears every clip as calm
    calm = probe(torch.randn(64, IO, 16))["style"].argmax(-1)
    assert (calm == 1).float().mean() > 0.9


def test_the_probe_is_saved_and_reread(tmp_path):
    data = LatentDataset(tagged_latents(tmp_path / "lat"), 16, seed=0)
    path = tmp_path / "run" / "tag-probe.safetensors"
    a = load_or_fit_tag_probe(path, data, IO, steps=5, seed=1)
    b = load_or_fit_tag_probe(path, data, IO, steps=5, seed=2)   # read back, not refitted
    assert isinstance(b, TagProbe) and b.styles == a.styles
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_stage_one_adds_the_tag_loss_on_captioned_non_accompaniment_items(tmp_path):
    from test_finetune_groups import group_cfg, make_latents, objective
    lat = add_metadata(make_latents(tmp_path / "lat"))
    obj = objective(group_cfg(tmp_path, lat, p_accompaniment=1.0, p_text_drop=0.0, tag_loss_weight=2.0,
                              tag_probe_steps=5))
    batch = obj.load_batch([0, 1, 2, 3], [0] * 4, [0, 1, 2, 3])
    assert batch["tagged"].tolist() == [False, True, False, True]   # even clips are accompaniment items
    assert batch["tags"]["style"].tolist() == [1, 0, 1, 0]
    torch.manual_seed(0)
    loss, extra = obj.loss("model", batch, 0)
    obj.cfg.finetune.tag_loss_weight = 0.0
    torch.manual_seed(0)
    plain, _ = obj.loss("model", batch, 0)
    assert extra["tag_loss"] > 0
    assert float(loss.detach() - plain) == pytest.approx(2.0 * extra["tag_loss"], rel=1e-4)
    loss.backward()
    assert obj.model.dit.transformer.project_in.weight.grad.abs().sum() > 0


def test_arc_forcing_pays_the_tag_loss_on_its_rollouts(tmp_path):
    from test_finetune_groups import group_cfg, make_latents
    from lmdm.train import arc_forcing as arc
    from lmdm.train.config import TrainConfig
    from lmdm.train.finetune import build_model
    cfg = group_cfg(tmp_path, add_metadata(make_latents(tmp_path / "lat", clips=3, frames=24)),
                    tag_loss_weight=1.0, tag_probe_steps=5)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "run": {**cfg.to_dict()["run"], "steps": 2, "batch_size": 2},
                                 "arc": {"chunks": 2, "max_steps": 3, "disc_layers": 1, "head_channels": 8}})
    model = build_model(cfg)
    C, B = model.config.pattern.context_frames, model.config.pattern.block_frames
    obj = arc.ArcForcingObjective(model, LatentDataset(cfg.finetune.latents, C + 2 * B, seed=0), cfg)
    last = arc.Trainer(obj, cfg).fit()
    assert last["tag_loss"] > 0
    assert (tmp_path / "run" / "tag-probe.safetensors").exists()
