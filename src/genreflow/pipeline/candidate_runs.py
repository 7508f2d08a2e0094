"""Each candidate's training run and logged model, found before ``evaluate`` writes anything.

Evaluate logs scores into the run that trained each model and registers its logged model.
``run.json`` holds the scores only (content, the same bytes for the same inputs); the run is
named by ``models/<arch>/mlflow_run_id`` and its logged model is looked up in MLflow. DVC can
restore a training stage's outputs without running it, or ``mlflow.db`` may have been deleted;
then the id names a run the store does not hold, and the stage stops with the command that
fixes it, before any report is half-written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genreflow.core.errors import GenreflowError
from genreflow.core.paths import Layout
from genreflow.tracking.run_info import logged_model_uri, read_run_id, read_run_info
from genreflow.tracking.runs import find_run


class MissingRunError(GenreflowError, RuntimeError):
    """A candidate's MLflow run (or its logged model) cannot be found."""


def missing_run_message(section: str, arch: str, run_id: str, tracking_uri: str) -> str:
    """Why the run is missing and the ``dvc repro`` that brings it back."""
    return (
        f"models/{arch}/mlflow_run_id names MLflow run {run_id}, but the tracking store "
        f"{tracking_uri} does not hold it. This happens when DVC restored `{section}` from its "
        f"run-cache (its code, and so its MLflow logging, never ran here) or when mlflow.db was "
        f"deleted or replaced. Fix: `dvc repro --force {section}` (then `dvc repro evaluate`); "
        f"`dvc repro --no-run-cache` avoids run-cache restores altogether."
    )


def missing_id_message(section: str, arch: str) -> str:
    """The run id file is gone (or empty): nothing names the run that trained the model."""
    path = f"models/{arch}/mlflow_run_id"
    return (
        f"{path}: missing or empty, so evaluate cannot tell which MLflow run trained the {arch} "
        f"model (run.json holds its scores only; the run id lives in this file and in MLflow). "
        f"Fix: `dvc checkout {path}` if DVC has it cached, else `dvc repro --force {section}` "
        f"(then `dvc repro evaluate`)."
    )


def missing_model_message(section: str, arch: str, run_id: str, tracking_uri: str) -> str:
    """The run exists but holds no finished logged model (the stage died while logging it)."""
    return (
        f"models/{arch}/mlflow_run_id names MLflow run {run_id}, which holds no finished logged "
        f"model in the tracking store {tracking_uri} (was `{section}` killed while logging it?). "
        f"Fix: `dvc repro --force {section}` (then `dvc repro evaluate`)."
    )


def candidate_run(section: str, arch: str, layout: Layout, tracking_uri: str) -> dict[str, Any]:
    """``run.json`` of ``arch`` with its provenance added from MLflow: ``run_id`` (from
    ``mlflow_run_id``) and ``model_uri`` (the run's logged model). Raises
    :class:`MissingRunError` naming the file and the fix when either cannot be found."""
    info = read_run_info(layout, arch)
    run_id = read_run_id(layout, arch)
    if run_id is None:
        raise MissingRunError(missing_id_message(section, arch))
    run = find_run(run_id)
    if run is None:
        raise MissingRunError(missing_run_message(section, arch, run_id, tracking_uri))
    model_uri = logged_model_uri(run)
    if model_uri is None:
        raise MissingRunError(missing_model_message(section, arch, run_id, tracking_uri))
    return {**info, "run_id": run_id, "model_uri": model_uri}


def candidate_runs(
    sections: Mapping[str, str], layout: Layout, tracking_uri: str
) -> dict[str, dict[str, Any]]:
    """:func:`candidate_run` of each arch in ``sections`` (section -> arch), keyed by arch.

    Raises :class:`MissingRunError` for the first candidate whose run or model is missing.
    """
    return {
        arch: candidate_run(section, arch, layout, tracking_uri)
        for section, arch in sections.items()
    }
