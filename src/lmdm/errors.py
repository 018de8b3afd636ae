"""Errors a user can cause. Each names the file, key or field that is wrong."""


class LMDMError(Exception):
    """Base class for every error lmdm raises on bad input."""


class ConfigError(LMDMError, ValueError):
    """A configuration value is missing, out of range or inconsistent."""


class ShapeError(LMDMError, ValueError):
    """A tensor does not have the shape the model expects."""


class PromptError(LMDMError, ValueError):
    """A prompt list is empty or has non-positive weights."""


class StateError(LMDMError, ValueError):
    """A stream state dict does not belong to this stream's model or config."""


class CheckpointError(LMDMError):
    """A checkpoint file is missing, corrupt, or does not match the model."""


class DataError(LMDMError, ValueError):
    """A dataset, manifest or audio file is missing, unreadable or inconsistent."""


class TrainingError(LMDMError):
    """A training run cannot go on: a non-finite loss, a bad batch, an inconsistent resume."""
