import numpy as np
import pytest
import torch

from lmdm.errors import CheckpointError
from lmdm.data.labels import INSTRUMENTS, instruments_of, tempo_class
from lmdm.eval.tagger import Tagger, TaggerConfig, mel_filterbank


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
    # and through the default model's codec, which the v1 tagger heard as one style (0.08 on held-out pieces)
    assert evaluation["codec_style_accuracy"] >= 0.8 and evaluation["codec"]["model"] == "default"


def test_train_tagger_with_codec_views_reports_both_accuracies(tmp_path):
    """A real (tiny) corpus and a real (tiny, random) codec: training runs, the round-tripped views
    are what the codec makes of each piece's centre, and held-out accuracy comes for both."""
    import lmdm
    from lmdm.checkpoints import save_pretrained
    from lmdm.data.synth.corpus import generate_corpus
    from lmdm.eval.tagger import codec_views, train_tagger
    from lmdm.models.autoencoder import AutoencoderConfig
    generate_corpus(tmp_path / "corpus", hours=4 * 6 / 3600, clip_seconds=6, styles=["house", "jazz"], workers=1,
                    progress=False)
    cfg = lmdm.preset("tiny")
    cfg.sample_rate = 22050
    cfg.autoencoder = AutoencoderConfig(audio_channels=1, sample_rate=22050, channels=8, c_mults=[1, 2],
                                        strides=[4, 8], latent_dim=8).to_dict()
    cfg.downsampling_ratio = 32
    torch.manual_seed(0)
    save_pretrained(lmdm.LiveMusicModel(cfg), tmp_path / "codec")
    tagger, evaluation = train_tagger(tmp_path / "corpus" / "manifest.jsonl", epochs=1, batch=2, progress=False,
                                      codec=tmp_path / "codec", codec_seconds=5.5)
    for key in ("style_accuracy", "codec_style_accuracy", "codec_instrument_f1", "codec_tempo_class_accuracy"):
        assert 0.0 <= evaluation[key] <= 1.0, key
    assert evaluation["codec"]["model"] == str(tmp_path / "codec")
    ae = lmdm.load(tmp_path / "codec", dtype=torch.float32).autoencoder
    piece = np.random.default_rng(0).standard_normal((1, 22050 * 6)).astype(np.float32) * 0.1
    view = codec_views([piece], ae, 2.0, progress=False)[0]
    with torch.no_grad():
        centre = torch.from_numpy(piece[:, 22050 * 2:22050 * 4])[None]
        want = ae.decode(ae.encode(centre))[0, :, :centre.shape[-1]].numpy()
    assert view.shape == (1, 44100) and np.allclose(view, want, atol=1e-5)
