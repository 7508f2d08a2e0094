"""The on-disk similar-song index: faiss vectors, a catalogue and the model they came from.

A directory (``Layout.similarity_index``) written in one atomic swap, holding:

- ``index.faiss``: the song vectors in a faiss index. They are L2-normalised, so the inner
  product is the cosine similarity, and ``IndexFlatIP`` is an exact cosine search. Which
  type a catalogue gets, how it is built and searched is :mod:`genreflow.similarity.ann`'s:
  ``auto`` (the default) stays exact up to a size ``bench/bench_ann.py`` measured, and
  becomes an approximate index above it.
- ``catalogue.csv``: ``track_id, path, genre, split`` per vector, in index order.
- ``meta.json``: the registered model and version, the SHA-256 of the weights that made the
  vectors, dim, count, index type, the manifest digest and its retrieval scores.

The directory is a DVC output, so it holds content only: the same corpus embedded by the same
weights gives the same bytes (no build time, no random logged-model id; approximate indexes
are built on one thread with a fixed seed, :func:`~genreflow.similarity.ann.faiss_index`).
A vector is only comparable with vectors from the same model, so every query checks the
version and the weights it embedded with against ``meta.json`` (:func:`require_same_model`)
and refuses a mismatch, naming the command that rebuilds the index.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genreflow.core.atomic import atomic_dir
from genreflow.core.errors import GenreflowError
from genreflow.similarity.ann import (  # noqa: F401 (IndexType, load_faiss: re-exported)
    IndexType,
    faiss_index,
    load_faiss,
    one_thread,
    resolve_index_type,
    tune_for_search,
)

if TYPE_CHECKING:  # pandas only writes catalogues; a query reads one with csv (no pandas import)
    import pandas as pd

INDEX_FILE = "index.faiss"
CATALOGUE_FILE = "catalogue.csv"
META_FILE = "meta.json"
REBUILD = "`genreflow index` (or `dvc repro evaluate`)"


class SearchIndexError(GenreflowError, RuntimeError):
    """Base of the index's user errors."""


class MissingIndexError(SearchIndexError):
    """No index has been built in this repository (or it was built with no champion)."""


class StaleIndexError(SearchIndexError):
    """The index was built with another model (or corpus) than the one in use now."""


class CorruptIndexError(SearchIndexError):
    """The index directory's files disagree with each other."""


