"""What ``evaluate`` decided, on disk: ``reports/promotion.json`` and the decision log.

``promotion.json`` shows this run's decisions and the scores compared (a DVC output, replaced
each run); ``promotion_log.jsonl`` (a ``persist: true`` output, tracked in git) keeps every
*distinct* decision ever made, one JSON line each, so the champion's lineage can be audited.

Both are DVC outputs, so they hold content only: the same inputs and registry state give the
same bytes. No wall-clock time and no run id goes in; MLflow keeps those (the version's
``promotion_decided_at`` and ``run_id`` tags, the registered model's ``decision_history``,
which ``genreflow registry`` prints). The log grows only when a run decides something other
than its last block of entries says: re-running ``evaluate`` on the same models and the same
champion appends nothing (a fresh clone's ``dvc repro`` leaves git clean), while a new model,
or a champion moved by hand since, appends the new decisions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genreflow.core.atomic import atomic_path, write_json
from genreflow.core.config import EvaluateParams
from genreflow.core.paths import Layout
from genreflow.registry.promotion import Decision, HeldOutClips

SELECTION = "best validation clip accuracy, then validation macro-F1"


def _last_entries(text: str, n: int) -> list[Any] | None:
    """The log's last ``n`` entries, parsed; ``None`` when it holds fewer or a line is not
    JSON (then nothing matches it, and the new block is appended)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < n:
        return None
    try:
        return [json.loads(line) for line in lines[len(lines) - n :]]
    except ValueError:
        return None


def append_promotion_log(path: Path, entries: list[dict[str, Any]]) -> bool:
    """Append one JSON line per decision to the persistent history (rewritten atomically),
    unless the log already ends with exactly these entries; returns whether it appended."""
    old = path.read_text() if path.is_file() else ""
    normalised = json.loads(json.dumps(entries))  # as they read back (tuples become lists)
    if not entries or _last_entries(old, len(entries)) == normalised:
        return False
    if old and not old.endswith("\n"):
        old += "\n"
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    with atomic_path(path) as tmp:
        tmp.write_text(old + lines)
    return True


def promotion_report(
    name: str,
    decisions: Sequence[Decision],
    champion: Any | None,
    ev: EvaluateParams,
    clips: HeldOutClips,
) -> dict[str, Any]:
    """``promotion.json``: the rule, its settings, the split and every decision.

    ``decisions`` are the registry's decisions of this run, ``champion`` the version that
    holds the alias after them (``None``: none does). Decisions carry no run id
    (:meth:`~genreflow.registry.promotion.Decision.content`): the registry version names its
    source run.
    """
    return {
        "registered_model": name,
        "selection": SELECTION,
        "selected": next(d.arch for d in decisions if d.selected),
        "rule": decisions[0].rule,
        "promotion_margin": ev.promotion_margin,
        "promotion_alpha": ev.promotion_alpha,
        "bootstrap_samples": ev.bootstrap_samples,
        "test_split_hash": clips.split_hash,
        "test_clips": len(clips.track_ids),
        "champion_version": str(champion.version) if champion is not None else None,
        "champion_arch": (champion.tags or {}).get("arch") if champion is not None else None,
        "decisions": [d.content() for d in decisions],
    }


def log_entries(promotion: dict[str, Any], decisions: Sequence[Decision]) -> list[dict[str, Any]]:
    """This run's lines of the decision log: each decision's content and the champion after."""
    return [
        {
            "registered_model": promotion["registered_model"],
            "champion_after": promotion["champion_version"],
            **d.content(),
        }
        for d in decisions
    ]


def write_promotion_report(
    layout: Layout, promotion: dict[str, Any], decisions: Sequence[Decision]
) -> bool:
    """Write ``promotion.json`` and append this run's decisions to the log when they are new;
    returns whether the log grew."""
    write_json(layout.promotion, promotion)
    return append_promotion_log(layout.promotion_log, log_entries(promotion, decisions))
