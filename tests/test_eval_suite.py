"""`lmdm eval` end to end on a tiny random model, a tiny rendered corpus and a random tagger:
the numbers are meaningless, the pipeline (streams, metrics, report, plots) is what is tested."""
import subprocess
import sys

import pytest
import torch

import lmdm
from lmdm.checkpoints import save_pretrained
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
    out = write_report({"tiny": report}, setup / "report")
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "drift.png", "transitions.png"}
    assert "| style_agreement |" in (out / "report.md").read_text()


def test_eval_cli_errors_clearly_without_a_tagger(setup, tmp_path):
    run = subprocess.run([sys.executable, "-m", "lmdm", "eval", "--model", str(setup / "model"), "--reference",
                          str(setup / "corpus" / "manifest.jsonl"), "--tagger", str(tmp_path / "none.safetensors"),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert run.returncode == 2 and "train one with" in run.stderr