@dataclass(frozen=True)
class IndexMeta:
    """What ``meta.json`` records about an index."""

    registered_model: str
    model_uri: str | None  # pinned to a version: models:/<name>/<version>
    version: str | None  # None: built when the registry had no champion (an empty index)
    # what made the vectors, by content: the same trained weights give the same digest
    # (ServedModel.weights_sha256), whichever run or logged model they were saved under
    weights_sha256: str | None
    dim: int
    count: int
    index_type: str
    manifest_sha256: str | None
    faiss_version: str
    hnsw_m: int | None = None  # the HNSW graph degree (index_type hnsw only)
    retrieval: dict[str, Any] | None = field(default=None)

    @classmethod
    def read(cls, path: Path, rebuild: str = REBUILD) -> IndexMeta:
        try:
            raw = json.loads(Path(path).read_text())
            return cls(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise CorruptIndexError(
                f"{path}: unreadable index meta ({exc}); rebuild with {rebuild}"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Neighbour:
    """One search hit; ``distance`` is the cosine distance, 1 - cosine similarity."""

    rank: int
    distance: float
    track_id: str
    genre: str
    split: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_index(
    directory: Path, meta: IndexMeta, vectors: np.ndarray | None, catalogue: pd.DataFrame | None
) -> IndexMeta:
    """Write meta, catalogue and index into ``directory`` in one atomic swap.

    With ``vectors=None`` (no champion to embed with) only ``meta.json`` is written: the
    directory exists (it is a DVC output) and a query says why it cannot search.
    ``meta.index_type`` ``auto`` is resolved by the vector count (:func:`resolved_meta`), so
    ``meta.json`` names the type a query searches. Returns the meta written.
    """
    faiss = load_faiss()

    count = 0 if vectors is None else len(vectors)
    meta = resolved_meta(meta, count)
    with atomic_dir(Path(directory)) as tmp:
        if vectors is not None and catalogue is not None:
            if len(catalogue) != len(vectors):
                raise ValueError(f"{len(vectors)} vectors but {len(catalogue)} catalogue rows")
            index = faiss_index(vectors, meta.index_type, meta.hnsw_m or 32)
            faiss.write_index(index, str(tmp / INDEX_FILE))
            catalogue.to_csv(tmp / CATALOGUE_FILE, index=False)
        (tmp / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
    return meta


def resolved_meta(meta: IndexMeta, count: int) -> IndexMeta:
    """``meta`` with a concrete index type for ``count`` vectors (``auto`` chosen by size);
    ``hnsw_m`` kept only for HNSW (32 when an ``auto`` HNSW had none)."""
    kind = resolve_index_type(meta.index_type, count)
    hnsw_m = (meta.hnsw_m or 32) if kind == "hnsw" else None
    return replace(meta, index_type=kind, hnsw_m=hnsw_m)


def index_digest(directory: Path) -> str | None:
    """SHA-256 over the index directory's file names and bytes; ``None`` when it is absent.

    What tells whether a rebuild changed anything: the files hold content only, so equal
    digests mean the same index.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def read_meta(directory: Path, rebuild: str = REBUILD) -> IndexMeta:
    """The meta of the index in ``directory``; :class:`MissingIndexError` if there is none."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise MissingIndexError(
            f"{directory}: no similar-song index has been built here; build it with {rebuild}"
        )
    return IndexMeta.read(path, rebuild)


def read_catalogue(path: Path) -> tuple[dict[str, str], ...]:
    """The rows of a ``catalogue.csv`` as strings (what ``DataFrame.to_csv`` wrote), read with
    the csv module: a cold ``genreflow similar`` then never imports pandas (0.4 s)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return tuple(csv.DictReader(fh))


@dataclass(frozen=True)
class SongIndex:
    """A loaded index: search it with a vector from the model ``meta`` names."""

    directory: Path
    meta: IndexMeta
    index: Any  # faiss.Index
    catalogue: tuple[dict[str, str], ...]  # catalogue.csv's rows, in index order
    rebuild: str = REBUILD  # the command that rebuilds this index, for error lines

    @classmethod
    def load(cls, directory: Path, rebuild: str = REBUILD) -> SongIndex:
        """Load and cross-check the index in ``directory``; every error names ``rebuild``, the
        command that rebuilds it (the corpus index's by default, a library's for a library)."""
        directory = Path(directory)
        meta = read_meta(directory, rebuild)
        if meta.version is None:
            raise MissingIndexError(
                f"{directory}: the index is empty: it was built when model "
                f"{meta.registered_model!r} had no champion; promote a version "
                "(`genreflow promote VERSION`) or rebuild with " + rebuild
            )
        faiss = load_faiss()
        try:
            index = faiss.read_index(str(directory / INDEX_FILE))
            catalogue = read_catalogue(directory / CATALOGUE_FILE)
        except (OSError, RuntimeError, ValueError) as exc:
            raise CorruptIndexError(
                f"{directory}: unreadable index ({exc}); rebuild with {rebuild}"
            ) from exc
        if not index.ntotal == len(catalogue) == meta.count or index.d != meta.dim:
            raise CorruptIndexError(
                f"{directory}: index holds {index.ntotal} x {index.d}, catalogue "
                f"{len(catalogue)} rows, meta says {meta.count} x {meta.dim}; rebuild with "
                + rebuild
            )
        return cls(directory, meta, index, catalogue, rebuild)

    def search(self, vector: np.ndarray, k: int) -> list[Neighbour]:
        """The ``k`` nearest songs to ``vector`` (L2-normalised, from this index's model)."""
        q = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.meta.dim:
            raise StaleIndexError(
                f"{self.directory}: the query vector has {q.shape[1]} dimensions, the index "
                f"{self.meta.dim}; rebuild with {self.rebuild}"
            )
        k = min(int(k), self.meta.count)
        tune_for_search(self.index, k)  # efSearch / nprobe of an approximate index
        # faiss splits work by query, so one vector gains nothing from more threads, and on a
        # busy machine waiting for an OpenMP team lengthens the tail (bench_ann times this)
        with one_thread(load_faiss()):
            sims, ids = self.index.search(q, k)
        out: list[Neighbour] = []
        for sim, i in zip(sims[0], ids[0], strict=True):
            if i < 0:  # fewer hits than asked (an approximate index may return -1)
                continue
            row = self.catalogue[int(i)]
            out.append(
                Neighbour(
                    rank=len(out) + 1,
                    distance=float(np.clip(1.0 - sim, 0.0, 2.0)),
                    track_id=str(row["track_id"]),
                    genre=str(row["genre"]),
                    split=str(row["split"]),
                    path=str(row["path"]),
                )
            )
        return out


def _short(digest: str | None) -> str:
    return f"weights sha256 {digest[:12]}" if digest else "unknown weights"


def require_same_model(
    meta: IndexMeta,
    directory: Path,
    version: str | None,
    weights_sha256: str | None,
    rebuild: str = REBUILD,
) -> None:
    """Refuse to compare vectors from two models: raise :class:`StaleIndexError` on mismatch.

    The version alone is not enough: a recreated registry numbers other weights "1" again.
    """
    if meta.version == version and meta.weights_sha256 == weights_sha256:
        return
    raise StaleIndexError(
        f"{directory}: built with {meta.registered_model} version {meta.version}, but the "
        f"champion is version {version}"
        + (
            f" of another model ({_short(weights_sha256)}, not {_short(meta.weights_sha256)})"
            if meta.version == version
            else ""
        )
        + f"; vectors of two models are not comparable: rebuild with {rebuild}"
    )
