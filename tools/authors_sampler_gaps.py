"""How far lmdm's block-causal samplers are from the authors' two samplers, on the parity fixture.

    PYTHONPATH=src python tools/authors_sampler_gaps.py

Runs the fixture model (tests/fixtures/authors_tiny.safetensors, made from their code by
tests/authors_reference.py) through lmdm's Stream with --cache exact / none / authors, with the
fixture's noise and conditioning, and prints the largest difference per block divided by the
largest value. The table is in docs/authors-interop.md.
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_authors_interop as T  # noqa: E402  (the fixture helpers)

from lmdm.checkpoints import from_pretrained  # noqa: E402


class _Set:
    def setattr(self, obj, name, value):
        setattr(obj, name, value)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = from_pretrained(T.authors_dir(Path(tmp) / "authors"))
        data, _, steps = T._fixture()
        ours = {c: T._blocks(model, data, steps, c, _Set()) for c in ("exact", "none", "authors")}
    scale = data["nocache.blocks"].abs().max()
    blocks = data["nocache.blocks"].shape[-1] // 4

    def rel(a, b):
        return "  ".join(f"{((a - b)[..., 4 * i:4 * i + 4].abs().max() / scale).item():.1e}" for i in range(blocks))
    for name, a, b in (("lmdm none    vs their cache-free", ours["none"], data["nocache.blocks"]),
                       ("lmdm authors vs their cached    ", ours["authors"], data["cached.blocks"]),
                       ("lmdm exact   vs their cache-free", ours["exact"], data["nocache.blocks"]),
                       ("their cached vs their cache-free", data["cached.blocks"], data["nocache.blocks"])):
        print(f"{name}  {rel(a, b)}")


if __name__ == "__main__":
    main()
