"""A person's own music as a named, searchable index: where it lives and what it holds.

``genreflow index PATH... --name NAME`` embeds every audio file under the paths with the
champion into ``models/libraries/NAME/`` (beside the corpus index, ``models/similarity_index``):

- ``journal.sqlite``: the work done so far (:mod:`genreflow.similarity.library_store`); an
  interrupted run continues from it.
- ``search/``: the searchable snapshot, the same format as the corpus index (faiss vectors,
  ``catalogue.csv``, ``meta.json`` naming the model), rebuilt from the journal at the end of
  every run in one atomic swap, so a query never reads a half-written index. Its catalogue
  rows are ``track_id`` = the file's content SHA-256, ``genre`` = the model's genre for it,
  ``split`` = ``library`` and ``path`` = the file's absolute path.

This module holds the naming rules, the one-writer lock, the snapshot and ``--list``; the run
itself is :mod:`~genreflow.similarity.library_index`, queries
:mod:`~genreflow.similarity.library_query`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from genreflow.core.errors import GenreflowError
from genreflow.core.paths import Layout
from genreflow.similarity.index import IndexMeta, load_faiss, read_meta, write_index
from genreflow.similarity.library_store import JOURNAL_FILE, LibraryJournal, ModelIdentity

SEARCH_DIR = "search"
LOCK_FILE = ".lock"
LIBRARY_SPLIT = "library"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CORPUS_NAME = "corpus"  # how --list shows the validated corpus's index (not a library name)
# journal meta keys
ROOTS_KEY = "roots"
COMPLETE_KEY = "complete"  # "1" after a run finished and wrote its snapshot


class LibraryError(GenreflowError, ValueError):
    """A library index that does not exist, is busy, or was asked for by a bad name."""


def rebuild_command(name: str) -> str:
    """The command that brings library ``name`` up to date (its roots are recorded)."""
    return f"`genreflow index --name {name}`"


def check_name(name: str) -> str:
    """``name`` if it can name a library folder, else a :class:`LibraryError` saying why."""
    if not NAME_PATTERN.fullmatch(name) or name == CORPUS_NAME:
        raise LibraryError(
            f"{name!r} cannot name a library: use 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit (and not {CORPUS_NAME!r}, the corpus index)"
        )
    return name


def library_dir(layout: Layout, name: str) -> Path:
    return layout.library_index(check_name(name))


def existing_library(layout: Layout, name: str) -> Path:
    """The folder of library ``name``; a :class:`LibraryError` naming the known ones if none."""
    directory = library_dir(layout, name)
    if not (directory / JOURNAL_FILE).is_file():
        known = ", ".join(library_names(layout)) or "none yet"
        raise LibraryError(
            f"{directory}: no library index named {name!r} (libraries: {known}); build it "
            f"with `genreflow index FOLDER... --name {name}`"
        )
    return directory


def library_names(layout: Layout) -> list[str]:
    root = layout.library_indexes
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / JOURNAL_FILE).is_file())


@contextlib.contextmanager
def writer_lock(directory: Path, name: str) -> Iterator[None]:
    """Hold the library's one-writer lock: two runs on one library would embed the same files
    twice and race on the snapshot. The kernel releases it if the process dies (SIGKILL)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise LibraryError(
                f"{directory}: another `genreflow index --name {name}` is running ({holder}); "
                "wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- snapshot
def write_snapshot(
    directory: Path, journal: LibraryJournal, model: ModelIdentity, model_uri: str | None
) -> IndexMeta:
    """Rebuild ``search/`` from the journal (every path whose content is embedded, in path
    order) with the index type the catalogue's size calls for."""
    import pandas as pd

    from genreflow.similarity.ann import choose_index_type

    rows = list(journal.searchable())
    faiss = load_faiss()
    index_type = choose_index_type(len(rows))
    meta = IndexMeta(
        registered_model=model.registered_model,
        model_uri=model_uri,
        version=model.version,
        weights_sha256=model.weights_sha256,
        dim=model.dim,
        count=len(rows),
        index_type=index_type,
        manifest_sha256=None,
        faiss_version=faiss.__version__,
        hnsw_m=32 if index_type == "hnsw" else None,
    )
    vectors = catalogue = None
    if rows:
        vectors = np.stack([np.frombuffer(r[3], dtype="<f4") for r in rows]).astype(np.float32)
        catalogue = pd.DataFrame(
            {
                "track_id": [r[1] for r in rows],
                "path": [r[0] for r in rows],
                "genre": [r[2] for r in rows],
                "split": LIBRARY_SPLIT,
            }
        )
    write_index(directory / SEARCH_DIR, meta, vectors, catalogue)
    return meta


# --------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class IndexListing:
    """One row of ``genreflow index --list``."""

    name: str
    kind: str  # "corpus" or "library"
    songs: int  # searchable entries (paths) in the snapshot
    size_bytes: int  # on disk, journal included
    registered_model: str | None
    version: str | None
    index_type: str | None
    path: str
    roots: list[str]
    state: str  # "ready", "interrupted" (a run did not finish), "empty" or "unbuilt"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _corpus_listing(layout: Layout) -> IndexListing | None:
    directory = layout.similarity_index
    if not directory.is_dir():
        return None
    try:
        meta = read_meta(directory)
    except GenreflowError:
        meta = None
    state = "unbuilt" if meta is None else ("ready" if meta.version else "empty")
    return IndexListing(
        name=CORPUS_NAME,
        kind="corpus",
        songs=meta.count if meta else 0,
        size_bytes=_size(directory),
        registered_model=meta.registered_model if meta else None,
        version=meta.version if meta else None,
        index_type=meta.index_type if meta else None,
        path=str(directory),
        roots=[str(layout.validated_manifest)],
        state=state,
    )


def _library_listing(layout: Layout, name: str) -> IndexListing:
    directory = layout.library_index(name)
    with LibraryJournal(directory) as journal:
        roots = json.loads(journal.get(ROOTS_KEY) or "[]")
        complete = journal.get(COMPLETE_KEY) == "1"
        model = journal.model()
    try:
        meta: IndexMeta | None = read_meta(directory / SEARCH_DIR)
    except GenreflowError:
        meta = None
    state = "ready" if complete and meta is not None else "interrupted"
    if meta is not None and meta.count == 0 and complete:
        state = "empty"
    return IndexListing(
        name=name,
        kind="library",
        songs=meta.count if meta else 0,
        size_bytes=_size(directory),
        registered_model=(meta or model).registered_model if (meta or model) else None,
        version=(meta or model).version if (meta or model) else None,
        index_type=meta.index_type if meta else None,
        path=str(directory),
        roots=roots,
        state=state,
    )


def list_indexes(layout: Layout) -> list[IndexListing]:
    """The corpus index (when built) and every library, by name."""
    corpus = _corpus_listing(layout)
    libraries = [_library_listing(layout, n) for n in library_names(layout)]
    return ([corpus] if corpus else []) + libraries


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_listing(rows: list[IndexListing]) -> list[str]:
    """``genreflow index --list``'s table."""
    if not rows:
        return [
            "no indexes yet: `dvc repro` builds the corpus index; "
            "`genreflow index FOLDER... --name NAME` indexes your music"
        ]
    header = ("name", "kind", "songs", "size", "model", "index", "state")
    cells = [
        (
            r.name,
            r.kind,
            str(r.songs),
            _human(r.size_bytes),
            f"{r.registered_model} v{r.version}" if r.version else "-",
            r.index_type or "-",
            r.state,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return [line(header), *(line(c) for c in cells)]
