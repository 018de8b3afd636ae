"""Data: the built-in synthetic corpus (`synth/`), sketch controls, tempo estimation, manifests,
latent pre-encoding and the training Dataset. Heavy optional packages (pretty_midi,
tinysoundfont) are imported inside the functions that need them."""
