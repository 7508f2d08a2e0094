"""The numeric environment a training run computed in, recorded on its MLflow run.

Provenance, so it lives in MLflow, not in a DVC output: the run gets the whole fingerprint of
:func:`genreflow.core.numerics.numeric_environment` as ``numeric_environment.json`` and each
key as a ``numerics.<key>`` tag (so the MLflow UI can compare runs by CPU or thread count).
``genreflow numerics --against ARCH`` reads it back and compares it with this machine.
"""

from __future__ import annotations

from typing import Any

from genreflow.core.errors import GenreflowError

ARTIFACT = "numeric_environment.json"


class NoRecordedEnvironment(GenreflowError, LookupError):
    """The run holds no numeric environment (trained before it was recorded, or deleted)."""


def log_numeric_environment() -> dict[str, Any]:
    """Record this process's fingerprint on the active MLflow run; returns it."""
    import mlflow

    from genreflow.core.numerics import numeric_environment

    env = numeric_environment()
    mlflow.log_dict(env, ARTIFACT)
    mlflow.set_tags({f"numerics.{key}": str(value) for key, value in env.items()})
    return env


def recorded_numeric_environment(run_id: str) -> dict[str, Any]:
    """The fingerprint logged on run ``run_id`` of the configured store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{ARTIFACT}")
    except (MlflowException, OSError) as exc:
        raise NoRecordedEnvironment(
            f"MLflow run {run_id} holds no {ARTIFACT} ({type(exc).__name__}); retrain to record it"
        ) from exc
