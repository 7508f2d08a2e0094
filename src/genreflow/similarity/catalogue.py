"""The songs an index covers: one row per track of the validated corpus.

Read from ``data/validated/manifest.csv`` (as evaluate reads it: ``track_id``, ``genre``,
``split``, ``path``, paths relative to the repository root). A track is indexed once, even if
a later manifest lists it on several rows (as excerpts of a long track would be). The digest of
the manifest goes into the index's meta, so a query can tell the corpus changed under it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from genreflow.core.errors import GenreflowError
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout

if TYPE_CHECKING:  # imported where a corpus is read: `similar` needs only manifest_digest
    import pandas as pd

COLUMNS = ("track_id", "path", "genre", "split")
QUERY_SPLIT = "test"  # retrieval metrics: test clips query the others


class CorpusError(GenreflowError, ValueError):
    """The validated manifest is missing, empty or lacks a column the index needs."""


def manifest_digest(path: Path) -> str:
    """sha256 of the manifest's bytes: what the index was built from."""
    return file_sha256(path)


def read_corpus(layout: Layout) -> pd.DataFrame:
    """``track_id, path, genre, split`` per validated track, in manifest order.

    ``path`` stays as the manifest stores it (relative to the root unless absolute), so the
    catalogue means the same in any checkout; :func:`absolute_paths` resolves it.
    """
    manifest = layout.validated_manifest
    if not manifest.is_file():
        raise CorpusError(
            f"{manifest}: no validated manifest, so there is no corpus to index; run "
            "`dvc repro validate` (or `genreflow validate`)"
        )
    import pandas as pd

    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CorpusError(f"{manifest}: lacks column(s) {missing}; run `dvc repro validate`")
    rows = frame.loc[:, list(COLUMNS)].drop_duplicates("track_id").reset_index(drop=True)
    if rows.empty:
        raise CorpusError(f"{manifest}: lists no track; there is nothing to index")
    return rows


def absolute_paths(catalogue: pd.DataFrame, layout: Layout) -> list[Path]:
    """Each row's audio file, resolved against the repository root."""
    return [Path(p) if Path(p).is_absolute() else layout.absolute(p) for p in catalogue["path"]]
