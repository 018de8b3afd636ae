import numpy as np
import pytest
import torch

from lmdm.errors import CheckpointError
from lmdm.eval.tagger import INSTRUMENTS, Tagger, TaggerConfig, instruments_of, mel_filterbank, tempo_class


def test_mel_filterbank_covers_the_spectrum_with_triangles():
    fb = mel_filterbank(22050, 1024, 64)
    assert fb.shape == (64, 513) and (fb >= 0).all() and fb.max() <= 1.0 + 1e-6
    assert (fb.sum(0)[20:500] > 0).all()  # no hole between the first and last band


def test_tagger_outputs_and_round_trip(tmp_path):
    torch.manual_seed(0)
    tagger = Tagger(TaggerConfig(styles=["house", "jazz"]))
    audio = torch.randn(3, 2, 44100 * 2) * 0.1
    out = tagger.eval()(audio, 44100)
    assert out["embedding"].shape == (3, 128) and out["style"].shape == (3, 2)
    assert out["instruments"].shape == (3, len(INSTRUMENTS)) and out["tempo"].shape == (3, 3)
    tagger.save(tmp_path / "t.safetensors", {"style_accuracy": 0.5})
    again, ev = Tagger.load(tmp_path / "t.safetensors")
    assert ev == {"style_accuracy": 0.5}
    assert np.allclose(again.embed_audio(audio, 44100), tagger.embed_audio(audio, 44100), atol=1e-5)
    pred = again.predict(audio, 44100)[0]
    assert pred["style"] in ("house", "jazz") and pred["tempo"] in ("slow", "medium", "fast")
    with pytest.raises(CheckpointError, match="train one"):
        Tagger.load(tmp_path / "missing.safetensors")


def test_labels_from_corpus_metadata():
    meta = {"stems": {"drums": {"program": 0, "is_drum": True}, "bass": {"program": 33, "is_drum": False},
                      "keys": {"program": 4, "is_drum": False}}}
    assert instruments_of(meta) == ["bass", "drums", "piano"]
    assert [tempo_class(b) for b in (80, 110, 174)] == [0, 1, 2]


def test_shipped_tagger_loads_and_its_heldout_accuracy_is_what_the_docs_claim():
    """Asserted from the evaluation stored with the shipped weights (written by `lmdm tagger`),
    not re-trained here."""
    tagger, evaluation = Tagger.load()
    assert len(tagger.cfg.styles) == 11
    assert evaluation["style_accuracy"] >= 0.9
    assert evaluation["instrument_f1"] >= 0.75
    assert evaluation["tempo_class_accuracy"] >= 0.85
    assert evaluation["heldout_pieces"] >= 40
