"""The MLflow store: one SQLite database per repository, one project experiment.

Why the details matter:

- The tracking URI is always **absolute** (``sqlite:////abs/path/mlflow.db``). ``dvc exp run
  --temp`` / ``--queue`` execute in a throwaway copy under ``.dvc/tmp/exps/`` (DVC 3.67:
  ``--temp`` in ``.dvc/tmp/exps/standalone/tmpXXXX``, a celery queue worker in
  ``.dvc/tmp/exps/tmpXXXX``); a relative URI (or one derived from that copy) would put the
  runs in the copy and lose them. :func:`tracking_root` maps any such copy back to the real
  repository.
- The experiment's artifact location is pinned next to ``mlflow.db`` (``mlruns/``). MLflow's
  default is ``./mlruns`` relative to the *current directory*, which again would be the copy.
- Nothing here runs at import time: the URI is set by :func:`set_tracking` /
  :func:`configure_mlflow`, which every stage and command calls where it starts.

What a run records (tags, params, resuming) lives in :mod:`genreflow.tracking.runs`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import unquote

from genreflow.core.paths import Layout

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"
DB_NAME = "mlflow.db"
ARTIFACT_DIR = "mlruns"

_NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "git")

# MLflow's declaration of what an experiment is for (its demo data sets "genai_development";
# classic training is "custom_model_development", the UI's "Machine learning"). The 3.17 UI
# does not pick its view from it (a browser-side choice does; see tracking/ui_app.py, which
# ``genreflow ui`` serves), but its experiment-kind selector and UIs with the workflow switch
# off read it, so the project experiment states it rather than leaving the UI to guess.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def tracking_root(root: Path) -> Path:
    """The repository whose ``mlflow.db`` should receive runs started from ``root``.

    ``root`` is normally returned unchanged. Anywhere below ``<repo>/.dvc/tmp/exps/``, at any
    depth, it is ``<repo>``: DVC's experiment workspaces live there (3.67: ``--temp`` in
    ``standalone/tmpXXXX``, a celery queue worker in ``tmpXXXX``; other versions nest
    differently) and are deleted after the run, so runs logged there would be lost. The
    outermost such ``.dvc`` wins: a workspace made inside a workspace is just as throwaway.
    """
    root = Path(root).resolve()
    for exps in reversed(root.parents):  # outermost first
        if exps.name == "exps" and exps.parent.name == "tmp" and exps.parent.parent.name == ".dvc":
            return exps.parent.parent.parent
    return root


def resolve_tracking_uri(root: Path) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute repo root>/mlflow.db``."""
    env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if env:
        return env
    return f"sqlite:///{(tracking_root(root) / DB_NAME).as_posix()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else ``None``."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri[len("sqlite:///") :]))


def default_artifact_location(uri: str) -> str | None:
    """Artifact root for a new experiment: ``mlruns/`` beside a SQLite DB, else the server's."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / ARTIFACT_DIR).as_uri()


def quiet_mlflow() -> None:
    """Keep MLflow/alembic INFO chatter (DB migrations, env-var notes) out of stage logs."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING", "false")


def set_tracking(layout: Layout) -> str:
    """Point MLflow's tracking and registry at this repository's store; returns the URI.

    Enough for registry-only work (promote / rollback); stages use :func:`configure_mlflow`.
    """
    import mlflow

    quiet_mlflow()
    uri = resolve_tracking_uri(layout.root)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if not os.environ.get(REGISTRY_URI_ENV):
        mlflow.set_registry_uri(uri)
    return uri


def configure_mlflow(layout: Layout, experiment: str) -> str:
    """Point MLflow at this repository's store and select the project experiment.

    A missing ``mlflow.db`` is created (with its tables) here, never at import; the experiment
    carries :data:`EXPERIMENT_KIND_TAG`, an existing one gets it on its next run. Returns the
    tracking URI in use. Safe to call more than once: the tag is written only when it differs.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = set_tracking(layout)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        try:
            client.create_experiment(
                experiment,
                artifact_location=default_artifact_location(uri),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except MlflowException:  # created concurrently by another process
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise
    elif exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if exp is not None and exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        # an experiment made before the tag existed: tagged here, on its next run or command
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(experiment)
    return uri
