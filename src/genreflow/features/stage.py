"""The ``spectrogramize`` stage: validated audio -> the float16 log-mel feature store.

Splits were assigned per track by ``validate``; here each track is cut into segments that
inherit its split, so no track ever has segments on both sides of a split. A long track
contributes ``features.excerpt`` excerpts (see :mod:`genreflow.features.excerpts`); which
excerpt each segment came from is listed in ``excerpts.csv`` next to the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genreflow.core.atomic import atomic_dir
from genreflow.core.config import ExcerptParams, FeatureParams, to_dict
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.core.progress import progress_bar
from genreflow.features.excerpts import (
    EXCERPT_COLUMNS,
    EXCERPTS_FILE,
    Excerpt,
    plan_excerpts,
    read_excerpt,
    track_length,
)
from genreflow.features.frontend import LogMelFrontend
from genreflow.features.store import INDEX_COLUMNS, INDEX_FILE, META_FILE, SEGMENTS_FILE
from genreflow.features.store_writer import CsvAppender, NpyAppender, update_from_file

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "genre", "track_id", "split")
SPLITS = ("train", "val", "test")
#: Tracks computed ahead of the store writer, per worker thread: enough to keep every worker
#: busy, few enough that memory does not grow with the corpus.
AHEAD_PER_WORKER = 2


#: A track's length as ``(frames, sample_rate)``, or None to read it from the file's header.
Length = tuple[int, int] | None


@dataclass(frozen=True)
class TrackSegments:
    """One track's segments and the excerpts they were cut from (in order)."""

    segments: np.ndarray  # float16 (n_segments, n_mels, frames)
    excerpts: tuple[tuple[Excerpt, int], ...]  # (excerpt, how many of the segments it gave)
    sample_rate: int  # the file's own rate, which excerpt frames count in


def track_segments(
    path: Path, frontend: LogMelFrontend, excerpt: ExcerptParams, length: Length = None
) -> TrackSegments:
    """One file -> its excerpts' float16 segments; errors name the file.

    Only the excerpts' frames are decoded, so a one-hour track costs ``count`` excerpts of
    memory, not an hour of audio.
    """
    frames, sr = length if length is not None else track_length(path)
    blocks, made = [], []
    for part in plan_excerpts(frames, sr, excerpt):
        wave = read_excerpt(path, part, frontend.sample_rate)
        with torch.inference_mode():
            block = frontend.segments(wave).numpy().astype(np.float16)
        blocks.append(block)
        made.append((part, block.shape[0]))
    segments = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return TrackSegments(segments, tuple(made), sr)


def _iter_segments(
    paths: Sequence[Path],
    params: FeatureParams,
    workers: int,
    lengths: Sequence[Length] | None = None,
) -> Iterator[TrackSegments]:
    """Segments of each file, in order, computed by ``workers`` threads.

    Threads, not processes: decoding and torch's kernels release the GIL, results need no
    pickling back to the parent, and nothing is forked from a process that may already run
    torch's thread pool. Each thread's torch work is single-threaded meanwhile, so
    ``workers`` is the number of cores used. ``lengths`` (from the validated manifest) spare
    reading each header again.

    At most :data:`AHEAD_PER_WORKER` tracks per worker are computed ahead of the consumer
    (``pool.map`` would submit every file at once, and finished tracks would pile up in memory
    while the store is written): memory stays bounded whatever the corpus size.
    """
    frontend = LogMelFrontend(params).eval()
    jobs = zip(paths, lengths if lengths is not None else [None] * len(paths), strict=True)

    def one(job: tuple[Path, Length]) -> TrackSegments:
        return track_segments(job[0], frontend, params.excerpt, job[1])

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers <= 1:
            yield from (one(job) for job in jobs)
            return
        pool = ThreadPoolExecutor(max_workers=workers)
        pending: deque[Future[TrackSegments]] = deque()
        try:
            for job in jobs:
                pending.append(pool.submit(one, job))
                if len(pending) >= AHEAD_PER_WORKER * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a bad file stops the stage now, not after the rest are computed
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        torch.set_num_threads(previous)


def manifest_lengths(manifest: pd.DataFrame) -> list[Length]:
    """Each track's decoded ``(frames, sample_rate)`` as validate measured it, where recorded.

    validate counted the frames by decoding the whole file; a compressed file's header may
    only estimate them. Rows without the columns fall back to the header (None).
    """
    if not {"frames", "sample_rate"} <= set(manifest.columns):
        return [None] * len(manifest)
    out: list[Length] = []
    for frames, sr in zip(manifest["frames"], manifest["sample_rate"], strict=True):
        ok = pd.notna(frames) and pd.notna(sr) and int(frames) > 0 and int(sr) > 0
        out.append((int(frames), int(sr)) if ok else None)
    return out


def excerpt_columns(track_id: str, split: str, path: str, made: TrackSegments) -> dict[str, list]:
    """Rows of ``excerpts.csv`` for one track, as columns: where each excerpt starts, and its
    segments."""
    firsts, first = [], 0
    for _, n in made.excerpts:
        firsts.append(first)
        first += n
    count = len(made.excerpts)
    return {
        "track_id": [track_id] * count,
        "split": [split] * count,
        "excerpt": list(range(count)),
        "start_s": [round(part.start / made.sample_rate, 6) for part, _ in made.excerpts],
        "length_s": [round(part.frames / made.sample_rate, 6) for part, _ in made.excerpts],
        "first_segment": firsts,
        "n_segments": [n for _, n in made.excerpts],
        "path": [path] * count,
    }


