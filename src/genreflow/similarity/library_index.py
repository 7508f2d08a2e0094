"""``genreflow index PATH... --name NAME``: embed a person's music, incrementally.

One run:

1. **Find the files.** Every audio file under the roots, as ``genreflow predict`` finds them
   (any format, rate and length it accepts). The roots are recorded, so a later run may omit
   them.
2. **Decide what to embed.** A path whose size and mtime match the journal keeps its recorded
   content hash; any other is hashed. A content the journal holds is not embedded again
   (unchanged, renamed or copied files); only new contents are. Paths gone from a root that
   still exists are dropped; a root that has vanished (an unmounted drive) is one error line
   and its songs are kept.
3. **Embed**, one file at a time, each committed to the journal before the next starts, so
   Ctrl-C or SIGKILL loses at most the file in hand. The next file is read and hashed on a
   second thread while the model scores the current one. A file that fails is one error line;
   the rest go on.
4. **Write the snapshot** that queries search
   (:func:`~genreflow.similarity.library.write_snapshot`).

Vectors are only comparable within one model, so a champion change re-embeds the library
(the journal drops the old model's vectors first, and says so).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.serving.predict import InputFailure, _failure_from, discover
from genreflow.similarity.index import IndexMeta
from genreflow.similarity.library import (
    COMPLETE_KEY,
    ROOTS_KEY,
    LibraryError,
    existing_library,
    library_dir,
    write_snapshot,
    writer_lock,
)
from genreflow.similarity.library_store import FileRecord, LibraryJournal, ModelIdentity, Song


@dataclass
class LibraryRun:
    """What one ``genreflow index --name`` run did."""

    name: str
    directory: Path
    embedded: int = 0  # new contents scored by the model
    unchanged: int = 0  # paths whose content was already embedded
    dropped: int = 0  # paths removed from the library
    reset_from: str | None = None  # the old model's version when a model change re-embedded
    failures: list[InputFailure] = field(default_factory=list)
    meta: IndexMeta | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def summary(self) -> str:
        meta = self.meta
        where = (
            f"{self.directory}: "
            if meta is None
            else (
                f"{self.directory}: {meta.count} songs ({meta.index_type}) with "
                f"{meta.registered_model} version {meta.version}; "
            )
        )
        return (
            f"{where}{self.embedded} embedded, {self.unchanged} unchanged, "
            f"{self.dropped} dropped, {len(self.failures)} failed"
        )


@dataclass(frozen=True)
class _Prepared:
    """A file read ahead of the model: its stat, content hash and decoded audio (None when
    the content is already embedded), or the failure that stopped it."""

    path: Path
    record: FileRecord | None = None
    decoded: Any = None
    failure: InputFailure | None = None


def resolve_roots(layout: Layout, name: str, paths: Sequence[Path]) -> list[Path]:
    """The roots of this run: the paths given (absolute), else those recorded last time."""
    if paths:
        return [Path(p).expanduser().absolute() for p in paths]
    with LibraryJournal(existing_library(layout, name)) as journal:
        recorded = json.loads(journal.get(ROOTS_KEY) or "[]")
    if not recorded:
        raise LibraryError(
            f"library {name!r} records no folders; give them: "
            f"`genreflow index FOLDER... --name {name}`"
        )
    return [Path(p) for p in recorded]


def _kept_paths(known: dict[str, FileRecord], roots: Sequence[Path]) -> set[str]:
    """Recorded paths under a root that no longer exists: kept, not dropped (a drive that is
    not mounted now must not empty the library)."""
    missing = [r for r in roots if not r.exists()]
    return {p for p in known if any(Path(p).is_relative_to(r) for r in missing)}


def _prepare(
    path: Path, known: FileRecord | None, journal_has: Callable[[str], bool], served: Any
) -> _Prepared:
    """Stat, hash when the stat changed, and decode when the content is new."""
    try:
        stat = path.stat()
        if known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            sha = known.sha256
        else:
            sha = file_sha256(path)
        record = FileRecord(str(path), sha, stat.st_size, stat.st_mtime_ns)
        if journal_has(sha):
            return _Prepared(path, record)
        return _Prepared(path, record, decoded=served.decode(path))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the library
        return _Prepared(path, failure=_failure_from(path, exc))


def _read_ahead(paths: Sequence[Path], prepare: Callable[[Path], _Prepared]) -> Iterator[_Prepared]:
    """``prepare`` of each path, the next one running on a second thread meanwhile."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="library-read") as pool:
        pending: Future[_Prepared] | None = None
        for i, path in enumerate(paths):
            current = pending.result() if pending is not None else prepare(path)
            pending = pool.submit(prepare, paths[i + 1]) if i + 1 < len(paths) else None
            yield current


