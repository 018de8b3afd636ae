"""`lmdm --help` and every `lmdm COMMAND [SUB] --help` parse and print without importing torch
(checked in a fresh interpreter through sys.modules; fast start is measured, not asserted)."""
import argparse
import subprocess
import sys

from lmdm.cli import build_parser


def _commands() -> list[list[str]]:
    out = [[]]
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append([name])
                for inner in sub._actions:
                    if isinstance(inner, argparse._SubParsersAction):
                        out += [[name, leaf] for leaf in inner.choices]
    return out


def test_help_does_not_import_torch():
    commands = _commands()
    assert ["bench"] in commands and ["train", "finetune"] in commands and ["data", "synth"] in commands
    code = f"""
import contextlib, io, sys
import lmdm.cli
for argv in {commands!r}:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            lmdm.cli.main(argv + ['--help'])
        except SystemExit as e:
            assert e.code == 0, (argv, e.code)
    assert 'usage: lmdm' in buf.getvalue(), argv
heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))
print('TORCH' if heavy else 'NO-TORCH', len({commands!r}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["NO-TORCH", str(len(commands))], result.stdout


def test_lazy_public_names_still_resolve():
    import lmdm
    assert lmdm.LiveMusicModel.__name__ == "LiveMusicModel" and callable(lmdm.load)
    from lmdm.live import Engine
    from lmdm.train import add_lora
    assert Engine.__name__ == "Engine" and callable(add_lora)


def test_module_entry_points_print_help_without_torch():
    """`python -m lmdm`, `python -m lmdm.data` and `python -m lmdm.train` are the same command line."""
    for module, usage in (("lmdm", "usage: lmdm [-h]"), ("lmdm.data", "usage: lmdm data [-h]"),
                          ("lmdm.train", "usage: lmdm train [-h]")):
        code = (f"import runpy, sys; sys.argv = ['x', '--help']\ntry:\n    runpy.run_module({module!r}, "
                "run_name='__main__', alter_sys=True)\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
                "print('TORCH' if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 'NO-TORCH')")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert usage in result.stdout and result.stdout.split()[-1] == "NO-TORCH", (module, result.stdout)


def test_lazy_names_raise_attribute_error_for_anything_else():
    """One helper (`lmdm._lazy.lazy_names`) serves every lazy package: unknown names are still an
    AttributeError naming the package (so hasattr and `from x import y` behave as usual)."""
    import pytest

    import lmdm
    import lmdm.data.synth as synth
    assert callable(synth.render_piece) and callable(synth.generate_corpus)
    for module, name in ((lmdm, "lmdm"), (synth, "lmdm.data.synth")):
        with pytest.raises(AttributeError, match=f"module '{name}' has no attribute 'nope'"):
            module.nope
        assert not hasattr(module, "nope")
