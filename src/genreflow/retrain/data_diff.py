"""Which clips a retrain trained on that the base revision did not, per genre.

``data/raw/manifest.csv`` lists every fetched file with its sha256, so comparing the
workspace's manifest with the base revision's says exactly what new data a retrain saw: clips
added, removed, and changed (same path, other bytes). The base manifest is a DVC output, not a
git file, so it is read through ``dvc.api`` at that revision: from the local cache, or from the
DVC remote when the cache lacks it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from genreflow.sources.manifest import ManifestRow, read_manifest


@dataclass(frozen=True)
class GenreChange:
    """How one genre's clips differ between the base and the workspace (file names)."""

    genre: str
    before: int
    after: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def touched(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_manifests(
    base: Iterable[ManifestRow], current: Iterable[ManifestRow]
) -> list[GenreChange]:
    """Per-genre differences, by path, for every genre in either manifest (sorted)."""
    old = {r["path"]: r for r in base}
    new = {r["path"]: r for r in current}
    genres = sorted({r["genre"] for r in (*old.values(), *new.values())})

    def names(paths: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(Path(p).name for p in paths))

    changes = []
    for genre in genres:
        o = {p for p, r in old.items() if r["genre"] == genre}
        n = {p for p, r in new.items() if r["genre"] == genre}
        edited = {p for p in o & n if old[p]["sha256"] != new[p]["sha256"]}
        changes.append(
            GenreChange(genre, len(o), len(n), names(n - o), names(o - n), names(edited))
        )
    return changes


def read_base_manifest(root: Path, rev: str, rel_path: str) -> list[ManifestRow]:
    """The manifest at ``rel_path`` as of git revision ``rev`` (a DVC output at that rev).

    Raises whatever DVC raises when that revision has no such output or its data is in
    neither the cache nor the remote; the report shows that line instead of the diff.
    """
    import dvc.api

    with dvc.api.open(rel_path, repo=str(root), rev=rev, mode="rb") as src:
        data = src.read()
    with tempfile.TemporaryDirectory(prefix="genreflow-base-") as tmp:
        path = Path(tmp) / "manifest.csv"
        path.write_bytes(data)
        return read_manifest(path)
