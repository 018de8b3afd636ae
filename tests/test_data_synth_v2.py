"""Corpus v2: recorded instruments from Debian's sample packages, the v2 mix, styles, captions.

Each sample source has its own tiny render, skipped (with the package to install) where its
Debian package is absent; scripts/setup.sh installs them all.
"""
import json
import re

import numpy as np
import pytest

pytest.importorskip("pretty_midi")

from lmdm.data.synth.v2.captions import captions, parse_caption  # noqa: E402
from lmdm.data.synth.compose import compose  # noqa: E402
from lmdm.data.synth.v2.instruments import SOURCES, HydrogenKit, SampleKit, SoundFontInstrument, SoundFontKit, \
    available, play  # noqa: E402
from lmdm.data.synth.v2.styles import KITS, PROGRAMS, STYLES  # noqa: E402
from lmdm.data.synth.theory import NOTE_NAMES, SHARP_NAMES  # noqa: E402

SR = 44100


def need(source: str):
    if not available(source):
        pytest.skip(f"Debian package {SOURCES[source].package} (and libfluidsynth for soundfonts) not installed; "
                    "scripts/setup.sh installs it")


def _audible(audio, seconds):
    assert audio.shape == (2, int(seconds * SR)) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and np.sqrt(np.mean(audio ** 2)) > 1e-4


NOTES = [(60, 0.0, 0.4, 100), (64, 0.5, 0.9, 70), (67, 1.0, 1.8, 110)]
BEAT = [(36, 0.0, 0.1, 110), (42, 0.25, 0.3, 80), (38, 0.5, 0.6, 100), (42, 0.75, 0.8, 60), (49, 1.0, 1.1, 100)]


