"""``genreflow similar``: the songs of the corpus nearest to one audio file.

The order of checks is the order of cost: the index must exist (no model load for a missing
index), the corpus must be the one indexed, the champion must be the version the index was
built with (a registry look-up), and only then is the model loaded, its identity checked
again, and the file embedded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genreflow.core.config import Params
from genreflow.core.paths import Layout
from genreflow.similarity.catalogue import manifest_digest
from genreflow.similarity.index import (
    REBUILD,
    Neighbour,
    SongIndex,
    StaleIndexError,
    require_same_model,
)


@dataclass(frozen=True)
class SimilarSongs:
    """A query's answer: the file, the model version that embedded it, its neighbours."""

    query: str
    model_version: str | None
    neighbours: list[Neighbour]
    index: str = "corpus"  # "corpus" (the validated corpus) or a library's name

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "index": self.index,
            "model_version": self.model_version,
            "neighbours": [n.to_dict() for n in self.neighbours],
        }


def _check_corpus(index: SongIndex, layout: Layout) -> None:
    """Refuse an index built from another validated manifest than the one here now."""
    manifest = layout.validated_manifest
    if manifest.is_file() and manifest_digest(manifest) != index.meta.manifest_sha256:
        raise StaleIndexError(
            f"{index.directory}: built from another {manifest} than the one here now (the "
            f"validated corpus changed); rebuild with {REBUILD}"
        )


def champion_version(layout: Layout, registered_model: str) -> str | None:
    """The registry's champion version of ``registered_model``: one read-only SELECT on a
    SQLite store (no MLflow import, :mod:`genreflow.serving.registry_read`), else MLflow's
    client (an MLflow server)."""
    from genreflow.serving.fast_champion import sqlite_champion
    from genreflow.serving.registry_read import UnverifiableRegistry

    try:
        record = sqlite_champion(layout, registered_model)
    except UnverifiableRegistry:
        from genreflow.registry.aliases import CHAMPION_ALIAS, alias_version
        from genreflow.tracking.store import set_tracking

        set_tracking(layout)
        return alias_version(registered_model, CHAMPION_ALIAS)
    return None if record is None else record.version


def find_similar(path: Path | str, layout: Layout, params: Params, k: int) -> SimilarSongs:
    """The ``k`` corpus songs nearest to the file at ``path``, by the champion's vectors.

    Raises a one-line :class:`~genreflow.core.errors.GenreflowError` for a missing or stale index
    and (from the decoder) for a file that cannot be read. MLflow is imported only when the
    champion's local copy is not current (or the store is not SQLite)."""
    from genreflow.registry.aliases import CHAMPION_ALIAS, RegistryError
    from genreflow.serving.predict import load_champion_model

    index = SongIndex.load(layout.similarity_index)
    _check_corpus(index, layout)
    name = params.tracking.registered_model
    if name != index.meta.registered_model:
        raise StaleIndexError(
            f"{index.directory}: built for model {index.meta.registered_model!r}, but params "
            f"tracking.registered_model is {name!r}; rebuild with {REBUILD}"
        )
    champion = champion_version(layout, name)
    if champion is None:
        raise RegistryError(f"model {name!r} has no @{CHAMPION_ALIAS} to embed the query with")
    if champion != index.meta.version:  # fail before the (slow) model load
        require_same_model(index.meta, index.directory, champion, None)
    served = load_champion_model(layout, name)  # its verified local copy when current
    version = str(served.version) if served.version is not None else None
    require_same_model(index.meta, index.directory, version, served.weights_sha256)
    vector = served.analyse(path).embedding
    neighbours = [
        replace(
            n, path=str(Path(n.path) if Path(n.path).is_absolute() else layout.absolute(n.path))
        )
        for n in index.search(vector, k)
    ]
    return SimilarSongs(query=str(path), model_version=index.meta.version, neighbours=neighbours)


def format_table(found: SimilarSongs) -> list[str]:
    """``genreflow similar``'s table: a heading, then rank, distance, genre and path."""
    width = max([len("genre"), *(len(n.genre) for n in found.neighbours)])
    lines = [
        f"# {found.query} in {found.index} (model version {found.model_version}; "
        "distance = 1 - cosine)",
        f"{'rank':>4}  {'distance':>8}  {'genre':<{width}}  path",
    ]
    lines += [
        f"{n.rank:>4}  {n.distance:>8.4f}  {n.genre:<{width}}  {n.path}" for n in found.neighbours
    ]
    return lines
