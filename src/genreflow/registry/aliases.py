"""Aliases, champion history, the decision log and the promotion lock of one registered model.

Aliases, not the deprecated stages, mark what is deployed:

- ``champion``: what serving loads (``models:/genre-classifier@champion``);
- ``previous-champion``: the version ``champion`` pointed to before its last move.

Two JSON lists live in tags of the registered model: ``champion_history`` (every version that
held ``champion``, in order, so :func:`genreflow.registry.manual.rollback` can step back more
than once) and ``decision_history`` (every promotion decision, promoted or not, by any
evaluate on any machine). Both are read-modify-written, so two evaluates at once could lose an
entry; :func:`promotion_lock` serialises them on a SQLite store, and the caller re-reads the
alias just before moving it (which is what protects a tracking server).

A version a human rolled back carries the ``rolled_back`` tag, and automatic promotion never
picks it again; ``genreflow promote`` by hand clears the tag.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from genreflow.core.champion_uri import CHAMPION_ALIAS
from genreflow.core.errors import GenreflowError

PREVIOUS_ALIAS = "previous-champion"
HISTORY_TAG = "champion_history"
DECISIONS_TAG = "decision_history"
ROLLED_BACK_TAG = "rolled_back"
HISTORY_LIMIT = 100
DECISIONS_LIMIT = 200
LOCK_TIMEOUT_S = 600.0


class RegistryError(GenreflowError, RuntimeError):
    """A registry operation cannot be carried out; the message says why and what to do."""


def client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def get_alias(name: str, alias: str) -> Any | None:
    """The version ``alias`` points to, or ``None`` (no such alias or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def alias_version(name: str, alias: str) -> str | None:
    mv = get_alias(name, alias)
    return str(mv.version) if mv is not None else None


def _json_list_tag(name: str, key: str) -> list[Any]:
    from mlflow.exceptions import MlflowException

    try:
        raw = client().get_registered_model(name).tags.get(key, "[]")
    except MlflowException:
        return []
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return []
    return value if isinstance(value, list) else []


def history(name: str) -> list[str]:
    """Versions that held ``champion``, oldest first."""
    return [str(v) for v in _json_list_tag(name, HISTORY_TAG)]


def set_history(name: str, versions: Sequence[str]) -> None:
    kept = [str(v) for v in versions][-HISTORY_LIMIT:]
    client().set_registered_model_tag(name, HISTORY_TAG, json.dumps(kept))


def decisions(name: str) -> list[dict[str, Any]]:
    """Every recorded promotion decision of ``name``, oldest first."""
    return [d for d in _json_list_tag(name, DECISIONS_TAG) if isinstance(d, dict)]


def append_decision(name: str, entry: dict[str, Any]) -> None:
    kept = [*decisions(name), entry][-DECISIONS_LIMIT:]
    client().set_registered_model_tag(name, DECISIONS_TAG, json.dumps(kept, sort_keys=True))


def move_champion(name: str, version: str) -> str | None:
    """Point ``champion`` at ``version``; the old holder becomes ``previous-champion``.

    Returns the old holder's version. Appends ``version`` to ``champion_history``.
    """
    c = client()
    old_version = alias_version(name, CHAMPION_ALIAS)
    if old_version == str(version):
        return old_version
    c.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    if old_version is not None:
        c.set_registered_model_alias(name, PREVIOUS_ALIAS, old_version)
    past = history(name)
    if not past and old_version is not None:
        past = [old_version]
    set_history(name, [*past, str(version)])
    return old_version


def is_rolled_back(version: Any) -> bool:
    """Whether a human rolled this version back (so automatic promotion must skip it)."""
    return (version.tags or {}).get(ROLLED_BACK_TAG, "").lower() == "true"


def mark_rolled_back(name: str, version: str, target: str) -> None:
    c = client()
    c.set_model_version_tag(name, version, ROLLED_BACK_TAG, "true")
    c.set_model_version_tag(name, version, f"{ROLLED_BACK_TAG}_at", now())
    c.set_model_version_tag(name, version, f"{ROLLED_BACK_TAG}_to", target)


def clear_rolled_back(name: str, version: str) -> None:
    """A human promoted ``version`` again: automatic promotion may consider it from now on."""
    c = client()
    tags = c.get_model_version(name, version).tags or {}
    for key in (ROLLED_BACK_TAG, f"{ROLLED_BACK_TAG}_at", f"{ROLLED_BACK_TAG}_to"):
        if key in tags:
            c.delete_model_version_tag(name, version, key)


@contextlib.contextmanager
def promotion_lock(tracking_uri: str, name: str) -> Iterator[None]:
    """Serialise read-decide-write of ``champion`` between processes sharing a SQLite store.

    The lock file sits beside ``mlflow.db`` (one per registered model). A tracking server
    gets no file lock (its clients may be on other machines); there the caller re-reads the
    alias right before moving it and decides again if it moved.
    """
    from filelock import FileLock, Timeout

    from genreflow.tracking.store import sqlite_path

    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    lock_path = db.with_name(f"{db.name}.{name}.promotion.lock")
    try:
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout as exc:
        raise RegistryError(
            f"{lock_path}: another evaluate has held the promotion lock for over "
            f"{LOCK_TIMEOUT_S:.0f} s; if no evaluate is running, delete the file and retry"
        ) from exc
