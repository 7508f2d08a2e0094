"""Audio decoding through soundfile (not ``torchaudio.load``, which now needs FFmpeg)."""

from __future__ import annotations

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


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 ``(channels, samples)`` and its sample rate.

    Raises :class:`AudioDecodeError` for anything soundfile cannot read, so callers can
    quarantine the file instead of crashing the stage.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioDecodeError(path, f"not decodable audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(path, "decodes to zero samples")
    return np.ascontiguousarray(data.T), int(sr)


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
