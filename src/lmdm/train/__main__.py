"""`python -m lmdm.train …` (e.g. under torchrun) = `lmdm train …`."""
import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
