"""The per-clip table: every raw file actually decoded and measured.

Great Expectations checks columns of a table, so the expensive part of validation (decoding every
file) happens once here and the expectations then only compare numbers. A file that cannot be
decoded still gets a row, with the reason in ``decode_error``, so it can be quarantined by name.

Full-length tracks are accepted, so a file is decoded in blocks of :data:`BLOCK_FRAMES` and
measured as it streams past (counts, sums of squares and the content hash add up block by
block): memory stays one block whatever the file's length. A file whose header already says
it is longer than ``validate.max_duration_s`` is not decoded at all: it is quarantined as too
long either way, so the header's duration is all the row needs.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genreflow.audio import AudioDecodeError, open_audio, read_blocks, to_mono
from genreflow.core.hashing import file_sha256
from genreflow.core.progress import progress_bar
from genreflow.sources.manifest import MANIFEST_COLUMNS
from genreflow.validation.container import truncation_reason

#: |sample| at or above this share of full scale counts as clipped.
CLIP_LEVEL = 0.999

#: Frames decoded at a time (3 s at 22.05 kHz): what a file costs in memory, however long.
BLOCK_FRAMES = 1 << 16


#: Columns of the table, in order (manifest columns first).
TABLE_COLUMNS = (
    *MANIFEST_COLUMNS,
    "file_bytes",
    "decodable",
    "decode_error",
    "truncation",
    "checksum_error",
    "duration_s",
    "sample_rate",
    "channels",
    "frames",
    "nonfinite_samples",
    "nan_samples",
    "rms_dbfs",
    "clipping_ratio",
    "audio_sha256",
)


def audio_hash(wave: np.ndarray) -> str:
    """sha256 of the mono down-mix as little-endian float32 PCM.

    Hashing decoded samples (not file bytes) catches the same audio saved under another name or
    with a different header; the down-mix makes a mono copy of a dual-mono file collide too.
    """
    mono = np.ascontiguousarray(to_mono(wave), dtype="<f4")
    return hashlib.sha256(mono.tobytes()).hexdigest()


def nonfinite_counts(wave: np.ndarray) -> tuple[int, int]:
    """``(non-finite, NaN)`` sample counts over all channels.

    Only float files can hold NaN or +-inf. They decode without error but poison every feature
    computed from them, so they are counted here and quarantined by their own expectation.
    """
    nan = int(np.count_nonzero(np.isnan(wave)))
    return int(wave.size - np.count_nonzero(np.isfinite(wave))), nan


def _finite(wave: np.ndarray) -> np.ndarray:
    # Level and clipping are measured on finite samples only: one NaN would make the RMS NaN
    # (and read as silence), one inf would count as clipping. The non-finite check reports them.
    return wave[np.isfinite(wave)]


def rms_dbfs(wave: np.ndarray) -> float:
    """RMS level of the finite samples in dB relative to full scale.

    ``-inf`` for digital silence; ``nan`` (not measurable, so no level check fires) when no sample
    is finite.
    """
    finite = _finite(wave)
    if finite.size == 0:
        return math.nan
    rms = float(np.sqrt(np.mean(np.square(finite, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0.0 else -math.inf


def clipping_ratio(wave: np.ndarray) -> float:
    """Share of finite samples (over all channels) at or beyond :data:`CLIP_LEVEL` of full scale.

    ``nan`` when no sample is finite.
    """
    finite = _finite(wave)
    if finite.size == 0:
        return math.nan
    return float(np.count_nonzero(np.abs(finite) >= CLIP_LEVEL)) / float(finite.size)


class _Running:
    """The measurements of :func:`inspect_clip`, accumulated block by block.

    Each is a count, a sum or a hash, so the result does not depend on the block size: the
    same numbers as measuring the whole decoded file at once (the RMS up to float rounding).
    """

    def __init__(self) -> None:
        self.frames = 0
        self.nonfinite = 0
        self.nan = 0
        self.finite = 0
        self.square_sum = 0.0
        self.clipped = 0
        self.mono_sha = hashlib.sha256()

    def add(self, wave: np.ndarray) -> None:
        """One decoded block, ``(channels, frames)`` float32."""
        self.frames += wave.shape[1]
        nonfinite, nan = nonfinite_counts(wave)
        self.nonfinite += nonfinite
        self.nan += nan
        finite = _finite(wave)
        self.finite += finite.size
        self.square_sum += float(np.sum(np.square(finite, dtype=np.float64)))
        self.clipped += int(np.count_nonzero(np.abs(finite) >= CLIP_LEVEL))
        self.mono_sha.update(np.ascontiguousarray(to_mono(wave), dtype="<f4").tobytes())

    def row(self) -> dict[str, Any]:
        if self.finite == 0:
            level = clip_share = math.nan
        else:
            rms = math.sqrt(self.square_sum / self.finite)
            level = 20.0 * math.log10(rms) if rms > 0.0 else -math.inf
            clip_share = self.clipped / self.finite
        return {
            "nonfinite_samples": float(self.nonfinite),
            "nan_samples": float(self.nan),
            "rms_dbfs": level,
            "clipping_ratio": clip_share,
            "audio_sha256": self.mono_sha.hexdigest(),
        }


def measure_audio(
    path: Path, max_duration_s: float | None = None, block_frames: int = BLOCK_FRAMES
) -> dict[str, Any]:
    """Decode ``path`` block by block and measure it; raises :class:`AudioDecodeError`.

    When the header says the file is longer than ``max_duration_s``, only the header is read
    (shape columns filled, sample measurements left NaN): the file is too long whatever its
    samples hold, and decoding an hour-long mistake would cost the stage minutes.
    """
    with open_audio(path) as fh:
        sr, channels = int(fh.samplerate), int(fh.channels)
        shape = {"sample_rate": float(sr), "channels": float(channels), "decodable": True}
        if max_duration_s is not None and fh.frames / sr > max_duration_s:
            return {**shape, "duration_s": fh.frames / sr, "frames": float(fh.frames)}
        running = _Running()
        for block in read_blocks(fh, path, block_frames):
            running.add(block.T)
    return {
        **shape,
        "duration_s": running.frames / sr,
        "frames": float(running.frames),
        **running.row(),
    }


def inspect_clip(
    path: Path | str,
    rel: str,
    expected_sha256: str | None = None,
    max_duration_s: float | None = None,
) -> dict[str, Any]:
    """Decode one file and measure it; never raises for a bad file (the row says what is wrong).

    ``max_duration_s``: a file whose header says it is longer is measured from the header only
    (see :func:`measure_audio`).
    """
    path = Path(path)
    row: dict[str, Any] = {
        "file_bytes": math.nan,
        "decodable": False,
        "decode_error": None,
        "truncation": None,
        "checksum_error": None,
        "duration_s": math.nan,
        "sample_rate": math.nan,
        "channels": math.nan,
        "frames": math.nan,
        "nonfinite_samples": math.nan,
        "nan_samples": math.nan,
        "rms_dbfs": math.nan,
        "clipping_ratio": math.nan,
        "audio_sha256": None,
    }
    if path.is_file():
        row["file_bytes"] = float(path.stat().st_size)
        if expected_sha256:
            actual = file_sha256(path)
            if actual != expected_sha256:
                row["checksum_error"] = (
                    f"checksum mismatch: file sha256 {actual[:12]}... differs from the raw "
                    f"manifest's {expected_sha256[:12]}... (changed after fetch?)"
                )
        row["truncation"] = truncation_reason(path)
    try:
        row.update(measure_audio(path, max_duration_s))
    except AudioDecodeError as exc:
        # libsndfile quotes the absolute path; the relative one reads better in a report.
        row["decode_error"] = exc.reason.replace(str(path), rel)
    return row


def _inspect_job(job: tuple[str, str, str | None, float | None]) -> dict[str, Any]:
    return inspect_clip(*job)


def _pool_context() -> multiprocessing.context.BaseContext:
    # Workers only run numpy/soundfile/hashlib, so forking is safe and skips re-importing torch
    # in every worker; elsewhere fall back to the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def decode_table(
    manifest: pd.DataFrame,
    root: Path,
    workers: int = 2,
    progress: bool = True,
    max_duration_s: float | None = None,
) -> pd.DataFrame:
    """Decode every file of ``manifest`` (paths relative to ``root``) into the per-clip table.

    Rows come back sorted by path, one per manifest row, with the columns of
    :data:`TABLE_COLUMNS`. ``workers`` > 1 decodes in a process pool. Files whose header says
    they are longer than ``max_duration_s`` are not decoded (see :func:`measure_audio`).
    """
    manifest = manifest.sort_values("path", kind="stable").reset_index(drop=True)
    jobs: list[tuple[str, str, str | None, float | None]] = []
    for rel, sha in zip(manifest["path"], manifest["sha256"], strict=True):
        expected = sha if isinstance(sha, str) and sha else None
        jobs.append((str(Path(root) / rel), str(rel), expected, max_duration_s))

    results: list[dict[str, Any] | None] = [None] * len(jobs)
    bar = progress_bar(
        total=len(jobs), desc="validate: decoding", unit="file", disable=not progress
    )
    try:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = _inspect_job(job)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
                futures = {pool.submit(_inspect_job, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
    finally:
        bar.close()

    measured = pd.DataFrame.from_records(
        results, columns=list(TABLE_COLUMNS[len(MANIFEST_COLUMNS) :])
    )
    table = pd.concat([manifest[list(MANIFEST_COLUMNS)], measured], axis=1)
    return table[list(TABLE_COLUMNS)]
