"""Audio I/O and control analysis (loudness, brightness, pitch), used by the runtime, data, training
and evaluation alike; knows no model."""
