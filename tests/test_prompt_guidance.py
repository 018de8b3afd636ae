"""Prompt guidance (`lmdm.engine.prompt_guidance`): the probe learns which latents go with which caption, a
guided estimate moves towards the prompt's embedding, a stream without guidance computes exactly what
it did before, and the probe travels with the model (save / load, stream state, the CLI that fits it)."""
import json

import pytest
import torch
from safetensors.torch import save_file

from lmdm.checkpoints import from_pretrained, save_pretrained
from lmdm.cli import main
from lmdm.data.dataset import LatentDataset
from lmdm.engine.control_guidance import adam_guidance_steps
from lmdm.errors import CheckpointError, ConfigError, DataError
from lmdm.data.labels import INSTRUMENTS
from lmdm.live.testmodel import tiny_live_model
from lmdm.engine.guidance.prompt import PromptGuidance
from lmdm.engine.prompt_guidance import guide_to_prompt, pool_tokens
from lmdm.train.prompt_probe import fit_prompt_probe

IO, TEXT = 8, 16
STYLES = ("calm", "busy", "dark")


def styled_latents(folder, clips=18, frames=64, drums=False):
    """Noise latents; clip i has style STYLES[i % 3], carried as +2 on channel i % 3 (what the probe must find).
    `drums`: the metadata lists stems (a piano in every clip, drums in every other one, carried as +2 on
    channel 3 and named in the captions)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    tensors, lines = {}, []
    for i in range(clips):
        z = torch.randn(IO, frames, generator=g)
        z[i % 3] += 2.0
        tensors[f"{i}/mix"] = z
        style, meta, extra = STYLES[i % 3], {"style": STYLES[i % 3]}, ""
        if drums:
            meta["stems"] = {"keys": {"program": 0, "is_drum": False}}
            if i % 2 == 0:
                z[3] += 2.0
                meta["stems"]["drums"], extra = {"program": 0, "is_drum": True}, " drums"
        lines.append({"id": str(i), "path": f"clip{i}.wav", "shard": "shard-00000.safetensors", "latents": f"{i}/mix",
                      "frames": frames, "duration": frames / 21.5,
                      "captions": [f"{style} music{extra}", f"a {style} piece{extra}"], "metadata": meta})
    save_file(tensors, str(folder / "shard-00000.safetensors"))
    (folder / "latents.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def text_tokens(texts):
    """A stand-in text encoder: token rows from the words (a style word sets its own dimension), zero padding."""
    out = torch.zeros(len(texts), 6, TEXT)
    for b, text in enumerate(texts):
        for k, word in enumerate(text.split()[:6]):
            row = torch.full((TEXT,), 0.1 * len(word))
            if word in STYLES:
                row[STYLES.index(word)] += 3.0
            if word == "drums":
                row[3] += 3.0
            out[b, k] = row
    return out


def test_pool_tokens_averages_the_real_tokens_only():
    tokens = torch.zeros(2, 5, 3)
    tokens[0, :2] = torch.tensor([[1.0, 2, 3], [3, 2, 1]])
    pooled = pool_tokens(tokens)
    assert torch.allclose(pooled[0], torch.tensor([2.0, 2, 2])) and torch.equal(pooled[1], torch.zeros(3))


def test_probe_learns_which_latents_go_with_which_caption(tmp_path):
    data = LatentDataset(styled_latents(tmp_path / "lat"), 16)
    probe, held = fit_prompt_probe(data.records, data.tensors, text_tokens, IO, TEXT, steps=150, crop=16, batch=9,
                                   heldout=0.34, progress=False)
    assert held["style"] > 0.9, held          # chance: 1/3
    again, _ = fit_prompt_probe(data.records, data.tensors, text_tokens, IO, TEXT, steps=150, crop=16, batch=9,
                                heldout=0.34, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(probe.state_dict().values(), again.state_dict().values()))
    # a latent of one style is nearest to its own style's caption
    texts = probe.embed_text(pool_tokens(text_tokens([f"{s} music" for s in STYLES])))
    z = torch.randn(3, IO, 16)
    for k in range(3):
        z[k, k] += 2.0
    assert (probe.embed_latents(z) @ texts.T).argmax(-1).tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="captioned clips"):
        fit_prompt_probe(data.records[:3], data.tensors, text_tokens, IO, TEXT, steps=1, progress=False)


def _fitted_probe(tmp_path):
    data = LatentDataset(styled_latents(tmp_path / "lat"), 16)
    return fit_prompt_probe(data.records, data.tensors, text_tokens, IO, TEXT, steps=150, crop=16, batch=9,
                            heldout=0.34, progress=False)[0]


def test_guided_estimate_moves_towards_the_prompt(tmp_path):
    probe = _fitted_probe(tmp_path)
    text = probe.embed_text(pool_tokens(text_tokens(["dark music"])))
    x0, context = torch.randn(1, IO, 16, generator=torch.Generator().manual_seed(1)), torch.randn(1, IO, 4)
    x0[:, 0] += 2.0   # a calm block

    def similarity(x):
        return float(probe.embed_latents(torch.cat((context, x), -1)) @ text[0])
    sims = [similarity(x0)]
    for n in (1, 2, 4):
        sims.append(similarity(guide_to_prompt(x0, context, probe, text, PromptGuidance(0.3, iterations=n))))
    assert sims == sorted(sims) and sims[-1] > sims[0] + 0.2, sims
    # Adam-style: the first step is a sign step of RMS `strength` over the whole block
    moved = guide_to_prompt(x0, context, probe, text, PromptGuidance(0.3, iterations=1)) - x0
    assert abs(float(moved.square().mean().sqrt()) - 0.3) < 0.01
    # a block that already matches its prompt as well as training latents match theirs is left alone
    assert 0 < float(probe.target_similarity) < 1
    probe.target_similarity.fill_(-1.0)
    assert torch.equal(guide_to_prompt(x0, context, probe, text, PromptGuidance(0.3)), x0)
    with pytest.raises(ConfigError):
        PromptGuidance(3.0).validate()
    g = PromptGuidance(0.1, first_step=1, last_step=-2)
    assert [g.guides(i, 8) for i in range(8)] == [False] + [True] * 6 + [False]


def test_guidance_terms_are_balanced_by_their_weights_not_their_scales():
    x = torch.zeros(2, 3)

    def terms(z):   # a steep pull down and a shallow push up on element 0; element 1 free
        return [(1.0, 1000.0 * z[:, 0].sum()), (2.0, -z[:, 0].sum())]
    moved = adam_guidance_steps(x, terms, 0.5, 1)
    assert (moved[:, 0] > 0).all() and (moved[:, 1:] == 0).all()          # the weights decide: up
    summed = adam_guidance_steps(x, lambda z: sum(w * t for w, t in terms(z)), 0.5, 1)
    assert (summed[:, 0] < 0).all()                                       # a plain sum follows the scale


def test_instrument_heads_hear_the_drums_and_guidance_adds_the_named_ones(tmp_path):
    data = LatentDataset(styled_latents(tmp_path / "lat", drums=True), 16)
    probe, held = fit_prompt_probe(data.records, data.tensors, text_tokens, IO, TEXT, steps=150, crop=16, batch=9,
                                   heldout=0.34, instruments=True, progress=False)
    assert held["instruments_latent"] > 0.9 and held["instruments_text"] > 0.9, held   # piano alone: 0.5
    drums = INSTRUMENTS.index("drums")
    target = probe.text_target(pool_tokens(text_tokens(["dark music drums", "dark music"])))
    assert target.shape == (2, probe.dim + len(INSTRUMENTS))
    assert target[0, probe.dim + drums] > 0.5 > target[1, probe.dim + drums]
    x0, context = torch.randn(1, IO, 16, generator=torch.Generator().manual_seed(1)), torch.randn(1, IO, 4)
    x0[:, 2] += 2.0   # a dark block without drums

    def drum_logit(x):
        return float(probe.read_latents(torch.cat((context, x), -1))[1][0, drums])
    probe.target_similarity.fill_(-1.0)   # the similarity term is met: only the instrument term can move x0
    guided = guide_to_prompt(x0, context, probe, target[:1], PromptGuidance(0.3))
    assert drum_logit(x0) < 0 < drum_logit(guided)
    assert torch.equal(guide_to_prompt(x0, context, probe, target[1:], PromptGuidance(0.3)), x0)   # heard right already
    assert torch.equal(guide_to_prompt(x0, context, probe, target[:1], PromptGuidance(0.3, instrument_weight=0)), x0)
    with pytest.raises(ConfigError, match="instrument_weight"):
        PromptGuidance(0.3, instrument_weight=-1).validate()
    plain = LatentDataset(styled_latents(tmp_path / "plain"), 16)
    with pytest.raises(DataError, match="stems"):
        fit_prompt_probe(plain.records, plain.tensors, text_tokens, IO, TEXT, steps=1, instruments=True, progress=False)


def _with_probe(tmp_path, strength=0.0, groups=False):
    """The tiny live model (text: the byte encoder, 64-d tokens) with a prompt probe fitted on its own tokens."""
    model = tiny_live_model(block_frames=16, context_blocks=2, steps=4, groups=groups)
    dim = model.config.dit.cond_token_dim
    data = LatentDataset(styled_latents(tmp_path / "lat"), 16)
    probe, _ = fit_prompt_probe(data.records, data.tensors, model.text, IO, dim, steps=60, crop=16, batch=9,
                                progress=False)
    model.config.prompt_probe, model.config.prompt_guidance, model.prompt_probe = {"width": 128, "dim": 128}, strength, probe
    return model


def _blocks(model, prompt="dark music", n=3, **kw):
    s = model.stream(prompt, seed=3, **kw)
    return torch.cat([s.next_latents() for _ in range(n)], -1), s


def test_stream_guidance_follows_the_prompt_and_is_exact_when_off(tmp_path):
    plain_model = tiny_live_model(block_frames=16, context_blocks=2, steps=4)
    model = _with_probe(tmp_path)
    plain, _ = _blocks(plain_model)
    assert torch.equal(_blocks(model)[0], plain)                          # a probe alone changes nothing
    assert torch.equal(_blocks(model, prompt_guidance=0.0)[0], plain)
    with pytest.raises(ConfigError, match="prompt probe"):
        plain_model.stream("x", prompt_guidance=0.2)
    guided, s = _blocks(model, prompt_guidance=0.5)
    assert not torch.equal(guided, plain)
    probe, text = model.prompt_probe, s._prompt_embedding

    def similarity(z):
        return float(torch.stack([probe.embed_latents(b) @ text[0] for b in z.split(16, -1)]).mean())
    assert similarity(guided) > similarity(plain) + 0.05   # guidance stops near the probe's target similarity
    # an empty prompt has nothing to be guided to
    assert torch.equal(_blocks(model, prompt="", prompt_guidance=0.5)[0], _blocks(model, prompt="")[0])


def test_a_set_tempo_is_what_guidance_aims_at(tmp_path):
    model = _with_probe(tmp_path, groups=True)

    def target(text):
        return model.prompt_probe.text_target(pool_tokens(model.encode_prompts(text)[0].float()))
    s = model.stream("dark music", seed=0, bpm=80)
    assert torch.allclose(s._prompt_embedding, target("dark music, 80 BPM"))
    s.set_bpm(None)                                   # the prompt's own tempo again (it names none)
    assert torch.allclose(s._prompt_embedding, target("dark music"))
    s.set_prompts("dark music at 120 bpm")
    s.set_bpm(90)
    assert torch.allclose(s._prompt_embedding, target("dark music at 90 BPM"))
    state = s.state_dict()
    t = model.stream("calm music", seed=0)
    t.load_state_dict(state)
    assert torch.allclose(t._prompt_embedding, target("dark music at 90 BPM"))


def test_model_with_probe_saves_loads_and_keeps_guidance_in_stream_state(tmp_path):
    model = _with_probe(tmp_path, strength=0.4)
    save_pretrained(model, tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config.prompt_guidance == 0.4
    assert all(torch.equal(a, b) for a, b in zip(model.prompt_probe.state_dict().values(),
                                                  loaded.prompt_probe.state_dict().values()))
    s = loaded.stream("dark music", seed=1)
    assert s.prompt_guidance.strength == 0.4
    s.next_block()
    s.save(tmp_path / "state.safetensors")
    expected = s.next_block()
    t = loaded.stream("calm music", seed=1, prompt_guidance=0.0)
    t.restore(tmp_path / "state.safetensors")
    assert t.prompt_guidance == s.prompt_guidance and torch.equal(t.next_block(), expected)
    t.set_prompt_guidance(0.0)
    assert not t.prompt_guidance.active
    # the probe's weights are part of the checkpoint: a file without them is refused
    from safetensors.torch import load_file
    state = {k: v for k, v in load_file(str(tmp_path / "m" / "model.safetensors")).items()
             if not k.startswith("prompt_probe.")}
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys"):
        from_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["prompt_probe"] = None
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="prompt_probe"):
        from_pretrained(tmp_path / "m")


def test_cli_fits_the_probe_and_writes_a_guided_model(tmp_path, capsys):
    model = tiny_live_model(block_frames=16, context_blocks=2, steps=4)
    save_pretrained(model, tmp_path / "m")
    assert main(["train", "prompt-probe", "--model", str(tmp_path / "m"), "--latents",
                 str(styled_latents(tmp_path / "lat")), "--out", str(tmp_path / "g"), "--steps", "20", "--crop", "16",
                 "--strength", "0.3", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["prompt_guidance"] == 0.3 and 0 <= report["heldout_retrieval"]["style"] <= 1
    guided = from_pretrained(tmp_path / "g")
    assert guided.config.prompt_probe == {"width": 128, "dim": 128} and guided.config.prompt_guidance == 0.3
    # the rest of the model is the input model's, weight for weight
    assert all(torch.equal(v, guided.state_dict()[k]) for k, v in model.state_dict().items())
    assert guided.stream("dark music", seed=0).next_block().isfinite().all()
    assert main(["train", "prompt-probe", "--model", str(tmp_path / "m"), "--latents", str(tmp_path / "lat"),
                 "--out", str(tmp_path / "h"), "--strength", "5"]) == 2
    # latents whose metadata lists stems get instrument heads by default, and they travel with the model
    assert main(["train", "prompt-probe", "--model", str(tmp_path / "m"), "--latents",
                 str(styled_latents(tmp_path / "drums", drums=True)), "--out", str(tmp_path / "d"), "--steps", "20",
                 "--crop", "16", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= report["heldout_retrieval"]["instruments_latent"] <= 1
    with_heads = from_pretrained(tmp_path / "d")
    assert with_heads.config.prompt_probe["instruments"] == len(INSTRUMENTS)
    assert with_heads.stream("dark music drums", seed=0, prompt_guidance=0.3).next_block().isfinite().all()
