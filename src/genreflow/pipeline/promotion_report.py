"""What ``evaluate`` decided, on disk: ``reports/promotion.json`` and the decision log.

``promotion.json`` shows this run's decisions and the scores compared (a DVC output, replaced
each run); ``promotion_log.jsonl`` (a ``persist: true`` output) keeps every decision ever made,
one JSON line each, so the champion's lineage can be audited.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genreflow.core.atomic import atomic_path, write_json
from genreflow.core.config import EvaluateParams
from genreflow.core.paths import Layout
from genreflow.registry.promotion import Decision, HeldOutClips

SELECTION = "best validation clip accuracy, then validation macro-F1"


def append_promotion_log(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append one JSON line per decision to the persistent history (rewritten atomically)."""
    old = path.read_text() if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    with atomic_path(path) as tmp:
        tmp.write_text(old + lines)


def promotion_report(
    name: str,
    decisions: Sequence[Decision],
    champion: Any | None,
    ev: EvaluateParams,
    clips: HeldOutClips,
) -> dict[str, Any]:
    """``promotion.json``: the rule, its settings, the split and every decision.

    ``decisions`` are the registry's decisions of this run, ``champion`` the version that
    holds the alias after them (``None``: none does).
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
        "decisions": [d.to_dict() for d in decisions],
    }


def write_promotion_report(
    layout: Layout, promotion: dict[str, Any], decisions: Sequence[Decision]
) -> None:
    """Write ``promotion.json`` and append this run's decisions to the log, stamped now."""
    write_json(layout.promotion, promotion)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    append_promotion_log(
        layout.promotion_log,
        [
            {
                "time": now,
                "registered_model": promotion["registered_model"],
                "champion_after": promotion["champion_version"],
                **d.to_dict(),
            }
            for d in decisions
        ],
    )
