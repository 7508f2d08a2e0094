"""Each candidate's training run, found before ``evaluate`` writes anything.

Evaluate logs scores into the run that trained each model and registers its logged model.
DVC can restore a training stage's outputs from its run-cache without running it, or
``mlflow.db`` may have been deleted; then ``run.json`` names a run the store does not hold,
and the stage stops with the command that fixes it, before any report is half-written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genreflow.core.errors import GenreflowError
from genreflow.core.paths import Layout
from genreflow.tracking.run_info import read_run_info
from genreflow.tracking.runs import find_run


class MissingRunError(GenreflowError, RuntimeError):
    """``run.json`` names an MLflow run that the tracking store does not hold."""


def missing_run_message(section: str, arch: str, run_id: str, tracking_uri: str) -> str:
    """Why the run is missing and the ``dvc repro`` that brings it back."""
    return (
        f"models/{arch}/run.json names MLflow run {run_id}, but the tracking store "
        f"{tracking_uri} does not hold it. This happens when DVC restored `{section}` from its "
        f"run-cache (its code, and so its MLflow logging, never ran here) or when mlflow.db was "
        f"deleted or replaced. Fix: `dvc repro --force {section}` (then `dvc repro evaluate`); "
        f"`dvc repro --no-run-cache` avoids run-cache restores altogether."
    )


def candidate_runs(
    sections: Mapping[str, str], layout: Layout, tracking_uri: str
) -> dict[str, dict[str, Any]]:
    """``run.json`` of each arch in ``sections`` (section -> arch), every run checked to exist.

    Raises :class:`MissingRunError` for the first run the store lacks.
    """
    infos: dict[str, dict[str, Any]] = {}
    for section, arch in sections.items():
        info = read_run_info(layout, arch)
        if find_run(info["run_id"]) is None:
            raise MissingRunError(missing_run_message(section, arch, info["run_id"], tracking_uri))
        infos[arch] = info
    return infos
