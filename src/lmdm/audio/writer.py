"""Writing audio files without ever losing the user's: what `generate`, `accompany` and
`live --headless` write through.

- The target is checked before any work starts (`check_output`): a .wav path in an existing,
  writable folder, not a folder itself. So a typo costs nothing, not a whole render.
- Audio goes to a temporary file beside the target (same folder, so the final rename is atomic on
  one file system) and replaces the target only when the run succeeded (`AudioWriter.commit`). A
  failed or interrupted run leaves an existing target untouched.
- The WAV header is rewritten after every block (RIFF and data sizes, two 4-byte writes), so the
  partial file of a killed run is a valid WAV of what was generated: Python's `wave`, players and
  libsndfile all read it. libsndfile's own writer leaves both sizes 0 until close (measured: `wave`
  refuses such a file); its auto-update mode is reachable only through soundfile internals.
Formats: 16-bit PCM WAV (what lmdm has always written), or FLAC: a .flac target streams into the
same partial WAV and is encoded (losslessly, block by block) when the run succeeds, since a FLAC
header cannot be kept valid while it grows. A WAV file ends at 4 GiB, which the length check names
before a render starts (6.76 h of stereo 44.1 kHz).
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from ..errors import OutputError, RunError

FORMATS = (".wav", ".flac")
HEADER_BYTES = 44
MAX_DATA_BYTES = 2 ** 32 - 1 - 36  # the RIFF size field is 32 bits


def check_output(path, what: str = "output") -> Path:
    """A clear OutputError (exit 2) unless `path` can become an audio file lmdm writes."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a folder; give a file name, e.g. {str(path / 'out.wav')!r}")
    if path.suffix.lower() not in FORMATS:
        raise OutputError(f"{what} {str(path)!r}: lmdm writes 16-bit WAV or FLAC files; give a name ending in "
                          f".wav or .flac (got {path.suffix or 'no extension'!r})")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {str(path)!r}: no permission to write in folder {str(parent)!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {str(path)!r} exists and is read-only")
    return path


def max_seconds(sample_rate: int, channels: int) -> float:
    """The longest WAV file of this shape (16-bit samples)."""
    return MAX_DATA_BYTES / (2 * channels * sample_rate)


class AudioWriter:
    """`with AudioWriter(target) as w: w.start(rate, channels); w.write(audio)...` — renamed onto
    `target` when the block exits without an exception, deleted otherwise. `write` takes float
    audio (channels, samples), clipped to [-1, 1]."""

    def __init__(self, target, what: str = "output"):
        self.target = check_output(target, what)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".partial.wav")
        except OSError as e:
            raise OutputError(f"{what} {str(self.target)!r}: cannot create a file in its folder: {e.strerror}") from e
        self.tmp = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp makes 0600 files: give the result the mode a plain open() would (or the target's own)
        os.chmod(self.tmp, (self.target.stat().st_mode & 0o777) if self.target.exists() else 0o666 & ~umask)
        self._f = os.fdopen(fd, "r+b", buffering=0)
        self.rate = self.channels = None
        self.frames = 0
        self.done = False

    def start(self, sample_rate: int, channels: int) -> "AudioWriter":
        self.rate, self.channels = int(sample_rate), int(channels)
        self._f.write(self._header(0))
        return self

    def _header(self, data_bytes: int) -> bytes:
        block = 2 * self.channels
        return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
                + b"fmt " + struct.pack("<IHHIIHH", 16, 1, self.channels, self.rate, self.rate * block, block, 16)
                + b"data" + struct.pack("<I", data_bytes))

    def write(self, audio) -> None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise ValueError(f"audio must be ({self.channels}, samples), got {audio.shape}")
        pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").T.tobytes()
        data = self.frames * 2 * self.channels + len(pcm)
        if data > MAX_DATA_BYTES:
            raise RunError(f"{self.target}: a WAV file ends at 4 GiB ({max_seconds(self.rate, self.channels) / 3600:.2f} h "
                           "of this audio)")
        try:
            self._f.seek(0, os.SEEK_END)
            self._f.write(pcm)
            self.frames += audio.shape[1]
            # sizes first the RIFF chunk's, then the data chunk's: a reader never sees more than is there
            self._f.seek(4)
            self._f.write(struct.pack("<I", 36 + data))
            self._f.seek(40)
            self._f.write(struct.pack("<I", data))
        except OSError as e:
            raise RunError(f"writing {self.target} failed: {e.strerror or e}") from e

    @property
    def seconds(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    def commit(self) -> Path:
        """Replace the target with the finished file."""
        try:
            self._f.close()
            if self.target.suffix.lower() == ".flac":
                self._encode_flac()
            os.replace(self.tmp, self.target)
        except OSError as e:
            self.discard()
            raise RunError(f"cannot move the finished file onto {self.target}: {e.strerror or e}") from e
        self.done = True
        return self.target

    def _encode_flac(self) -> None:
        """Re-encode the finished partial WAV as FLAC in place (still beside the target, not yet on it)."""
        import soundfile as sf
        flac = self.tmp.with_name(self.tmp.name[:-len(".partial.wav")] + ".partial.flac")
        try:
            with sf.SoundFile(self.tmp) as src, sf.SoundFile(flac, "w", samplerate=self.rate, channels=self.channels,
                                                             format="FLAC", subtype="PCM_16") as dst:
                for block in src.blocks(blocksize=1 << 16, dtype="int16", always_2d=True):
                    dst.write(block)
            os.chmod(flac, self.tmp.stat().st_mode & 0o777)
            os.replace(flac, self.tmp)
        finally:
            flac.unlink(missing_ok=True)

    def discard(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.rate is not None:
            self.commit()
        elif not self.done:
            self.discard()
