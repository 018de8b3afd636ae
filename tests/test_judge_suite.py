"""The judge section's model-free figures: similarity ≈1 with itself and ≈0 between unrelated noise,
an identity codec keeps everything, a real piece's notes score against its own MIDI, the prompt set."""
import numpy as np
import pytest

from lmdm.eval import judge_suite as js

SR = 22050


def noise(seed, seconds=6.0):
    return (0.1 * np.random.default_rng(seed).standard_normal((2, int(seconds * SR)))).astype(np.float32)


def test_similarity_is_one_with_itself_and_near_zero_for_unrelated_noise():
    a, b = noise(0), noise(1)
    assert js.waveform_similarity(a, a, SR) == pytest.approx(1.0, abs=1e-4)
    assert js.chroma_similarity(a, a, SR) == pytest.approx(1.0, abs=1e-4)
    assert abs(js.waveform_similarity(a, b, SR)) < 0.05
    assert abs(js.chroma_similarity(a, b, SR)) < 0.1
    # a copy 10 ms late is still the same waveform (lags within ±50 ms count)
    late = np.concatenate([np.zeros((2, int(0.01 * SR)), np.float32), a[:, : -int(0.01 * SR)]], 1)
    assert js.waveform_similarity(a, late, SR) > 0.95


def test_identity_codec_keeps_everything_and_a_lowpass_shows():
    from scipy.signal import butter, sosfilt
    t = np.arange(int(6 * SR)) / SR
    x = sum(0.1 * np.sign(np.sin(2 * np.pi * 440 * 2 ** (s / 12) * t)) for s in (0, 4, 7)).astype(np.float32)
    x = np.stack([x, x])
    same = js.codec_figures(x, x.copy(), SR)
    assert same["chroma_correlation"] == pytest.approx(1.0, abs=1e-4)
    assert same["pcp_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert same["centroid_ratio"] == same["rolloff_ratio"] == 1.0 and same["mrstft"] == 0.0
    muffled = sosfilt(butter(4, 800, fs=SR, output="sos"), x, axis=-1).astype(np.float32)
    low = js.codec_figures(x, muffled, SR)
    assert low["rolloff_ratio"] < 0.6 and low["centroid_ratio"] < 0.6 and low["mrstft"] > 0.5


def test_note_f_measure_of_a_rendered_score(tmp_path):
    """basic-pitch on a plain sine rendering of a known score finds its notes (mir_eval scoring)."""
    score = [(0.5 * i, 0.5 * i + 0.4, p, 1.0) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]
    t = np.arange(int(4.5 * SR)) / SR
    y = np.zeros_like(t)
    for s, e, p, _ in score:
        on = (t >= s) & (t < e)
        y[on] += 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t[on]) * np.exp(-(t[on] - s) * 2)
    from lmdm.eval.transcribe import note_f_measure, transcribe
    assert note_f_measure(score, transcribe(y, SR))["f_measure"] > 0.8
    assert note_f_measure(score, [(0.1 + s, e, p + 5, a) for s, e, p, a in score])["f_measure"] == 0.0


def test_key_distribution_and_pairwise():
    d = js.key_distribution(["C major", "C major", "A minor", "C major"])
    assert d["distinct"] == 2 and d["top_share"] == 0.75
    assert js.mean_pairwise([1, 2, 3], lambda a, b: a + b) == pytest.approx(4.0)


def test_natural_prompt_set():
    from lmdm.eval.judge import parse_key, prompt_words
    texts = js.load_prompts()
    assert len(texts["prompts"]) >= 30 and len(set(texts["prompts"])) == len(texts["prompts"])
    mapped = [p for p in texts["prompts"] if prompt_words(p)]
    assert len(mapped) >= 0.9 * len(texts["prompts"])   # nearly every prompt has words the judge can check
    from lmdm.engine.beat import bpm_from_text
    assert {bpm_from_text(p) for p in texts["same_tempo"]} == {120.0}
    assert sum(parse_key(p) is not None for p in texts["prompts"]) >= 5


def test_judge_section_end_to_end_on_a_tiny_model(tmp_path):
    """The pipeline (generation, judge, corpus ceiling, codec vs MIDI, report table) on a tiny random
    model: the numbers are meaningless, the shape of the report is what is tested."""
    import json

    import torch

    import lmdm
    from lmdm.checkpoints import save_pretrained
    from lmdm.data.synth.corpus import generate_corpus
    from lmdm.models.autoencoder import AutoencoderConfig
    generate_corpus(tmp_path / "corpus", hours=2 * 8 / 3600, clip_seconds=8, styles=["house", "jazz"], workers=1,
                    progress=False)
    cfg = lmdm.preset("tiny")
    cfg.sample_rate = 22050
    cfg.autoencoder = AutoencoderConfig(audio_channels=1, sample_rate=22050, channels=8, c_mults=[1, 2], strides=[4, 8],
                                        latent_dim=8).to_dict()
    cfg.downsampling_ratio = 32
    cfg.pattern.block_frames, cfg.pattern.context_frames = 256, 768
    torch.manual_seed(0)
    model = lmdm.LiveMusicModel(cfg)
    save_pretrained(model, tmp_path / "model")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"prompts": ["heavy metal in E minor, 120 BPM", "gentle piano"],
                                   "same_tempo": ["metal, 120 BPM", "piano, 120 BPM"],
                                   "seed_prompts": ["gentle piano"]}))
    manifest = tmp_path / "corpus" / "manifest.jsonl"
    spec = js.JudgeSuite(seconds=3.0, seeds=2, corpus_pieces=2, codec_pieces=1)
    r = js.evaluate_judge(model, manifest, spec, prompts_file=prompts, clips_dir=tmp_path / "clips")
    assert [c["prompt"] for c in r["natural"]] == ["heavy metal in E minor, 120 BPM", "gentle piano"]
    assert r["natural"][0]["tempo_error"] is not None and r["natural"][0]["key_relation"] in ("same", "relative", "other")
    assert len(r["corpus"]) == 2 and len(r["codec"]) == 1 and 0.0 <= r["codec"][0]["note_f_original"] <= 1.0
    s = r["summary"]
    assert -1 <= s["pcp_corr_between_prompts"] <= 1 and s["distinct_keys"] >= 1 and s["codec_mrstft"] > 0
    assert len(list((tmp_path / "clips").glob("*.wav"))) == 2 + 2 + 1   # natural, same tempo, 1 new seed clip
    lines = js.judge_table({"tiny": {"judge": r}})
    assert any(line.startswith("| pcp_corr_between_prompts |") for line in lines)
    assert sum(line.startswith("| heavy metal in E minor") for line in lines) == 1
