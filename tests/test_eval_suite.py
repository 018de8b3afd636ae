"""`lmdm eval` end to end on a tiny random model, a tiny rendered corpus and a random tagger:
the numbers are meaningless, the pipeline (streams, metrics, report, plots) is what is tested."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import lmdm
from lmdm.engine.beat import bpm_from_text
from lmdm.checkpoints import save_pretrained
from lmdm.data.dataset import read_manifest
from lmdm.data.synth.corpus import generate_corpus
from lmdm.eval.suite import Suite, evaluate, write_report
from lmdm.eval.tagger import Tagger, TaggerConfig
from lmdm.models.autoencoder import AutoencoderConfig


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    generate_corpus(root / "corpus", hours=4 * 8 / 3600, clip_seconds=8, styles=["house", "jazz"], workers=1,
                    progress=False)
    cfg = lmdm.preset("tiny")
    cfg.autoencoder = AutoencoderConfig(channels=8, c_mults=[1, 2], strides=[4, 8], latent_dim=8).to_dict()
    cfg.downsampling_ratio = 32
    cfg.pattern.block_frames, cfg.pattern.context_frames = 256, 768
    torch.manual_seed(0)
    save_pretrained(lmdm.LiveMusicModel(cfg), root / "model")
    mono = lmdm.preset("tiny")  # the default model's shape: mono at 22.05 kHz (the corpus is 44.1 kHz stereo)
    mono.sample_rate = 22050
    mono.autoencoder = AutoencoderConfig(audio_channels=1, sample_rate=22050, channels=8, c_mults=[1, 2], strides=[4, 8],
                                         latent_dim=8).to_dict()
    mono.downsampling_ratio = 32
    mono.pattern.block_frames, mono.pattern.context_frames = 256, 768
    torch.manual_seed(1)
    save_pretrained(lmdm.LiveMusicModel(mono), root / "mono")
    tagger = Tagger(TaggerConfig(styles=["house", "jazz"]))
    tagger.save(root / "tagger.safetensors", {"style_accuracy": 0.0, "note": "random, for tests"})
    return root


def test_eval_suite_produces_report_and_plots(setup):
    model = lmdm.checkpoints.from_pretrained(setup / "model")
    tagger, _ = Tagger.load(setup / "tagger.safetensors")
    report = evaluate(model, setup / "corpus" / "manifest.jsonl", Suite(prompts=2, seconds=4.0, transitions=1,
                                                                        reference=2, window_seconds=2.0), tagger)
    assert len(report["streams"]["text"]["drift_curve"]) == 2
    assert len(report["adherence"]) == 2 and report["summary"]["realtime_factor"] > 0
    assert report["reference_pieces"] == 2 and report["reference_windows"] == 2 * 4   # 8-s pieces, 2-s windows
    assert report["cfg_scale"] == model.config.cfg_scale and report["sketch_cfg_scale"] == 1.0
    # tempo error over the captions that name their BPM, next to the one over all captions
    captions = [e["captions"][0] for e in read_manifest(setup / "corpus" / "manifest.jsonl")]
    requested = [a["tempo_error"] for a in report["adherence"] if a["tempo_requested"]]
    assert sum(a["tempo_requested"] for a in report["adherence"]) <= sum(bpm_from_text(c) is not None for c in captions)
    assert report["summary"]["median_tempo_error_requested"] == pytest.approx(
        float(np.median(requested)) if requested else float("nan"), nan_ok=True)
    out = write_report({"tiny": report}, setup / "report")
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "drift.png", "transitions.png"}
    md = (out / "report.md").read_text()
    assert "| style_agreement |" in md
    # one row per caption, with the tracker's reading next to the piece's tempo
    rows = [line for line in md.splitlines() if line.startswith("| tiny | ")]
    assert len(rows) == 2 and all(f"{a['estimated_tempo']:.1f}" in row for a, row in zip(report["adherence"], rows))
    # and how steadily the stream keeps a beat at that tempo (a share of its onset energy)
    assert all(0.0 <= a["beat_steadiness"] <= 1.0 and f"{a['beat_steadiness']:.2f}" in row
               for a, row in zip(report["adherence"], rows))


def test_eval_cli_errors_clearly_without_a_tagger(setup, tmp_path):
    run = subprocess.run([sys.executable, "-m", "lmdm", "eval", "--model", str(setup / "model"), "--reference",
                          str(setup / "corpus" / "manifest.jsonl"), "--tagger", str(tmp_path / "none.safetensors"),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert run.returncode == 2 and "train one with" in run.stderr


def test_eval_suite_on_a_mono_22khz_model_with_the_offline_baseline(setup):
    model = lmdm.checkpoints.from_pretrained(setup / "mono")
    assert model.autoencoder.config.audio_channels == 1 and model.sample_rate == 22050
    tagger, _ = Tagger.load(setup / "tagger.safetensors")
    suite = Suite(prompts=2, seconds=3.0, transitions=0, reference=2, window_seconds=1.0)  # transitions: above
    report = evaluate(model, setup / "corpus" / "manifest.jsonl", suite, tagger)
    assert report["channels"] == 1 and report["embedder"] == "lmdm"
    assert len(report["streams"]["primed"]["drift_curve"]) == 3
    assert len(report["context_memory"]) == 3 and all(m >= 0 for m in report["context_memory"])
    assert report["summary"]["context_memory_last"] == report["context_memory"][-1]
    base = report["baseline"]
    assert base["windows"] == 6 and base["fd_all_windows"]["fd"] >= 0 and len(base["adherence"]) == 2
    assert report["summary"]["fd_baseline"] is not None and report["summary"]["fd_text"] is not None
    out = write_report({"mono": report}, setup / "report-mono")
    md = (out / "report.md").read_text()
    assert "| fd_baseline |" in md and "offline" in md


def test_offline_baseline_is_one_window_sampled_at_once(setup):
    from lmdm.eval.suite import offline_windows
    model = lmdm.checkpoints.from_pretrained(setup / "mono")
    a = offline_windows(model, "house", 2, seed=3, seconds=1.0)
    assert [x.shape for x in a] == [(1, 22050)] * 2 and not np.allclose(a[0], a[1])
    assert np.allclose(offline_windows(model, "house", 1, seed=3, seconds=1.0)[0], a[0])  # deterministic
    assert offline_windows(model, "house", 1, seed=3, seconds=2.0) is None  # longer than the model's window


def test_the_default_embedding_is_the_same_for_mono_and_the_same_signal_as_stereo():
    from lmdm.eval.embedders import load_embedder
    torch.manual_seed(0)
    embed = load_embedder("lmdm", Tagger(TaggerConfig(styles=["house", "jazz"])))
    mono = np.random.default_rng(0).normal(scale=0.1, size=(2, 1, 22050)).astype(np.float32)
    stereo = np.repeat(mono, 2, axis=1)
    assert np.allclose(embed(mono, 22050), embed(stereo, 22050), atol=1e-6)
    assert np.allclose(embed(mono[:, 0], 22050), embed(stereo, 22050), atol=1e-6)
    tagger = Tagger(TaggerConfig(styles=["house", "jazz"]))
    assert tagger.predict(torch.from_numpy(mono), 44100)[0]["style_probs"] == pytest.approx(
        tagger.predict(torch.from_numpy(stereo), 44100)[0]["style_probs"], abs=1e-6)


def test_eval_cli_rejects_streams_shorter_than_a_window(setup, tmp_path):
    run = subprocess.run([sys.executable, "-m", "lmdm", "eval", "--model", str(setup / "model"), "--reference",
                          str(setup / "corpus" / "manifest.jsonl"), "--tagger", str(setup / "tagger.safetensors"),
                          "--seconds", "4", "--steps", "2", "--dtype", "fp32", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "--seconds must be at least one 10 s window" in run.stderr, run.stderr


def test_tempo_readings_script_renders_and_reads_the_named_bpm_streams(setup, tmp_path, capsys):
    """tools/tempo_readings.py: one row per caption naming a BPM among the suite's first prompts, each
    stream saved as FLAC when asked, and the medians at the end."""
    import importlib.util
    from pathlib import Path

    import soundfile as sf
    path = Path(__file__).parents[1] / "tools" / "tempo_readings.py"
    spec = importlib.util.spec_from_file_location("tempo_readings", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    import json
    from lmdm.engine.beat import with_tempo
    entries = read_manifest(setup / "corpus" / "manifest.jsonl")
    for e in entries[::2]:            # half the captions name their BPM (the script reads only captions)
        e["captions"][0] = with_tempo(e["captions"][0], e["metadata"]["tempo"])
    manifest = setup / "corpus" / "manifest-named-bpm.jsonl"    # next to the audio it names
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    order = np.random.default_rng(0).permutation(len(entries))
    named = [k for k, i in enumerate(order) if bpm_from_text(entries[i]["captions"][0]) is not None]
    assert len(named) == 2
    assert script.main([str(setup / "mono"), str(manifest), "--prompts", str(len(entries)), "--seconds", "3",
                        "--save", str(tmp_path / "s")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.count(" | ") == 7]
    assert len(rows) == len(named) + 1                                     # the header and one per named caption
    saved = sorted((tmp_path / "s").glob("*.flac"))
    assert [int(p.name[:2]) for p in saved] == named
    for p in saved:
        audio, sr = sf.read(p)
        assert sr == 22050 and len(audio) == 3 * sr
