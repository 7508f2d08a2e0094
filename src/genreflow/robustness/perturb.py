"""The changes real audio brings, applied to a decoded clip and written as a real file.

Users' files arrive at any loudness (quiet masters, or hot ones that clip), as stereo, at
16/44.1/48 kHz, and as WAV, FLAC, OGG or MP3, often with a noise floor. Each
:class:`Perturbation` reproduces one such change on a clip decoded by
:func:`genreflow.audio.read_audio` and writes the result with soundfile, so that reading it back
exercises the same decode, resample and down-mix a user's file goes through. Everything is
deterministic: the only randomness (noise) comes from the seed the caller passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from genreflow.core.config import ConfigError, RobustnessParams
from genreflow.core.errors import GenreflowError

# format name in params -> (soundfile format, subtype): 16-bit PCM for the lossless ones, as
# most real files are; the lossy codecs libsndfile encodes.
FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# The stereo copy: the right channel 0.3 ms later and 3 dB lower than the left, a spaced-pair
# recording's small inter-channel difference. Down-mixed it is a mild comb filter.
STEREO_DELAY_S = 0.0003
STEREO_LEVEL_DB = -3.0

# torchaudio.functional.resample settings its documentation calls "kaiser_best".
KAISER_BEST = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.769656459379492,
}

WRITE_BLOCK_FRAMES = 1 << 16

Kind = Literal["gain", "stereo", "sample_rate", "format", "noise"]


class UnsupportedFormatError(GenreflowError, RuntimeError):
    """soundfile (libsndfile) on this machine cannot write a format the params ask for."""


def db_to_amplitude(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def full_scale(wave: np.ndarray) -> np.ndarray:
    """Clip to [-1, 1] as a fixed-point file would: hot levels distort instead of wrapping."""
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)


def apply_gain(wave: np.ndarray, db: float) -> np.ndarray:
    """``wave`` scaled by ``db`` decibels; above full scale it clips."""
    return full_scale(wave * np.float32(db_to_amplitude(db)))


def to_stereo(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """A ``(2, samples)`` copy of the clip: the down-mix on the left, on the right the same
    delayed by :data:`STEREO_DELAY_S` and lowered by :data:`STEREO_LEVEL_DB`."""
    mono = wave.mean(axis=0) if wave.ndim == 2 else wave
    delay = max(1, int(round(STEREO_DELAY_S * sample_rate)))
    right = np.zeros_like(mono)
    right[delay:] = mono[:-delay] * np.float32(db_to_amplitude(STEREO_LEVEL_DB))
    return np.stack([mono, right]).astype(np.float32, copy=False)


def resample(wave: np.ndarray, sample_rate: int, new_rate: int) -> np.ndarray:
    """Every channel resampled to ``new_rate``, band-limited below its Nyquist frequency.

    Uses torchaudio's "kaiser_best" settings (its docs' name), as a mastering tool would: the
    default filter lets content just above the new Nyquist alias back, so a 16 kHz copy would
    not be the clean "nothing above 8 kHz" source it stands for.
    """
    import torch
    import torchaudio.functional as AF

    if new_rate == sample_rate:
        return wave.astype(np.float32, copy=False)
    out = AF.resample(
        torch.from_numpy(np.ascontiguousarray(wave)),
        sample_rate,
        new_rate,
        **KAISER_BEST,
    )
    return out.numpy().astype(np.float32, copy=False)


def add_noise(wave: np.ndarray, db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise of RMS ``db`` re full scale (1.0) added to every channel."""
    noise = rng.standard_normal(wave.shape).astype(np.float32) * np.float32(db_to_amplitude(db))
    return full_scale(wave + noise)


def check_formats(formats: Sequence[str]) -> None:
    """Fail naming the format if this soundfile build cannot write it."""
    available = sf.available_formats()
    for name in formats:
        container, subtype = FORMATS[name]
        if container not in available or subtype not in sf.available_subtypes(container):
            raise UnsupportedFormatError(
                f"evaluate.robustness.formats: {name!r} needs libsndfile's {container}/"
                f"{subtype}, which soundfile {sf.__version__} (libsndfile "
                f"{sf.__libsndfile_version__}) here lacks; remove it from params.yaml"
            )


def write_audio(path: Path, wave: np.ndarray, sample_rate: int, fmt: str = "wav") -> Path:
    """Write ``(channels, samples)`` float audio to ``path`` in ``fmt``; returns ``path``."""
    container, subtype = FORMATS[fmt]
    frames = full_scale(wave).T
    channels = frames.shape[1] if frames.ndim == 2 else 1
    # Written in blocks: libsndfile 1.2.2's Vorbis encoder crashes the process (SIGSEGV) when
    # one write call holds more than about 2**21 frames, i.e. any track over ~45 s at 48 kHz.
    with sf.SoundFile(
        str(path), "w", sample_rate, channels, subtype=subtype, format=container
    ) as fh:
        for start in range(0, len(frames), WRITE_BLOCK_FRAMES):
            fh.write(frames[start : start + WRITE_BLOCK_FRAMES])
    return path


@dataclass(frozen=True)
class Perturbation:
    """One change, by kind and value; :attr:`name` is its key in reports and MLflow."""

    kind: Kind
    value: float | int | str | None = None

    @property
    def name(self) -> str:
        """``gain_-30db``, ``gain_6db``, ``stereo``, ``sr_16000``, ``format_mp3``,
        ``noise_-40db``: characters MLflow accepts in metric names (no ``+``)."""
        if self.kind == "gain":
            return f"gain_{self.value:g}db"
        if self.kind == "noise":
            return f"noise_{self.value:g}db"
        if self.kind == "sample_rate":
            return f"sr_{self.value}"
        if self.kind == "format":
            return f"format_{self.value}"
        return self.kind

    @property
    def format(self) -> str:
        """The file format the perturbed clip is written in."""
        return str(self.value) if self.kind == "format" else "wav"

    def apply(
        self, wave: np.ndarray, sample_rate: int, seed: int | Sequence[int] = 0
    ) -> tuple[np.ndarray, int]:
        """The perturbed ``(channels, samples)`` audio and its sample rate."""
        if self.kind == "gain":
            return apply_gain(wave, float(self.value)), sample_rate
        if self.kind == "stereo":
            return to_stereo(wave, sample_rate), sample_rate
        if self.kind == "sample_rate":
            return resample(wave, sample_rate, int(self.value)), int(self.value)
        if self.kind == "noise":
            return add_noise(wave, float(self.value), np.random.default_rng(seed)), sample_rate
        return full_scale(wave), sample_rate  # format: the change is in how it is written

    def write(
        self,
        wave: np.ndarray,
        sample_rate: int,
        directory: Path,
        stem: str,
        seed: int | Sequence[int] = 0,
    ) -> Path:
        """Apply to the decoded clip and write ``directory/<stem>.<name>.<format>``."""
        out, rate = self.apply(wave, sample_rate, seed)
        return write_audio(directory / f"{stem}.{self.name}.{self.format}", out, rate, self.format)


def perturbations(settings: RobustnessParams) -> list[Perturbation]:
    """The perturbations ``evaluate.robustness`` asks for, in params order."""
    found = [Perturbation("gain", float(g)) for g in settings.gains_db]
    if settings.stereo:
        found.append(Perturbation("stereo"))
    found += [Perturbation("sample_rate", int(r)) for r in settings.sample_rates]
    found += [Perturbation("format", f) for f in settings.formats]
    found.append(Perturbation("noise", float(settings.noise_db)))
    names = [p.name for p in found]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"evaluate.robustness: {repeated} listed more than once")
    check_formats(settings.formats)
    return found
