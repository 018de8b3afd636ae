"""The `lmdm` command line: the top-level parser, one module per command group, and `main`.

Each module (bench, generate, convert, eval, data, train, live) registers its subcommands with
`register(subparsers)` and holds thin handlers that call library code. Handlers import the library
(and so torch) only when they run, which keeps `lmdm --help` and every `lmdm COMMAND --help` light.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import LMDMError
from . import bench, convert, data, eval, generate, live, train

# the order of the commands in `lmdm --help`
GROUPS = (bench, generate, convert, eval, data, train, live)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmdm", description="Live Music Diffusion Models: streaming, "
                                     "interactive latent audio diffusion.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 bad usage (argparse's own errors too), 1 a runtime failure, 130 Ctrl-C.
    Every error is one line `lmdm: error: ...`; LMDM_TRACEBACK=1 adds the traceback of an unexpected one."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LMDMError as e:
        print(f"lmdm: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lmdm: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("lmdm: error: out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # a failure we did not foresee: one line, never a wall of traceback
        import os
        if os.environ.get("LMDM_TRACEBACK"):
            import traceback
            traceback.print_exc()
        print(f"lmdm: error: {type(e).__name__}: {e} (an unexpected failure; LMDM_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
