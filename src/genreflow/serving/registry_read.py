"""Which version holds an alias, read straight from a SQLite MLflow store without MLflow.

Importing MLflow costs about a second of every cold ``genreflow predict``; asking it which
version is the champion is one indexed SELECT. This module answers that question for a
``sqlite:///`` store with the standard library only, opening the file **read-only** (a URI
with ``mode=ro``: no write, no journal, no schema migration), so the serving cache
(:mod:`genreflow.serving.fast_champion`) can check on every start that its copy is still the
registry's champion.

It reads two tables of MLflow's registry schema, ``registered_model_aliases`` and
``model_versions``. Anything it does not recognise (another schema, several workspaces
holding the name, a version being deleted, a locked or damaged file) makes the answer
*unknown* (:class:`UnverifiableRegistry`), and the caller asks MLflow instead: never a guess.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

READY = "READY"  # model_versions.status of a version whose files are all written
DELETED_STAGE = "Deleted_Internal"  # MLflow's marker of a version being deleted


class UnverifiableRegistry(Exception):
    """The store could not be read, or read into one unambiguous answer, without MLflow."""


@dataclass(frozen=True)
class RegisteredVersion:
    """The identity of one registered model version: enough to tell a cached copy from
    another version, or from another model registered later under the same number."""

    registered_model: str
    version: str
    source: str  # the logged model it points at: models:/m-<id> (immutable artifacts)
    run_id: str | None


_ALIAS_QUERY = """
SELECT v.version, v.source, v.run_id, v.status, v.current_stage
FROM registered_model_aliases AS a
JOIN model_versions AS v ON v.name = a.name AND v.version = a.version{workspace_join}
WHERE a.name = ? AND a.alias = ?
"""


def _connect(db: Path) -> sqlite3.Connection:
    """A read-only connection that never creates the file (``mode=ro``)."""
    uri = f"file:{quote(str(Path(db).resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=2.0)


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def alias_version(db: Path, registered_model: str, alias: str) -> RegisteredVersion | None:
    """The version ``alias`` of ``registered_model`` points at in the SQLite store ``db``;
    ``None`` when the store says the alias is not set.

    Raises :class:`UnverifiableRegistry` for a missing or unreadable file, an unknown schema,
    several rows (one name in several workspaces), or a version that is not READY.
    """
    if not Path(db).is_file():
        raise UnverifiableRegistry(f"{db}: no such store")
    try:
        conn = _connect(db)
        try:
            both = _has_column(conn, "registered_model_aliases", "workspace") and _has_column(
                conn, "model_versions", "workspace"
            )
            join = " AND v.workspace = a.workspace" if both else ""
            query = _ALIAS_QUERY.format(workspace_join=join)
            rows = conn.execute(query, (registered_model, alias)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise UnverifiableRegistry(f"{db}: {exc}") from exc
    if not rows:
        return None
    if len(rows) > 1:
        raise UnverifiableRegistry(f"{db}: {registered_model}@{alias} is set in several places")
    version, source, run_id, status, stage = rows[0]
    if status != READY or stage == DELETED_STAGE:
        raise UnverifiableRegistry(f"{registered_model} version {version}: status {status}")
    return RegisteredVersion(registered_model, str(version), str(source), run_id or None)