def _embed(journal: LibraryJournal, served: Any, item: _Prepared) -> str | InputFailure:
    """Commit one prepared file: ``"unchanged"`` when its content is already embedded (it is
    just linked), ``"embedded"`` once a new content is scored and stored, or the failure."""
    if item.failure is not None or item.record is None:
        return item.failure or InputFailure(str(item.path), "not read")
    # checked again here: the reader thread may have decoded a twin of the file just embedded
    if item.decoded is None or journal.has_song(item.record.sha256):
        journal.put_file(item.record)
        return "unchanged"
    try:
        analysis = served.analyse_decoded(item.decoded, str(item.path))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the library
        return _failure_from(item.path, exc)
    song = Song(item.record.sha256, analysis.embedding, analysis.genre, analysis.duration_s)
    journal.add(song, item.record)
    return "embedded"


def _model_identity(served: Any, registered_model: str) -> ModelIdentity:
    return ModelIdentity(
        registered_model=registered_model,
        version=None if served.version is None else str(served.version),
        weights_sha256=served.weights_sha256,
        dim=int(served.embedding_dim),
    )


def index_library(
    layout: Layout,
    name: str,
    paths: Sequence[Path],
    served: Any,
    registered_model: str,
    *,
    progress: bool = True,
    err: TextIO | None = None,
) -> LibraryRun:
    """Bring library ``name`` up to date with the files under ``paths`` (or its recorded
    roots) and the model ``served`` (the champion of ``registered_model``)."""
    from genreflow.core.progress import progress_bar

    err = err or sys.stderr
    directory = library_dir(layout, name)
    roots = resolve_roots(layout, name, paths)
    run = LibraryRun(name, directory)
    with writer_lock(directory, name), LibraryJournal(directory) as journal:
        journal.put(COMPLETE_KEY, "0")
        journal.put(ROOTS_KEY, json.dumps([str(r) for r in roots]))
        model = _model_identity(served, registered_model)
        old = journal.model()
        if journal.adopt_model(model):
            run.reset_from = old.version if old else None
            print(
                f"genreflow index: {name}: the model changed (version {run.reset_from} -> "
                f"{model.version}); re-embedding every song",
                file=err,
            )
        found = discover(roots)
        files = [f for f in found if isinstance(f, Path)]
        for failure in (f for f in found if isinstance(f, InputFailure)):
            _report(run, failure, err)
        known = journal.files()
        present = {str(f) for f in files}
        gone = set(known) - present - _kept_paths(known, roots)
        run.dropped = journal.drop_files(sorted(gone))

        embedded_before = journal.song_hashes()  # the reader thread's view: no shared cursor

        def prepare(path: Path) -> _Prepared:
            return _prepare(path, known.get(str(path)), embedded_before.__contains__, served)

        with progress_bar(
            total=len(files), desc=f"index {name}", unit="file", disable=not progress, file=err
        ) as bar:
            for item in _read_ahead(files, prepare):
                outcome = _embed(journal, served, item)
                if isinstance(outcome, InputFailure):
                    _report(run, outcome, err, bar)
                elif outcome == "embedded":
                    run.embedded += 1
                else:
                    run.unchanged += 1
                bar.update(1)
        journal.prune_songs()
        run.meta = write_snapshot(directory, journal, model, getattr(served, "uri", None))
        journal.put(COMPLETE_KEY, "1")
    return run


def _report(run: LibraryRun, failure: InputFailure, err: TextIO, bar: Any = None) -> None:
    run.failures.append(failure)
    line = f"genreflow index: error: {failure.path}: {failure.reason}"
    if bar is not None:
        bar.write(line, file=err)
    else:
        print(line, file=err)
