"""The journal of a library index: one SQLite file that survives Ctrl-C and SIGKILL.

Why SQLite: every embedded file is committed on its own, so an interrupted ``genreflow index``
loses at most the file it was embedding, and a re-run never embeds a finished file twice. A
crash mid-commit is rolled back by SQLite itself (write-ahead log), so the journal is never
half-written. The searchable snapshot (:mod:`genreflow.similarity.library`) is built from it.

Two tables:

- ``songs``: one row per distinct audio *content* (SHA-256 of the file's bytes): its song
  vector, the model's genre for it and its decoded duration. Keyed by content, so a renamed
  or copied file is not embedded again, and a query file that is already in the library is
  recognised whatever its name.
- ``files``: one row per path under the library's roots, with the content it holds and the
  size and modification time seen when it was hashed (a file whose size and mtime are
  unchanged is not hashed again, as git and DVC do).

``meta`` holds the model the vectors belong to. Vectors of two models are never mixed: a
journal opened for another model is emptied first (:meth:`LibraryJournal.adopt_model`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

JOURNAL_FILE = "journal.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS songs (
    sha256 TEXT PRIMARY KEY,
    vector BLOB NOT NULL,
    genre TEXT NOT NULL,
    duration_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class ModelIdentity:
    """The model a library's vectors came from: by registry version and by content."""

    registered_model: str
    version: str | None
    weights_sha256: str
    dim: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class FileRecord:
    """What the journal knows of one path: its content and the stat it was hashed at."""

    path: str
    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Song:
    """One embedded content."""

    sha256: str
    vector: np.ndarray  # float32 (dim,), L2-normalised
    genre: str
    duration_s: float


class LibraryJournal:
    """The open journal of one library (see the module doc); use as a context manager."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / JOURNAL_FILE
        # autocommit off; each write method commits its own transaction
        self._db = sqlite3.connect(self.path, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never torn
        self._db.executescript(_SCHEMA)
        self._set_default("schema_version", str(SCHEMA_VERSION))

    def __enter__(self) -> LibraryJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ meta
    def _set_default(self, key: str, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def model(self) -> ModelIdentity | None:
        raw = self.get("model")
        return None if raw is None else ModelIdentity(**json.loads(raw))

    def adopt_model(self, model: ModelIdentity) -> bool:
        """Make ``model`` the journal's model; returns True when vectors of another model
        were dropped (they are not comparable with the new ones)."""
        old = self.model()
        same = old is not None and (old.weights_sha256, old.dim) == (
            model.weights_sha256,
            model.dim,
        )
        dropped = old is not None and not same and self.count_songs() > 0
        with self._db:
            if old is not None and not same:
                self._db.execute("DELETE FROM songs")
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('model', ?)",
                (json.dumps(model.to_dict(), sort_keys=True),),
            )
        return dropped

    # ------------------------------------------------------------------ files
    def files(self) -> dict[str, FileRecord]:
        rows = self._db.execute("SELECT path, sha256, size, mtime_ns FROM files")
        return {r[0]: FileRecord(*r) for r in rows}

    def put_file(self, record: FileRecord) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                (record.path, record.sha256, record.size, record.mtime_ns),
            )

    def drop_files(self, paths: Iterable[str]) -> int:
        """Forget ``paths`` (their contents stay until :meth:`prune_songs`: a file that was
        moved is found again under its new path and must not be embedded twice)."""
        paths = list(paths)
        with self._db:
            self._db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
        return len(paths)

    def prune_songs(self) -> int:
        """Drop the contents no path holds any more; returns how many."""
        with self._db:
            cursor = self._db.execute(
                "DELETE FROM songs WHERE sha256 NOT IN (SELECT sha256 FROM files)"
            )
        return int(cursor.rowcount)

    # ------------------------------------------------------------------ songs
    def has_song(self, sha256: str) -> bool:
        row = self._db.execute("SELECT 1 FROM songs WHERE sha256 = ?", (sha256,)).fetchone()
        return row is not None

    def song(self, sha256: str) -> Song | None:
        row = self._db.execute(
            "SELECT sha256, vector, genre, duration_s FROM songs WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return None if row is None else _song(row)

    def add(self, song: Song, record: FileRecord) -> None:
        """Store an embedded content and the path it was read from, in one transaction."""
        vector = np.ascontiguousarray(song.vector, dtype="<f4")
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO songs VALUES (?, ?, ?, ?)",
                (song.sha256, vector.tobytes(), song.genre, float(song.duration_s)),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                (record.path, record.sha256, record.size, record.mtime_ns),
            )

    def song_hashes(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT sha256 FROM songs")}

    def count_songs(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM songs").fetchone()[0])

    def searchable(self) -> Iterator[tuple[str, str, str, bytes]]:
        """``(path, sha256, genre, vector bytes)`` of every path whose content is embedded,
        in path order (a snapshot's row order, so the same library gives the same bytes)."""
        yield from self._db.execute(
            "SELECT f.path, f.sha256, s.genre, s.vector FROM files f "
            "JOIN songs s ON s.sha256 = f.sha256 ORDER BY f.path"
        )


def _song(row: tuple) -> Song:
    return Song(row[0], np.frombuffer(row[1], dtype="<f4").copy(), row[2], float(row[3]))
