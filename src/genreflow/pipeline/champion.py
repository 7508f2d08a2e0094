"""Champion moved -> rebuild the similar-song index -> record it in ``dvc.lock``: one place.

The index holds the champion's song vectors, and vectors of two models are never compared,
so whenever ``champion`` moves outside ``dvc repro`` the index must follow. Three commands
come here: ``genreflow promote`` and ``genreflow rollback`` (:func:`promote`,
:func:`rollback`: the registry moves the alias, then the index follows) and ``genreflow index``
(:func:`index_champion`: the index follows a champion someone moved another way).

The cut: :mod:`genreflow.registry` only moves aliases; :mod:`genreflow.similarity` only builds
an index for whatever the champion is; :mod:`genreflow.pipeline.dvc_lock` only tells DVC. This
module sequences them. ``evaluate`` rebuilds the index itself, inside its stage, where DVC
records its outputs anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genreflow.core.champion_uri import CHAMPION_ALIAS
from genreflow.core.config import Params, load_params
from genreflow.core.paths import Layout
from genreflow.pipeline.dvc_lock import record_rebuilt_index
from genreflow.registry import manual
from genreflow.registry.aliases import RegistryError
from genreflow.similarity.build import build_champion_index
from genreflow.similarity.index import IndexMeta, index_digest

REBUILD_COMMAND = "genreflow index"


@dataclass(frozen=True)
class IndexUpdate:
    """What following the champion did: the index's meta, whether it was rebuilt (an
    index already built from the same model and corpus is kept; a forced rebuild counts even
    when its bytes came out the same), and what DVC recorded."""

    meta: IndexMeta
    rebuilt: bool
    dvc: str | None  # record_rebuilt_index's answer; None when nothing was rebuilt


def index_champion(
    params: Params,
    layout: Layout,
    *,
    force: bool = True,
    require_champion: bool = False,
    progress: bool = True,
) -> IndexUpdate:
    """Put the index on the current champion and record a rebuilt one in ``dvc.lock``.

    ``force=False`` keeps an index already built from the same model, corpus and search
    params. With no champion the index is written empty; ``require_champion`` then raises a
    :class:`RegistryError` (and records nothing). The tracking URI must already be set.
    """
    before = index_digest(layout.similarity_index)  # content only: equal bytes, same index
    meta = build_champion_index(params, layout, progress=progress, force=force)
    if require_champion and meta.version is None:
        raise RegistryError(
            f"model {params.tracking.registered_model!r} has no @{CHAMPION_ALIAS}, so the "
            "index is empty; promote a version first (`genreflow promote VERSION`)"
        )
    rebuilt = force or index_digest(layout.similarity_index) != before
    return IndexUpdate(meta, rebuilt, record_rebuilt_index(layout) if rebuilt else None)


def follow_champion(name: str, layout: Layout, progress: bool = True) -> dict[str, Any] | None:
    """After the registry moved ``champion`` of ``name``: the index follows; what happened.

    ``None`` where the repository has no validated corpus (nothing to index). Never undoes or
    fails the registry move: a user error while rebuilding (a model that does not load, bad
    params) is reported in the result with the command that fixes it, and a query against the
    old index refuses until then. An index of another registered model than params'
    ``tracking.registered_model`` is not touched. Rebuilding happens outside the promotion
    lock: embedding the corpus takes a while.
    """
    from genreflow.core.runner import is_user_error

    if not layout.validated_manifest.is_file():
        return None  # no corpus here, so no index to keep on the champion
    try:
        params = load_params(layout.params)
        if params.tracking.registered_model != name:
            return {
                "rebuilt": False,
                "reason": f"the index follows {params.tracking.registered_model!r}, not {name!r}",
            }
        update = index_champion(params, layout, force=False, progress=progress)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        return {"rebuilt": False, "reason": str(exc), "fix": REBUILD_COMMAND}
    result: dict[str, Any] = {
        "rebuilt": update.rebuilt,
        "version": update.meta.version,
        "count": update.meta.count,
        "directory": str(layout.similarity_index),
    }
    if update.dvc is not None:
        result["dvc"] = update.dvc
    return result


def _with_index(result: dict[str, Any], name: str, layout: Layout) -> dict[str, Any]:
    refreshed = follow_champion(name, layout)
    return result if refreshed is None else {**result, "similarity_index": refreshed}


def promote(
    name: str, version: str | int, layout: Layout, reason: str = "manual"
) -> dict[str, Any]:
    """``genreflow promote``: :func:`genreflow.registry.manual.promote`, then the index
    follows (:func:`follow_champion`, under ``similarity_index`` in the result)."""
    return _with_index(manual.promote(name, version, layout, reason), name, layout)


def rollback(name: str, layout: Layout) -> dict[str, Any]:
    """``genreflow rollback``: :func:`genreflow.registry.manual.rollback`, then the index
    follows (:func:`follow_champion`, under ``similarity_index`` in the result)."""
    return _with_index(manual.rollback(name, layout), name, layout)
