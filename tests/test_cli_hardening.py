"""Issue 34, the command line: every bad option is one `lmdm: error:` line with exit 2, a failure
mid-run exits 1, and the user's existing output file survives either; a killed render leaves a
partial file whose WAV header is valid; a config whose sample rate disagrees with its autoencoder
does not load."""
import json
import os
import resource
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from lmdm.cli import main
from lmdm.errors import ConfigError
from lmdm.live.testmodel import save_tiny_live_model

OLD = b"the user's previous render"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_live_model(tmp_path_factory.mktemp("hard") / "tiny", steps=2)


def run_cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


BAD_GENERATE = [
    (["--seconds", "0"], "--seconds"), (["--seconds", "-1"], "--seconds"), (["--seconds", "nan"], "--seconds"),
    (["--seconds", "inf"], "--seconds"), (["--seconds", "1e-7"], "at least one sample"),
    (["--cfg", "nan"], "--cfg"), (["--cfg", "-1"], "--cfg"), (["--steps", "0"], "--steps"),
    (["--steps", "-2"], "got -2"), (["--beat-cfg", "nan"], "--beat-cfg"), (["--block", "0"], "--block"),
    (["--seed", "-1"], "--seed"), (["--bpm", "10"], "--bpm"), (["--prompt-guidance", "inf"], "--prompt-guidance"),
    (["--sketch-strength", "2"], "--sketch-strength"), (["--control-guidance", "-0.5"], "--control-guidance"),
]


@pytest.mark.parametrize("extra, message", BAD_GENERATE)
def test_bad_generate_options_keep_the_old_file(model_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "song.wav"
    out.write_bytes(OLD)
    code, err = run_cli(["generate", "x", "--model", str(model_dir), "-o", str(out), "--quiet", *extra], capsys)
    assert code == 2 and err.startswith("lmdm: error: ") and err.count("\n") == 1, err
    assert message in err
    assert out.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]   # no temporary file left


@pytest.mark.parametrize("specs, message", [
    (["a:-1|b:1"], "weight '-1'"), (["a:1e9|b:1"], "weight '1e9'"), (["a@0s", "b@-5s"], "time '-5'"),
    (["a@0s", "b@30s"], "never play")])   # a change after the end of a 1 s piece
def test_bad_prompt_specs_are_errors_not_text(model_dir, tmp_path, capsys, specs, message):
    out = tmp_path / "song.wav"
    out.write_bytes(OLD)
    code, err = run_cli(["generate", "--prompts", *specs, "--seconds", "1", "--model", str(model_dir), "-o", str(out),
                         "--quiet"], capsys)
    assert code == 2 and message in err and out.read_bytes() == OLD, err


def test_bad_output_paths_are_named_before_the_model_loads(tmp_path, capsys):
    # --model points nowhere: an error about it would mean the path was checked too late
    missing_model = str(tmp_path / "no-model")
    (tmp_path / "adir").mkdir()
    for path, message in [(tmp_path / "missing" / "x.wav", "does not exist"), (tmp_path / "adir", "is a folder"),
                          (tmp_path / "x.mp3", "'.mp3'"), (tmp_path / "x.ogg", "'.ogg'"), (tmp_path / "x.xyz", "'.xyz'")]:
        code, err = run_cli(["generate", "x", "--model", missing_model, "-o", str(path), "--quiet"], capsys)
        assert code == 2 and message in err and "no-model" not in err, err
        code, err = run_cli(["accompany", str(tmp_path / "song.wav"), "--prompt", "x", "--model", missing_model,
                             "-o", str(path), "--quiet"], capsys)
        assert code == 2 and message in err, err
        code, err = run_cli(["live", "--headless", "--script", "a", "--model", missing_model, "--out", str(path)], capsys)
        assert code == 2 and message in err, err


def test_live_headless_rejects_a_negative_length(tmp_path, capsys):
    code, err = run_cli(["live", "--headless", "--test-model", "--script", "a", "--seconds", "-1",
                         "--out", str(tmp_path / "s.wav")], capsys)
    assert code == 2 and "--seconds" in err and not (tmp_path / "s.wav").exists()


