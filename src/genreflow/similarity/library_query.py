"""``genreflow similar FILE --index NAME``: the songs of a person's library nearest to FILE.

Checks run in the order of their cost, as for the corpus index: the library and its snapshot
must exist, its model must be the registered model asked for and the champion's version (a
cheap look-up the caller supplies), and only then is anything embedded. A query file whose
content is already in the library is recognised by its SHA-256: its stored vector is used (no
model load at all) and its own entries, under whatever names, are left out of the answer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.similarity.index import Neighbour, SongIndex, StaleIndexError, require_same_model
from genreflow.similarity.library import (
    COMPLETE_KEY,
    SEARCH_DIR,
    LibraryError,
    existing_library,
    rebuild_command,
)
from genreflow.similarity.library_store import LibraryJournal
from genreflow.similarity.query import SimilarSongs


def _load(layout: Layout, name: str, registered_model: str) -> tuple[SongIndex, LibraryJournal]:
    directory = existing_library(layout, name)
    rebuild = rebuild_command(name)
    index = SongIndex.load(directory / SEARCH_DIR, rebuild)
    if index.meta.count == 0:
        raise LibraryError(
            f"{directory}: library {name!r} holds no songs; add folders with "
            f"`genreflow index FOLDER... --name {name}`"
        )
    if index.meta.registered_model != registered_model:
        raise StaleIndexError(
            f"{directory}: built with model {index.meta.registered_model!r}, but the query "
            f"asks for {registered_model!r}; rebuild with {rebuild}"
        )
    return index, LibraryJournal(directory)


def _query_vector(
    journal: LibraryJournal,
    index: SongIndex,
    sha256: str,
    path: Path,
    load_model: Callable[[], Any],
) -> np.ndarray:
    """The library's stored vector of this content, else the champion's embedding of the file
    (after checking the loaded weights are the ones the library was built with)."""
    known = journal.song(sha256)
    model = journal.model()
    if (
        known is not None
        and model is not None
        and model.weights_sha256 == index.meta.weights_sha256
    ):
        return known.vector
    served = load_model()
    version = None if served.version is None else str(served.version)
    require_same_model(index.meta, index.directory, version, served.weights_sha256, index.rebuild)
    return np.asarray(served.analyse(path).embedding, dtype=np.float32)


def _without_own(found: list[Neighbour], sha256: str, k: int) -> list[Neighbour]:
    kept = [n for n in found if n.track_id != sha256][:k]
    return [replace(n, rank=i) for i, n in enumerate(kept, start=1)]


def find_similar_in_library(
    path: Path | str,
    layout: Layout,
    name: str,
    registered_model: str,
    k: int,
    champion_version: Callable[[], str | None],
    load_model: Callable[[], Any],
    err: TextIO | None = None,
) -> SimilarSongs:
    """The ``k`` songs of library ``name`` nearest to the file at ``path``.

    ``champion_version()`` is the registry's current champion version of
    ``registered_model`` (``None``: no champion); ``load_model()`` loads that champion as a
    :class:`~genreflow.serving.served.ServedModel`, called only when the file is new to the
    library. Raises a one-line :class:`~genreflow.core.errors.GenreflowError` for a missing,
    empty or stale library.
    """
    from genreflow.registry.aliases import CHAMPION_ALIAS, RegistryError

    path = Path(path)
    index, journal = _load(layout, name, registered_model)
    with journal:
        version = champion_version()
        if version is None:
            raise RegistryError(
                f"model {registered_model!r} has no @{CHAMPION_ALIAS} to embed the query with"
            )
        if version != index.meta.version:
            require_same_model(index.meta, index.directory, version, None, index.rebuild)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        sha256 = file_sha256(path)
        vector = _query_vector(journal, index, sha256, path, load_model)
        if journal.get(COMPLETE_KEY) != "1":
            print(
                f"genreflow similar: warning: the last run on library {name!r} did not finish; "
                f"files it embedded are searchable after {rebuild_command(name)} completes",
                file=err or sys.stderr,
            )
    own = sum(row["track_id"] == sha256 for row in index.catalogue)
    neighbours = _without_own(index.search(vector, k + own), sha256, k)
    return SimilarSongs(
        query=str(path), model_version=index.meta.version, neighbours=neighbours, index=name
    )