def read_validated_manifest(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: validated manifest missing; run `dvc repro validate`")
    frame = pd.read_csv(path, dtype={"track_id": str, "split": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    bad = sorted(set(frame["split"]) - {"train", "val", "test"})
    if bad:
        raise ValueError(f"{path}: unknown split value(s) {bad}")
    return frame


def content_digest(segments: np.ndarray, index: pd.DataFrame) -> str:
    """sha256 over the segment bytes and the index rows (the store's ``content_sha256``;
    :func:`spectrogramize` computes the same digest while it writes)."""
    digest = hashlib.sha256(np.ascontiguousarray(segments).view(np.uint8).data)
    digest.update(index.to_csv(index=False).encode())
    return digest.hexdigest()


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove what a killed earlier run left next to ``target``: the temporary directories of
    :func:`~genreflow.core.atomic.atomic_dir` (``.<name>.*.tmp``).

    An exception or Ctrl-C removes its own; SIGKILL, the OOM killer or a power cut cannot, and
    a half-written store can be gigabytes. DVC lets one stage run at a time in a repository,
    so none of them belongs to a live run.
    """
    stale = sorted(p for p in target.parent.glob(f".{target.name}.*.tmp") if p.is_dir())
    for path in stale:
        log.warning("removing %s, left by an interrupted run", path)
        shutil.rmtree(path, ignore_errors=True)
    return stale


def spectrogramize(
    params: FeatureParams,
    genres: Sequence[str],
    layout: Layout,
    progress: bool = True,
    figures: bool = True,
    workers: int = 1,
) -> dict:
    """Compute segments for every validated track and write ``data/features/`` atomically.

    ``workers`` (params ``runtime.workers``) threads share the files; the store is the same
    for any number. Each track's segments and rows go to disk as they are computed (see
    :mod:`genreflow.features.store_writer`), so memory does not grow with the corpus; the
    store appears only when complete, and a failed run removes what it wrote.
    """
    manifest = read_validated_manifest(layout.validated_manifest)
    unknown = sorted(set(manifest["genre"]) - set(genres))
    if unknown:
        raise ValueError(
            f"{layout.validated_manifest}: genre(s) {unknown} are not in data.genres {list(genres)}"
        )
    manifest_sha = file_sha256(layout.validated_manifest)
    remove_stale_temps(layout.features_dir)
    with atomic_dir(layout.features_dir) as tmp:
        summary = _write_store(tmp, manifest, params, genres, layout, progress, workers)
        meta = {
            "features": to_dict(params),
            "genres": list(genres),
            "shape": list(summary.shape),
            "dtype": "float16",
            "n_tracks": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
            "n_segments": {s: summary.n_segments[s] for s in SPLITS},
            "n_excerpts": {s: summary.n_excerpts[s] for s in SPLITS},
            "validated_manifest_sha256": manifest_sha,
            # Identity of the stored content: a resumable training checkpoint is only reused
            # for exactly these features.
            "content_sha256": summary.content_sha256,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info(
        "wrote %d segments of %d tracks to %s", summary.shape[0], len(manifest), layout.features_dir
    )

    if figures:
        from genreflow.features.figures import write_paper_figures

        write_paper_figures(manifest, params, layout)
    return meta


@dataclass(frozen=True)
class StoreSummary:
    """What ``meta.json`` says about the written store."""

    shape: tuple[int, ...]
    n_segments: Counter[str]
    n_excerpts: Counter[str]
    content_sha256: str


def _write_store(
    directory: Path,
    manifest: pd.DataFrame,
    params: FeatureParams,
    genres: Sequence[str],
    layout: Layout,
    progress: bool,
    workers: int,
) -> StoreSummary:
    """Stream every track's segments, index rows and excerpt rows into ``directory``."""
    label_of = {g: i for i, g in enumerate(genres)}
    paths = [layout.absolute(p) for p in manifest["path"]]
    workers = max(1, min(workers, os.cpu_count() or 1, len(paths)))
    n_segments: Counter[str] = Counter()
    n_excerpts: Counter[str] = Counter()
    stream = _iter_segments(paths, params, workers, manifest_lengths(manifest))
    with (
        contextlib.closing(stream),
        NpyAppender(directory / SEGMENTS_FILE, np.float16, (0, params.n_mels, 0)) as segments,
        CsvAppender(directory / INDEX_FILE, INDEX_COLUMNS) as index,
        CsvAppender(directory / EXCERPTS_FILE, EXCERPT_COLUMNS) as table,
    ):
        bar = progress_bar(
            stream, total=len(paths), desc="spectrogramize", unit="clip", disable=not progress
        )
        for track, made in zip(manifest.itertuples(index=False), bar, strict=True):
            n = made.segments.shape[0]
            segments.append(made.segments)
            # Segments are numbered through the track, across its excerpts: (track_id, segment)
            # stays unique, and excerpts.csv says which excerpt each range came from.
            index.append(
                {
                    "track_id": [track.track_id] * n,
                    "genre": [track.genre] * n,
                    "label": [label_of[track.genre]] * n,
                    "split": [track.split] * n,
                    "segment": list(range(n)),
                    "path": [track.path] * n,
                }
            )
            table.append(excerpt_columns(track.track_id, track.split, track.path, made))
            n_segments[track.split] += n
            n_excerpts[track.split] += len(made.excerpts)
    digest = segments.sha256.copy()
    update_from_file(digest, directory / INDEX_FILE)  # content_digest's order: segments, index
    return StoreSummary(segments.shape, n_segments, n_excerpts, digest.hexdigest())
