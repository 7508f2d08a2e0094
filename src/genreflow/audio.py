"""Audio decoding through soundfile (not ``torchaudio.load``, which now needs FFmpeg).

The one home of the checks every reader of audio makes (a missing file, an empty one, one
soundfile refuses, one that decodes to nothing) and of the :class:`AudioDecodeError` each
raises, so training, validation and serving report a bad file in the same words: its path
and the reason. Whole-file reads use :func:`read_audio`; readers that stream a long file in
blocks (validation's measurements, serving's windows) use :func:`open_audio` and
:func:`read_blocks`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from genreflow.core.errors import GenreflowError


class AudioDecodeError(GenreflowError, RuntimeError):
    """A file that cannot be decoded; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # keep (path, reason) when raised inside a worker process
        return (type(self), (self.path, self.reason))


#: What soundfile raises for a file it cannot open or read (libsndfile's errors, and the
#: RuntimeError / ValueError some formats and truncated headers give instead).
DECODE_ERRORS: tuple[type[Exception], ...] = (sf.LibsndfileError, RuntimeError, ValueError)


#: libsndfile's wording when it recognises no format in a file that does exist (a corrupt
#: MP3, say): it blames the path, which misleads next to a file the user can see.
_MISLEADING_OPEN_ERROR = "File does not exist or is not a regular file"


def undecodable(path: Path | str, exc: BaseException) -> AudioDecodeError:
    """The error for a file soundfile refuses, with soundfile's own reason in it (reworded
    where libsndfile says an existing file does not exist)."""
    reason = str(exc)
    if _MISLEADING_OPEN_ERROR in reason and Path(path).is_file():
        reason = "libsndfile recognises no audio format in it: corrupt or truncated data"
    return AudioDecodeError(path, f"not decodable audio ({reason})")


def open_audio(path: Path | str) -> sf.SoundFile:
    """Open ``path`` for reading with soundfile (use it as a context manager).

    Raises :class:`AudioDecodeError` for a missing file, an empty (0-byte) one, or one
    soundfile cannot open, so callers can quarantine the file instead of crashing.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    try:
        return sf.SoundFile(str(path))
    except DECODE_ERRORS as exc:
        raise undecodable(path, exc) from exc


def read_blocks(fh: sf.SoundFile, path: Path | str, block_frames: int) -> Iterator[np.ndarray]:
    """Float32 ``(frames, channels)`` blocks of at most ``block_frames`` from the open ``fh``.

    A failure mid-file raises :class:`AudioDecodeError` naming ``path``; so does a file that
    ends without a single sample ("decodes to zero samples"), once the blocks run out.
    """
    frames = 0
    while True:
        try:
            block = fh.read(block_frames, dtype="float32", always_2d=True)
        except DECODE_ERRORS as exc:
            raise undecodable(path, exc) from exc
        if block.shape[0] == 0:
            break
        frames += block.shape[0]
        yield block
    if frames == 0:
        raise AudioDecodeError(path, "decodes to zero samples")


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 ``(channels, samples)`` and its sample rate.

    Raises :class:`AudioDecodeError` for a missing, empty or undecodable file, or one with no
    samples, so callers can quarantine the file instead of crashing the stage.
    """
    with open_audio(path) as fh:
        sr = int(fh.samplerate)
        try:
            data = fh.read(dtype="float32", always_2d=True)  # all frames, as sf.read does
        except DECODE_ERRORS as exc:
            raise undecodable(path, exc) from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(path, "decodes to zero samples")
    return np.ascontiguousarray(data.T), sr


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average channels: ``(channels, samples)`` -> ``(samples,)``."""
    return wave.mean(axis=0) if wave.ndim == 2 else wave


def load_mono(path: Path | str, sample_rate: int) -> torch.Tensor:
    """Decode, down-mix and resample to ``sample_rate``: the one way the pipeline reads audio."""
    wave, sr = read_audio(path)
    mono = torch.from_numpy(to_mono(wave).astype(np.float32, copy=False))
    if sr != sample_rate:
        mono = AF.resample(mono, orig_freq=sr, new_freq=sample_rate)
    return mono
