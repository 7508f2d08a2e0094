"""Deterministic excerpts of long tracks: which frames of a file become segments.

People hold music as full-length tracks (3-5 minutes, sometimes an hour), while the model
learns from 3-s segments. Taking every segment of a long track would let one track outweigh
dozens of clips and hold minutes of audio in memory, so ``spectrogramize`` takes
``features.excerpt.count`` excerpts of ``features.excerpt.length_s`` from each track longer
than ``count * length_s``, and uses a shorter track whole (the excerpts would overlap it
anyway; 12-s synthetic and 30-s GTZAN clips keep exactly the features they had before).

Excerpts are planned in the file's own sample frames from its length alone, so the same file
always gives the same excerpts; only those frames are decoded (a frame-range read), and the
excerpt is down-mixed and resampled on its own. Every excerpt inherits the track's id and
split: the split stays per track, and scoring stays per track.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from genreflow.audio import DECODE_ERRORS, AudioDecodeError, load_mono, to_mono, undecodable
from genreflow.core.config import ExcerptParams

#: The file in ``data/features/`` that lists, per track, the excerpts its segments came from.
EXCERPTS_FILE = "excerpts.csv"
EXCERPT_COLUMNS = [
    "track_id",
    "split",
    "excerpt",
    "start_s",
    "length_s",
    "first_segment",
    "n_segments",
    "path",
]


@dataclass(frozen=True)
class Excerpt:
    """Frames ``[start, start + frames)`` of a file, at the file's own sample rate."""

    start: int
    frames: int
    whole: bool = False  # the whole track: decoded exactly as before excerpts existed


def plan_excerpts(total_frames: int, sample_rate: int, params: ExcerptParams) -> list[Excerpt]:
    """The excerpts of a track ``total_frames`` long at ``sample_rate``; a pure function.

    ``spread``: the track is cut into ``count`` equal parts and one excerpt is centred in each,
    so intros, middles and endings are all seen without the fade-out's last seconds;
    ``start``: back to back from the first frame; ``middle``: back to back, centred on the
    middle. When ``total_frames <= count * length`` the track is one whole "excerpt".
    """
    length = max(1, int(round(params.length_s * sample_rate)))
    count = params.count
    if total_frames <= count * length:
        return [Excerpt(0, total_frames, whole=True)]
    if params.position == "start":
        starts = [i * length for i in range(count)]
    elif params.position == "middle":
        first = (total_frames - count * length) // 2
        starts = [first + i * length for i in range(count)]
    else:  # spread
        starts = [(2 * i + 1) * total_frames // (2 * count) - length // 2 for i in range(count)]
    last = total_frames - length
    return [Excerpt(min(max(0, s), last), length) for s in starts]


def track_length(path: Path | str) -> tuple[int, int]:
    """``(frames, sample_rate)`` from the file's header, without decoding it."""
    try:
        info = sf.info(str(path))
    except DECODE_ERRORS as exc:
        raise undecodable(path, exc) from exc
    return int(info.frames), int(info.samplerate)


def read_excerpt(path: Path | str, excerpt: Excerpt, sample_rate: int) -> torch.Tensor:
    """One excerpt, down-mixed and resampled to ``sample_rate``: only its frames are decoded.

    A whole track goes through :func:`genreflow.audio.load_mono`, the path every clip took
    before excerpts existed, so its features are bit-identical to before.
    """
    if excerpt.whole:
        return load_mono(path, sample_rate)
    try:
        data, sr = sf.read(
            str(path),
            start=excerpt.start,
            frames=excerpt.frames,
            dtype="float32",
            always_2d=True,
        )
    except DECODE_ERRORS as exc:
        raise undecodable(path, exc) from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(path, f"no audio at frames {excerpt.start}+{excerpt.frames}")
    mono = torch.from_numpy(np.ascontiguousarray(to_mono(data.T), dtype=np.float32))
    if sr != sample_rate:
        mono = AF.resample(mono, orig_freq=sr, new_freq=sample_rate)
    return mono


def first_excerpt(path: Path | str, excerpt: ExcerptParams, sample_rate: int) -> torch.Tensor:
    """The track's first excerpt (the whole of a short clip): what a figure of it shows."""
    frames, sr = track_length(path)
    return read_excerpt(path, plan_excerpts(frames, sr, excerpt)[0], sample_rate)
