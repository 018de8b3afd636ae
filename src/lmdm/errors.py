"""Errors a user can cause. Each names the file, key or field that is wrong."""


class LMDMError(Exception):
    """Base class for every error lmdm raises on bad input. `exit_code`: what the command line
    exits with (2: bad usage, the default; 1: a runtime failure, `RunError`)."""

    exit_code = 2


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


class OutputError(LMDMError):
    """An output file cannot be written where the user asked (missing folder, a directory, no
    permission, a format lmdm does not write). Checked before any work starts."""


class RunError(LMDMError):
    """Work that started could not finish (a write failed mid-way, generation crashed); exit code 1.
    The user's existing output file is left as it was."""

    exit_code = 1
