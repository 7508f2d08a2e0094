"""The raw-data manifest: one row per fetched file, with its size and content hash.

Downstream stages (validate first) read this instead of walking ``data/raw`` so that what
was fetched is explicit, diffable in git/DVC, and checkable: a file edited after fetch no
longer matches its ``sha256``.

A source that ships its own split (FMA's ``('set', 'split')``) adds one column,
``source_split`` (train / val / test), for validate to use. Only such a source writes it, so
every other manifest keeps its bytes, and a manifest from before the column still reads.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NotRequired, TypedDict

from genreflow.core.hashing import file_sha256
from genreflow.core.progress import progress_bar

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "genre", "track_id", "bytes", "sha256")
#: The optional last column: the split a source ships (train / val / test).
SOURCE_SPLIT = "source_split"


class ManifestRow(TypedDict):
    path: str  # POSIX, relative to the repository root, e.g. data/raw/genres/blues/blues.00000.wav
    genre: str
    track_id: str  # file stem, e.g. blues.00000
    bytes: int
    sha256: str
    source_split: NotRequired[str]  # train / val / test, from a source that ships a split


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
    for genre, f in progress_bar(files, desc="hash raw files", unit="file", disable=not progress):
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


def with_source_split(rows: Iterable[ManifestRow], splits: Mapping[str, str]) -> list[ManifestRow]:
    """``rows`` with ``source_split`` from ``splits`` (track id -> split); every row needs one."""
    out: list[ManifestRow] = []
    for row in rows:
        if row["track_id"] not in splits:
            raise KeyError(f"no source split for track {row['track_id']!r} ({row['path']})")
        out.append(ManifestRow(**row, source_split=splits[row["track_id"]]))
    return out


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write ``rows`` as CSV with :data:`MANIFEST_COLUMNS` (LF line ends, stable across OSes),
    plus ``source_split`` when the rows carry it (all of them, or none)."""
    rows = list(rows)
    with_split = [SOURCE_SPLIT in r for r in rows]
    if any(with_split) and not all(with_split):
        raise ValueError(f"{path}: some rows have a {SOURCE_SPLIT} and some do not")
    columns = [*MANIFEST_COLUMNS, *([SOURCE_SPLIT] if any(with_split) else [])]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def read_manifest(path: Path) -> list[ManifestRow]:
    """Parse a manifest written by :func:`write_manifest`; a wrong header is an error."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = tuple(reader.fieldnames or ())
        if columns not in (MANIFEST_COLUMNS, (*MANIFEST_COLUMNS, SOURCE_SPLIT)):
            raise ValueError(
                f"{path}: manifest columns are {reader.fieldnames}, "
                f"expected {list(MANIFEST_COLUMNS)} (and optionally {SOURCE_SPLIT!r})"
            )
        rows = []
        for r in reader:
            row = ManifestRow(
                path=r["path"],
                genre=r["genre"],
                track_id=r["track_id"],
                bytes=int(r["bytes"]),
                sha256=r["sha256"],
            )
            if SOURCE_SPLIT in columns:
                row["source_split"] = r[SOURCE_SPLIT]
            rows.append(row)
        return rows
