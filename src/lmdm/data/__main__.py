"""`python -m lmdm.data …` (e.g. under torchrun) = `lmdm data …`."""
import sys

from ..cli import main

sys.exit(main(["data", *sys.argv[1:]]))
