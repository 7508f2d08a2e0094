"""The ``spectrogramize`` stage: validated audio -> the float16 log-mel feature store.

Splits were assigned per track by ``validate``; here each track is cut into segments that
inherit its split, so no track ever has segments on both sides of a split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from genreflow.atomic import atomic_dir
from genreflow.audio import load_mono
from genreflow.config import FeatureParams, to_dict
from genreflow.features.frontend import LogMelFrontend
from genreflow.features.store import INDEX_COLUMNS, INDEX_FILE, META_FILE, SEGMENTS_FILE
from genreflow.paths import Layout

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "genre", "track_id", "split")


def clip_segments(path: Path, frontend: LogMelFrontend) -> np.ndarray:
    """One file -> float16 ``(n_segments, n_mels, frames)``; errors name the file."""
    wave = load_mono(path, frontend.sample_rate)
    with torch.inference_mode():
        return frontend.segments(wave).numpy().astype(np.float16)


def _iter_segments(
    paths: Sequence[Path], params: FeatureParams, workers: int
) -> Iterator[np.ndarray]:
    """Segments of each file, in order, computed by ``workers`` threads.

    Threads, not processes: decoding and torch's kernels release the GIL, results need no
    pickling back to the parent, and nothing is forked from a process that may already run
    torch's thread pool. Each thread's torch work is single-threaded meanwhile, so
    ``workers`` is the number of cores used.
    """
    frontend = LogMelFrontend(params).eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers <= 1:
            yield from (clip_segments(p, frontend) for p in paths)
            return
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            yield from pool.map(lambda p: clip_segments(p, frontend), paths)
        finally:  # a bad file stops the stage now, not after the rest are computed
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        torch.set_num_threads(previous)


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
    stream = _iter_segments(paths, params, workers)
    bar = tqdm(stream, total=len(paths), desc="spectrogramize", unit="clip", disable=not progress)
    for track, block in zip(manifest.itertuples(index=False), bar, strict=True):
        blocks.append(block)
        rows.extend(
            {
                "track_id": track.track_id,
                "genre": track.genre,
                "label": label_of[track.genre],
                "split": track.split,
                "segment": k,
                "path": track.path,
            }
            for k in range(block.shape[0])
        )
    segments = np.concatenate(blocks) if blocks else np.zeros((0, params.n_mels, 0), np.float16)
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    manifest_sha = hashlib.sha256(layout.validated_manifest.read_bytes()).hexdigest()
    meta = {
        "features": to_dict(params),
        "genres": list(genres),
        "shape": list(segments.shape),
        "dtype": "float16",
        "n_tracks": {s: int((manifest["split"] == s).sum()) for s in ("train", "val", "test")},
        "n_segments": {s: int((index["split"] == s).sum()) for s in ("train", "val", "test")},
        "validated_manifest_sha256": manifest_sha,
        # Identity of the stored content: a resumable training checkpoint is only reused
        # for exactly these features.
        "content_sha256": content_digest(segments, index),
    }
    with atomic_dir(layout.features_dir) as tmp:
        np.save(tmp / SEGMENTS_FILE, segments)
        index.to_csv(tmp / INDEX_FILE, index=False)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %d segments of %d tracks to %s", len(index), len(manifest), layout.features_dir)

    if figures:
        from genreflow.features.figures import write_paper_figures

        write_paper_figures(manifest, params, layout)
    return meta
