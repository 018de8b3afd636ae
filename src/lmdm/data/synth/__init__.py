"""The built-in music corpus: a procedural composer in many styles, General MIDI rendering to
stems and a mix, metadata and captions. `lmdm data synth` drives `generate_corpus`."""
from .captions import captions
from .compose import Piece, compose
from .corpus import format_summary, generate_corpus, synth_piece
from .render import render_piece
from .styles import STYLES, Style

__all__ = ["Piece", "STYLES", "Style", "captions", "compose", "format_summary", "generate_corpus", "render_piece",
           "synth_piece"]