@pytest.mark.parametrize("source", ["musescore", "fluidr3"])
def test_tiny_render_soundfont(source):
    need(source)
    piano = play(SoundFontInstrument(SOURCES[source].path(), 0), NOTES, 2 * SR)
    _audible(piano, 2)
    # a note sounds at its own pitch: the strongest partial of the first note is near C4 (261.6 Hz)
    seg = piano[0, int(0.05 * SR):int(0.35 * SR)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    freqs = np.fft.rfftfreq(seg.size, 1 / SR)
    assert abs(12 * np.log2(freqs[spec[freqs > 100].argmax() + (freqs <= 100).sum()] / 261.63)) < 0.5 or \
        abs(12 * np.log2(freqs[spec[freqs > 100].argmax() + (freqs <= 100).sum()] / 523.25)) < 0.5
    _audible(play(SoundFontKit(SOURCES[source].path(), 128, 0), BEAT, 2 * SR), 2)


def test_tiny_render_avldrums():
    need("avldrums")
    _audible(play(SoundFontKit(SOURCES["avldrums"].path(), 0, 0), BEAT, 2 * SR), 2)


def test_tiny_render_hydrogen_kits():
    need("hydrogen")
    for kit_id, kit in KITS.items():
        if kit.source == "hydrogen":
            _audible(play(HydrogenKit(kit.where, dict(kit.voices)), BEAT, 2 * SR), 2)
    # velocity layers: a soft hit and a hard hit of a layered snare are different recordings
    pearl = HydrogenKit(KITS["pearl"].where, dict(KITS["pearl"].voices))
    soft, _, _, _ = pearl.note(38, 20)
    hard, _, _, _ = pearl.note(38, 127)
    assert soft.shape != hard.shape or not np.allclose(soft, hard)


def test_tiny_render_sonic_pi():
    need("sonicpi")
    for kit in KITS.values():
        if kit.source == "sonicpi":
            _audible(play(SampleKit(dict(kit.voices)), BEAT, 2 * SR), 2)


def test_style_book_v2():
    assert len(STYLES) >= 20
    names = {}
    for s in STYLES.values():
        assert set(s.modes) <= {"major", "minor"} and s.tempo[0] <= s.tempo[1]
        for alias in (s.label, *s.aliases):
            assert names.setdefault(alias.lower(), s.name) == s.name, alias   # a name means one style
        for stem, programs in s.palette.items():
            assert all((p in KITS) if stem == "drums" else (p in PROGRAMS) for p in programs), (s.name, stem)
        for groove in s.grooves:
            assert all(len(p) == 4 * s.meter for p in groove.values()), s.name


def _meta(style, seed, seconds=30.0):
    piece = compose(STYLES[style], seed, seconds)
    return piece.metadata()


def test_captions_parse_back_to_style_key_tempo():
    for i, name in enumerate(STYLES):
        for seed in (i, i + 100):
            meta = _meta(name, seed)
            caps = captions(meta)
            assert len(caps) >= 5 and len(set(caps)) == len(caps)
            for cap in caps:
                assert parse_caption(cap) == {"style": name, "key": meta["key"], "tempo": meta["tempo"]}, cap
                low = cap.lower()
                for other in STYLES.values():   # no other style's name slips in
                    if other.name != name:
                        for alias in other.aliases:
                            assert not re.search(rf"(?<![\w-]){re.escape(alias.lower())}(?![\w-])", low) or \
                                any(alias.lower() in a.lower() for a in STYLES[name].aliases), (cap, alias)
    assert parse_caption("warm lo-fi hip hop in D minor at 84 BPM") == {"style": "lofi", "key": "D minor",
                                                                        "tempo": 84}
    assert parse_caption("some music") == {"style": None, "key": None, "tempo": None}


def test_v2_corpus_manifest_matches_audio(tmp_path):
    import pretty_midi
    import soundfile as sf
    from lmdm.data.dataset import read_manifest
    from lmdm.data.synth.corpus import generate_corpus
    need("musescore" if available("musescore") else "fluidr3")
    summary = generate_corpus(tmp_path, hours=3 * 5 / 3600, clip_seconds=5, seed=2, renderer="v2",
                              styles=["rock", "trap", "strings"], stems=True, workers=1, progress=False)
    assert summary["pieces"] == 3 and summary["audio_hours_per_cpu_hour"] > 0 and summary["disk_bytes"] > 0
    for e in read_manifest(tmp_path / "manifest.jsonl"):
        info = sf.info(str(tmp_path / e["path"]))
        assert (info.samplerate, info.channels) == (e["sample_rate"], e["channels"]) == (SR, 2)
        assert info.frames == int(e["duration"] * SR) and e["duration"] == 5
        meta = e["metadata"]
        assert meta["renderer"] == "v2" and meta["sample_rate"] == SR and meta["channels"] == 2
        assert re.fullmatch(r"[A-G][#b]? (major|minor)", meta["key"]) and meta["time_signature"] == "4/4"
        lo, hi = STYLES[meta["style"]].tempo
        assert lo <= meta["tempo"] <= hi
        assert meta["sections"][0]["start"] == 0 and meta["sections"][-1]["end"] == pytest.approx(5.0)
        assert all(a["end"] == pytest.approx(b["start"]) for a, b in zip(meta["sections"], meta["sections"][1:]))
        assert meta["instruments"] == list(dict.fromkeys(s["description"] for s in meta["stems"].values()))
        assert set(e["stems"]) == set(meta["stems"])
        for name, stem in meta["stems"].items():
            assert stem["source"] in SOURCES and stem["package"] == SOURCES[stem["source"]].package
        mix = sf.read(str(tmp_path / e["path"]), dtype="float32")[0].T
        stems = [sf.read(str(tmp_path / p), dtype="float32")[0].T for p in e["stems"].values()]
        assert np.abs(sum(stems) - mix).max() <= (len(stems) + 1) / 32768   # mix == sum(stems)
        pm = pretty_midi.PrettyMIDI(str(tmp_path / e["midi"]))
        assert pm.get_tempo_changes()[1][0] == pytest.approx(meta["tempo"], rel=1e-3)
        assert {i.name for i in pm.instruments} == set(meta["stems"])
        for cap in e["captions"]:
            assert parse_caption(cap) == {"style": meta["style"], "key": meta["key"], "tempo": meta["tempo"]}
        sidecar = json.loads((tmp_path / e["path"]).with_suffix(".json").read_text())
        assert sidecar["metadata"]["key"] == meta["key"]


def test_v2_is_deterministic_and_styles_differ():
    need("musescore" if available("musescore") else "fluidr3")
    from lmdm.data.synth.v2.render import synth_piece_v2
    _, stems_a, mix_a, meta_a = synth_piece_v2("funk", 5, 3.0)
    _, stems_b, mix_b, meta_b = synth_piece_v2("funk", 5, 3.0)
    assert np.array_equal(mix_a, mix_b) and meta_a == meta_b
    assert np.abs(mix_a).max() <= 10 ** (-1 / 20) + 1e-6
    np.testing.assert_allclose(sum(stems_a.values()), mix_a, atol=1e-5)
    _, _, mix_c, _ = synth_piece_v2("funk", 6, 3.0)
    assert not np.array_equal(mix_a, mix_c)


def _pitch_class(key: str) -> tuple[int, str]:
    note, mode = key.split()
    return (NOTE_NAMES.index(note) if note in NOTE_NAMES else SHARP_NAMES.index(note)), mode


def _related(read: str, stated: str) -> bool:
    """The key a chroma key-profile most often reads instead of the stated one: a fifth either side
    (the 3rd harmonic of every note feeds the fifth's pitch class), the relative major/minor (same
    notes) or the parallel mode (same tonic; bass harmonics add a major third)."""
    (tr, mr), (ts, ms) = _pitch_class(read), _pitch_class(stated)
    if mr == ms:
        return (tr - ts) % 12 in (5, 7)
    return tr == ts or (tr - ts) % 12 == (3 if mr == "major" else 9)


def test_stated_key_and_tempo_agree_with_the_judge():
    """On a small sample (every other style, 20-s pieces) the independent judge (lmdm.eval.judge:
    a chroma key profile and librosa's beat tracker) reads the stated key itself on >= 80 % and the
    stated tempo within 4 %, or at half/double it (the same pulse counted at another metrical level),
    on >= 80 % (measured on 96 pieces: key 89 %, tempo 93 %; docs/corpus.md)."""
    judge = pytest.importorskip("lmdm.eval.judge")
    need("musescore" if available("musescore") else "fluidr3")
    from lmdm.data.synth.v2 import instruments, soundfont
    from lmdm.data.synth.v2.render import synth_piece_v2
    # render as a fresh process would: a soundfont note still depends slightly on what the same
    # synth rendered before it (docs/corpus.md), and the figures above were measured from a fresh start
    instruments.clear_cache()
    soundfont.synth_for.cache_clear()
    names = list(STYLES)[::2]
    exact = close = tempos = 0
    readings = {}
    for i, name in enumerate(names):
        _, _, mix, meta = synth_piece_v2(name, 500 + i, 20.0)
        key, bpm = judge.read_key(mix, SR), judge.read_tempo(mix, SR)
        exact += _pitch_class(key) == _pitch_class(meta["key"])
        close += _pitch_class(key) == _pitch_class(meta["key"]) or _related(key, meta["key"])
        tempos += any(abs(bpm * r / meta["tempo"] - 1) <= 0.04 for r in (0.5, 1.0, 2.0))
        readings[name] = (meta["key"], key, meta["tempo"], round(bpm, 1))
    counts = f"exact key {exact}, related {close}, tempo {tempos} of {len(names)}: {readings}"
    assert tempos >= 0.8 * len(names), counts
    assert exact >= 0.8 * len(names), counts
    assert close >= exact, counts


def test_related_keys():
    assert _related("G major", "C major") and _related("F major", "C major") and _related("A minor", "C major")
    assert _related("C minor", "C major") and _related("C major", "A minor") and _related("E minor", "A minor")
    assert not _related("D major", "C major") and not _related("F# minor", "C major")


def test_missing_packages_fall_back_or_fail_clearly(monkeypatch, tmp_path, capsys):
    """A style's kit whose package is absent is replaced by the next installed kit of its palette
    (the metadata names what played); no soundfont at all is a one-line error naming the packages."""
    from dataclasses import replace

    import lmdm.data.synth.v2.instruments as instruments
    from lmdm.cli import main
    from lmdm.data.synth.v2.render import usable_kit
    need("hydrogen")
    need("sonicpi")
    assert usable_kit("millo", STYLES["lofi"].palette["drums"]) == "millo"
    gone = replace(SOURCES["hydrogen"], paths=(str(tmp_path / "none"),))
    monkeypatch.setitem(instruments.SOURCES, "hydrogen", gone)
    assert usable_kit("millo", STYLES["lofi"].palette["drums"]) == "spacoustic"   # the palette's Sonic Pi kit
    for name in ("musescore", "fluidr3"):
        monkeypatch.setitem(instruments.SOURCES, name, replace(SOURCES[name], paths=(str(tmp_path / "none"),)))
    out = tmp_path / "c"
    assert main(["data", "synth", "--hours", "0.001", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmdm: error:") and "musescore-general-soundfont" in err and "--renderer v1" in err


def test_cli_renderer_choice_and_unknown_style(tmp_path, capsys):
    from lmdm.cli import main
    from lmdm.data.dataset import read_manifest
    assert main(["data", "synth", "--renderer", "v1", "--styles", "waltz", "--hours", str(3 / 3600), "--clip-seconds", "3",
                 "--out", str(tmp_path / "v1"), "--workers", "1", "--quiet"]) == 0
    entry = read_manifest(tmp_path / "v1" / "manifest.jsonl")[0]
    assert entry["metadata"]["style"] == "waltz" and "renderer" not in entry["metadata"]   # the v1 corpus as before
    assert main(["data", "synth", "--styles", "polka", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "unknown v2 style(s) polka" in capsys.readouterr().err
