"""The built-in music corpus: a procedural composer in many styles, rendering to stems and a mix,
metadata and captions. `lmdm data synth` drives `generate_corpus`.

Layout: what both corpus versions share at this level (`theory.py`, `compose.py`, the writer
`corpus.py`), each renderer with its style book and captions in its own subpackage: `v1/` (General
MIDI soundfonts, 11 styles) and `v2/` (recorded instruments, 24 styles). The names here are v1's.
The composer is pure Python and imported here; the renderer and the corpus writer (numpy) on first
use (PEP 562), so `lmdm --help`, which lists the styles, stays light."""
from ..._lazy import lazy_names
from .compose import Piece, compose
from .v1.captions import captions
from .v1.styles import STYLES, Style

_LAZY = {"format_summary": ".corpus", "generate_corpus": ".corpus", "synth_piece": ".corpus",
         "render_piece": ".v1.render"}
__all__ = sorted(["Piece", "STYLES", "Style", "captions", "compose", *_LAZY])

__getattr__ = lazy_names(__name__, _LAZY)
