"""The raw-data manifest: one row per fetched file, with its size and content hash.

Downstream stages (validate first) read this instead of walking ``data/raw`` so that what
was fetched is explicit, diffable in git/DVC, and checkable: a file edited after fetch no
longer matches its ``sha256``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

from tqdm import tqdm

from genreflow.core.hashing import file_sha256

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "genre", "track_id", "bytes", "sha256")


class ManifestRow(TypedDict):
    path: str  # POSIX, relative to the repository root, e.g. data/raw/genres/blues/blues.00000.wav
    genre: str
    track_id: str  # file stem, e.g. blues.00000
    bytes: int
    sha256: str


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def scan_raw_dir(raw_dir: Path, rel_prefix: str, progress: bool = True) -> list[ManifestRow]:
    """Rows for every non-hidden file under ``raw_dir/genres/<genre>/``, sorted by path.

    ``rel_prefix`` is where ``raw_dir`` will live relative to the repository root once it is
    moved into place (``data/raw``): the scan runs on the temporary directory that
    :func:`genreflow.core.atomic.atomic_dir` later renames, so paths cannot be taken from it.
    """
    genres_dir = Path(raw_dir) / "genres"
    files: list[tuple[str, Path]] = []
    if genres_dir.is_dir():
        for genre_dir in sorted(genres_dir.iterdir()):
            if not genre_dir.is_dir() or _is_hidden(genre_dir.name):
                continue
            for f in sorted(genre_dir.iterdir()):
                if f.is_file() and not _is_hidden(f.name):
                    files.append((genre_dir.name, f))
    prefix = rel_prefix.strip("/")
    rows: list[ManifestRow] = []
    for genre, f in tqdm(files, desc="hash raw files", unit="file", disable=not progress):
        rel = f.relative_to(raw_dir).as_posix()
        rows.append(
            ManifestRow(
                path=f"{prefix}/{rel}" if prefix else rel,
                genre=genre,
                track_id=f.stem,
                bytes=f.stat().st_size,
                sha256=file_sha256(f),
            )
        )
    rows.sort(key=lambda r: r["path"])
    return rows


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write ``rows`` as CSV with :data:`MANIFEST_COLUMNS` (LF line ends, stable across OSes)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def read_manifest(path: Path) -> list[ManifestRow]:
    """Parse a manifest written by :func:`write_manifest`; a wrong header is an error."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise ValueError(
                f"{path}: manifest columns are {reader.fieldnames}, "
                f"expected {list(MANIFEST_COLUMNS)}"
            )
        return [
            ManifestRow(
                path=r["path"],
                genre=r["genre"],
                track_id=r["track_id"],
                bytes=int(r["bytes"]),
                sha256=r["sha256"],
            )
            for r in reader
        ]
