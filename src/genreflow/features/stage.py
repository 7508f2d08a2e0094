"""The ``spectrogramize`` stage: validated audio -> the float16 log-mel feature store.

Splits were assigned per track by ``validate``; here each track is cut into segments that
inherit its split, so no track ever has segments on both sides of a split. A long track
contributes ``features.excerpt`` excerpts (see :mod:`genreflow.features.excerpts`); which
excerpt each segment came from is listed in ``excerpts.csv`` next to the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from genreflow.core.atomic import atomic_dir
from genreflow.core.config import ExcerptParams, FeatureParams, to_dict
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
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

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "genre", "track_id", "split")


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
    """
    frontend = LogMelFrontend(params).eval()
    jobs = list(zip(paths, lengths if lengths is not None else [None] * len(paths), strict=True))

    def one(job: tuple[Path, Length]) -> TrackSegments:
        return track_segments(job[0], frontend, params.excerpt, job[1])

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers <= 1:
            yield from (one(job) for job in jobs)
            return
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            yield from pool.map(one, jobs)
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


def excerpt_rows(track_id: str, split: str, path: str, made: TrackSegments) -> list[dict]:
    """Rows of ``excerpts.csv`` for one track: where each excerpt starts, and its segments."""
    rows, first = [], 0
    for k, (part, n) in enumerate(made.excerpts):
        rows.append(
            {
                "track_id": track_id,
                "split": split,
                "excerpt": k,
                "start_s": round(part.start / made.sample_rate, 6),
                "length_s": round(part.frames / made.sample_rate, 6),
                "first_segment": first,
                "n_segments": n,
                "path": path,
            }
        )
        first += n
    return rows


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
    """sha256 over the segment bytes and the index rows."""
    digest = hashlib.sha256(np.ascontiguousarray(segments).view(np.uint8).data)
    digest.update(index.to_csv(index=False).encode())
    return digest.hexdigest()


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
    for any number.
    """
    manifest = read_validated_manifest(layout.validated_manifest)
    unknown = sorted(set(manifest["genre"]) - set(genres))
    if unknown:
        raise ValueError(
            f"{layout.validated_manifest}: genre(s) {unknown} are not in data.genres {list(genres)}"
        )
    label_of = {g: i for i, g in enumerate(genres)}
    paths = [layout.absolute(p) for p in manifest["path"]]
    workers = max(1, min(workers, os.cpu_count() or 1, len(paths)))

    blocks: list[np.ndarray] = []
    rows: list[dict] = []
    excerpts: list[dict] = []
    stream = _iter_segments(paths, params, workers, manifest_lengths(manifest))
    bar = tqdm(stream, total=len(paths), desc="spectrogramize", unit="clip", disable=not progress)
    for track, made in zip(manifest.itertuples(index=False), bar, strict=True):
        blocks.append(made.segments)
        # Segments are numbered through the track, across its excerpts: (track_id, segment)
        # stays unique, and excerpts.csv says which excerpt each range came from.
        rows.extend(
            {
                "track_id": track.track_id,
                "genre": track.genre,
                "label": label_of[track.genre],
                "split": track.split,
                "segment": k,
                "path": track.path,
            }
            for k in range(made.segments.shape[0])
        )
        excerpts.extend(excerpt_rows(track.track_id, track.split, track.path, made))
    segments = np.concatenate(blocks) if blocks else np.zeros((0, params.n_mels, 0), np.float16)
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    table = pd.DataFrame(excerpts, columns=EXCERPT_COLUMNS)
    manifest_sha = file_sha256(layout.validated_manifest)
    meta = {
        "features": to_dict(params),
        "genres": list(genres),
        "shape": list(segments.shape),
        "dtype": "float16",
        "n_tracks": {s: int((manifest["split"] == s).sum()) for s in ("train", "val", "test")},
        "n_segments": {s: int((index["split"] == s).sum()) for s in ("train", "val", "test")},
        "n_excerpts": {s: int((table["split"] == s).sum()) for s in ("train", "val", "test")},
        "validated_manifest_sha256": manifest_sha,
        # Identity of the stored content: a resumable training checkpoint is only reused
        # for exactly these features.
        "content_sha256": content_digest(segments, index),
    }
    with atomic_dir(layout.features_dir) as tmp:
        np.save(tmp / SEGMENTS_FILE, segments)
        index.to_csv(tmp / INDEX_FILE, index=False)
        table.to_csv(tmp / EXCERPTS_FILE, index=False)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %d segments of %d tracks to %s", len(index), len(manifest), layout.features_dir)

    if figures:
        from genreflow.features.figures import write_paper_figures

        write_paper_figures(manifest, params, layout)
    return meta
