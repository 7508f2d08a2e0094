"""What people do by hand: ``genreflow promote``, ``genreflow rollback``, ``registry show``.

Manual moves take the same lock as automatic promotion and land in the same histories, so
the record of who held ``champion``, and why, has no gaps. These functions move aliases and
nothing else; what must follow a move (the similar-song index) is
:mod:`genreflow.pipeline.champion`'s job, and the commands go through it.
"""

from __future__ import annotations

from typing import Any

from genreflow.core.paths import Layout
from genreflow.registry import aliases, versions
from genreflow.registry.aliases import RegistryError


def _log(name: str, version: str, decision: str, reason: str) -> None:
    aliases.append_decision(
        name,
        {
            "time": aliases.now(),
            "version": version,
            "decision": decision,
            "reason": reason,
            "champion_after": aliases.alias_version(name, aliases.CHAMPION_ALIAS),
        },
    )


def promote(
    name: str, version: str | int, layout: Layout, reason: str = "manual"
) -> dict[str, Any]:
    """Force ``champion`` onto ``version`` (e.g. after a human review); returns what changed.

    The previous holder becomes ``previous-champion``, the move is appended to
    ``champion_history`` (so :func:`rollback` can undo it), and a ``rolled_back`` mark on
    ``version`` is cleared: a human chose it again. Only the registry changes; the
    similar-song index follows in :func:`genreflow.pipeline.champion.promote`.
    """
    from mlflow.exceptions import MlflowException

    from genreflow.tracking.store import set_tracking

    uri = set_tracking(layout)
    with aliases.promotion_lock(uri, name):
        try:
            mv = aliases.client().get_model_version(name, str(version))
        except MlflowException as exc:
            raise RegistryError(f"model {name!r} has no version {version}: {exc.message}") from exc
        target = str(mv.version)
        before = aliases.alias_version(name, aliases.CHAMPION_ALIAS)
        aliases.clear_rolled_back(name, target)
        if before == target:
            return {
                "model": name,
                "champion": before,
                "changed": False,
                "previous_champion": aliases.alias_version(name, aliases.PREVIOUS_ALIAS),
            }
        aliases.move_champion(name, target)
        p = versions.DECISION_PREFIX
        versions.tag_version(
            name,
            target,
            {
                f"{p}decision": "promoted",
                f"{p}reason": f"manual: {reason}",
                versions.TAG_DECIDED_AT: aliases.now(),
            },
        )
        _log(name, target, "manual-promotion", reason)
    return {"model": name, "champion": target, "previous_champion": before, "changed": True}


def rollback(name: str, layout: Layout) -> dict[str, Any]:
    """Move ``champion`` back to the version that held it before the current one.

    The current champion is dropped from the end of ``champion_history``; the new last entry
    becomes ``champion`` and the one before it ``previous-champion``. The rolled-back version
    is marked ``rolled_back=true``, and automatic promotion never picks it again. Raises
    :class:`RegistryError` when there is nothing to roll back to. Only the registry changes;
    the similar-song index follows in :func:`genreflow.pipeline.champion.rollback`.
    """
    from genreflow.tracking.store import set_tracking

    uri = set_tracking(layout)
    with aliases.promotion_lock(uri, name):
        current = aliases.alias_version(name, aliases.CHAMPION_ALIAS)
        if current is None:
            raise RegistryError(
                f"model {name!r} has no @{aliases.CHAMPION_ALIAS}; nothing to roll back"
            )
        past = aliases.history(name)
        while past and past[-1] == current:
            past.pop()
        if not past:
            prev = aliases.alias_version(name, aliases.PREVIOUS_ALIAS)
            if prev is None or prev == current:
                raise RegistryError(
                    f"model {name!r}: no earlier champion is recorded (no "
                    f"{aliases.HISTORY_TAG} entry and no @{aliases.PREVIOUS_ALIAS}); promote a "
                    "version explicitly instead"
                )
            past = [prev]
        target = past[-1]
        c = aliases.client()
        c.set_registered_model_alias(name, aliases.CHAMPION_ALIAS, target)
        if len(past) >= 2:
            c.set_registered_model_alias(name, aliases.PREVIOUS_ALIAS, past[-2])
        elif aliases.get_alias(name, aliases.PREVIOUS_ALIAS) is not None:
            c.delete_registered_model_alias(name, aliases.PREVIOUS_ALIAS)
        aliases.set_history(name, past)
        aliases.mark_rolled_back(name, current, target)
        p = versions.DECISION_PREFIX
        versions.tag_version(
            name,
            current,
            {
                f"{p}decision": "rolled-back",
                f"{p}reason": f"rolled back to version {target}",
                versions.TAG_DECIDED_AT: aliases.now(),
            },
        )
        _log(name, current, "rolled-back", f"rolled back to version {target}")
    return {
        "model": name,
        "champion": target,
        "rolled_back_from": current,
        "previous_champion": past[-2] if len(past) >= 2 else None,
    }


def describe(name: str, layout: Layout) -> dict[str, Any]:
    """Every version of ``name`` with its aliases and tags, and both histories."""
    from genreflow.tracking.store import set_tracking

    set_tracking(layout)
    found = aliases.client().search_model_versions(filter_string=f"name = '{name}'")
    return {
        "model": name,
        "champion": aliases.alias_version(name, aliases.CHAMPION_ALIAS),
        "previous_champion": aliases.alias_version(name, aliases.PREVIOUS_ALIAS),
        "history": aliases.history(name),
        "decisions": aliases.decisions(name),
        "versions": [
            {"version": str(mv.version), "aliases": list(mv.aliases or []), "tags": dict(mv.tags)}
            for mv in sorted(found, key=lambda v: int(v.version))
        ],
    }