def test_a_good_render_replaces_the_old_file_whole(model_dir, tmp_path, capsys):
    out = tmp_path / "song.wav"
    out.write_bytes(OLD)
    code, _ = run_cli(["generate", "x", "--model", str(model_dir), "--seconds", "0.3", "-o", str(out), "--quiet"], capsys)
    assert code == 0
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (44100, 2, 2, 13230)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_a_flac_render_equals_the_wav_render(model_dir, tmp_path, capsys):
    """FLAC streams through the same partial WAV and is encoded losslessly on success."""
    import soundfile as sf
    for name in ("a.wav", "a.flac"):
        code, _ = run_cli(["generate", "x", "--model", str(model_dir), "--seconds", "0.3", "-o", str(tmp_path / name),
                           "--quiet"], capsys)
        assert code == 0
    wav, rate = sf.read(tmp_path / "a.wav", dtype="int16")
    flac, flac_rate = sf.read(tmp_path / "a.flac", dtype="int16")
    assert sf.info(tmp_path / "a.flac").format == "FLAC" and flac_rate == rate and (flac == wav).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.wav"]


def test_a_write_failure_mid_render_exits_1_and_keeps_the_old_file(model_dir, tmp_path):
    """A real failure while writing: the file size limit (RLIMIT_FSIZE) makes write() fail with EFBIG
    after ~100 KB (Python ignores SIGXFSZ, so the write raises instead of killing the process)."""
    out = tmp_path / "song.wav"
    out.write_bytes(OLD)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # noqa: E731
    run = subprocess.run([sys.executable, "-m", "lmdm", "generate", "x", "--model", str(model_dir), "--seconds", "3",
                          "-o", str(out), "--quiet"], capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("lmdm: error: writing") and "Traceback" not in run.stderr, run.stderr
    assert out.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_a_killed_render_leaves_a_valid_partial_wav_and_the_old_file(model_dir, tmp_path):
    out = tmp_path / "song.wav"
    out.write_bytes(OLD)
    proc = subprocess.Popen([sys.executable, "-m", "lmdm", "generate", "x", "--model", str(model_dir), "--seconds",
                             "3600", "-o", str(out), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        partial = []
        while time.monotonic() < deadline:
            partial = list(tmp_path.glob(".song.wav.*.partial.wav"))
            if partial and partial[0].stat().st_size > 44 + 4 * 20000:
                break
            assert proc.poll() is None
            time.sleep(0.2)
        else:
            pytest.fail("no partial render appeared")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert out.read_bytes() == OLD
    size = partial[0].stat().st_size
    with wave.open(str(partial[0])) as w:   # Python's wave reads the header's sizes, as many players do
        frames = w.getnframes()
        assert w.getnchannels() == 2 and frames > 20000
        assert len(w.readframes(frames)) == 4 * frames
    assert size >= 44 + 4 * frames   # the header never claims more than the file holds


def test_config_sample_rate_must_match_the_autoencoder(model_dir, tmp_path):
    import shutil
    from lmdm.checkpoints import from_pretrained
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["sample_rate"] = 48000
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="sample_rate 48000 disagrees with the autoencoder's sample_rate 44100"):
        from_pretrained(bad)


def test_python_api_checks_the_same_ranges(model_dir):
    from lmdm.checkpoints import from_pretrained
    model = from_pretrained(model_dir)
    for kwargs, message in [({"steps": 0}, "steps"), ({"cfg_scale": float("nan")}, "cfg_scale"),
                            ({"beat_cfg": float("nan")}, "beat_cfg"), ({"seed": -3}, "seed")]:
        with pytest.raises(ConfigError, match=message):
            model.generate("x", 0.1, **kwargs)
        with pytest.raises(ConfigError, match=message):
            model.stream("x", **kwargs)
    with pytest.raises(ConfigError, match="at least one sample"):
        model.generate("x", 1e-7)
    # streaming to a callback keeps nothing: the audio went to on_audio
    got = []
    assert model.generate("x", 0.2, on_audio=got.append) is None
    assert sum(a.shape[-1] for a in got) == round(0.2 * 44100)


@pytest.mark.parametrize("extra, message", [(["--steps", "0"], "--steps"), (["--blocks", "0"], "--blocks"),
                                            (["--batch", "0"], "--batch"), (["--threads", "0"], "--threads"),
                                            (["--warmup", "-1"], "--warmup"), (["--cfg", "nan"], "--cfg")])
def test_bench_options_are_checked(capsys, extra, message):
    code, err = run_cli(["bench", "--preset", "tiny", *extra], capsys)
    assert code == 2 and err.startswith("lmdm: error: ") and message in err, err
