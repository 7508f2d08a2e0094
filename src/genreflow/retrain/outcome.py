"""What a retrain ended in, read from ``reports/promotion.json``, and its exit code.

The exit code is for CI: 0 means a new champion exists (deploy it, announce it), 3 means the
pipeline ran but the champion did not change, 1 means a step failed. 3 rather than 2, because
click already exits 2 on a bad command line. A retrain in which ``evaluate`` did not run (the
pipeline was up to date) made no decision, so it is 3 however the last evaluation went.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_PROMOTED = 0
EXIT_FAILED = 1
EXIT_NOT_PROMOTED = 3
PROMOTED = "promoted"  # genreflow.registry.promotion.PROMOTED, without importing MLflow


@dataclass(frozen=True)
class Outcome:
    """The decision this retrain produced (or found, when ``evaluate`` did not run)."""

    evaluated: bool  # evaluate ran during this retrain
    promotion: dict[str, Any] | None  # reports/promotion.json, if there is one

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return list((self.promotion or {}).get("decisions", []))

    @property
    def selected(self) -> dict[str, Any] | None:
        """The decision of the candidate selected on validation (evaluate writes it first)."""
        return next((d for d in self.decisions if d.get("selected")), None)

    @property
    def promoted(self) -> bool:
        chosen = self.selected
        return self.evaluated and chosen is not None and chosen.get("decision") == PROMOTED

    @property
    def exit_code(self) -> int:
        return EXIT_PROMOTED if self.promoted else EXIT_NOT_PROMOTED

    def summary(self) -> str:
        """One line for the console and the report's first bullet."""
        chosen = self.selected
        if not self.evaluated:
            return "evaluate did not run (the pipeline was up to date): no new decision"
        if chosen is None:
            return "evaluate ran but reports/promotion.json holds no selected candidate"
        what = f"{chosen['arch']} v{chosen['version']}: {chosen['decision']}"
        if self.promoted:
            return f"{what}, the new champion"
        champion = (self.promotion or {}).get("champion_version")
        return f"{what}; champion stays {'v' + champion if champion else 'unset'}"


def read_outcome(promotion_file: Path, evaluated: bool) -> Outcome:
    """The :class:`Outcome` from ``promotion_file`` (absent file: no decision at all)."""
    path = Path(promotion_file)
    promotion = json.loads(path.read_text()) if path.is_file() else None
    return Outcome(evaluated=evaluated, promotion=promotion)
