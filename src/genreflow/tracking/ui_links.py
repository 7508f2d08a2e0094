"""Direct links into the MLflow UI (3.17) for ``genreflow ui`` and the UI test, and the command
that serves it.

Why: MLflow 3.17's UI opens on its GenAI view, where a training project's runs are not shown;
people looked for them under the wrong tab. ``genreflow ui`` therefore serves the UI through
the project's MLflow app plugin (:mod:`genreflow.tracking.ui_app`), which makes "Model
training" the view a browser opens with until its user picks another; it also prints the
runs table of the project experiment (``#/experiments/<id>/runs``, asking for that view in
its query too, so the link works even in a browser that chose GenAI before). The browser test
(``tests/ui``) starts the server with the same command and opens the same links, so a UI
upgrade that moves them fails there.

The experiment id is looked up only in a SQLite store that already exists: opening a missing
one would create an empty ``mlflow.db``, and a remote server may be down (MLflow then retries
for minutes before ``mlflow ui`` even starts).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from genreflow.tracking.store import quiet_mlflow, sqlite_path
from genreflow.tracking.ui_app import APP_NAME

log = logging.getLogger(__name__)

MODEL_TRAINING = "Model training"  # the UI's label for the classic (non-GenAI) view
# The query the "Model training" toggle adds to the runs page's URL (3.17); a link carrying it
# opens that view directly. An older or newer UI ignores an unknown query, so it is harmless.
MODEL_TRAINING_QUERY = "workflowType=machine_learning"
DEFAULT_VIEW_NOTE = (
    f'The UI opens in "{MODEL_TRAINING}" (the runs table; its Dataset column names the validated '
    "manifest each run trained on); the toggle at the top left switches to GenAI, and your "
    "browser keeps the view you pick."
)
# Only when the plugin is missing (an install older than its entry point): the UI then opens
# in GenAI, as plain ``mlflow ui`` does.
SWITCH_HINT = (
    f'The UI opens in its GenAI view: switch to "{MODEL_TRAINING}" with the toggle at the top '
    "left to see the runs table, or run `make install` so that `genreflow ui` opens it there."
)


def app_installed() -> bool:
    """Whether MLflow can find the project's app plugin (``mlflow ui --app-name genreflow``).

    It is an entry point, so it exists only once the package is (re)installed; without it
    ``mlflow ui`` would refuse the ``--app-name`` and not start at all.
    """
    return any(ep.name == APP_NAME for ep in entry_points(group="mlflow.app"))


def ui_command(tracking_uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command ``genreflow ui`` runs (and the browser test starts)."""
    # this environment's mlflow first: only it sees genreflow's entry point
    sibling = Path(sys.executable).with_name("mlflow")
    mlflow_bin = str(sibling) if sibling.is_file() else (shutil.which("mlflow") or str(sibling))
    cmd = [mlflow_bin, "ui", "--backend-store-uri", tracking_uri]
    cmd += ["--host", host, "--port", str(port)]
    if app_installed():
        cmd += ["--app-name", APP_NAME]
    return cmd


def base_url(host: str, port: int) -> str:
    """``http://HOST:PORT`` a browser can open: a wildcard bind address becomes loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def runs_url(base: str, experiment_id: str, model_training: bool = True) -> str:
    """The runs table of one experiment, in the "Model training" view unless told otherwise."""
    url = f"{base}/#/experiments/{experiment_id}/runs"
    return f"{url}?{MODEL_TRAINING_QUERY}" if model_training else url


def compare_url(base: str, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> str:
    """The compare view of ``run_ids`` (what the runs table's **Compare** button opens)."""
    runs = json.dumps(list(run_ids), separators=(",", ":"))
    experiments = json.dumps(list(experiment_ids), separators=(",", ":"))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}"


def model_url(base: str, name: str) -> str:
    """A registered model's page (versions and aliases)."""
    return f"{base}/#/models/{name}"


def find_experiment_id(tracking_uri: str, name: str) -> tuple[str | None, str]:
    """The id of experiment ``name`` in the store, and a reason when there is none.

    Never creates a store (see the module docstring); any lookup failure is a reason, not an
    error, because the UI can still start.
    """
    db = sqlite_path(tracking_uri)
    if db is None:
        return None, f"the store {tracking_uri} is not a local SQLite file; not looked up"
    if not db.is_file():
        return None, f"{db} does not exist yet (train a model first: dvc repro)"
    from mlflow.tracking import MlflowClient

    quiet_mlflow()
    try:
        exp = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
    except Exception as exc:  # noqa: BLE001 - e.g. an old schema; the UI says more
        log.debug("experiment lookup failed", exc_info=True)
        return None, f"could not read {db}: {exc.__class__.__name__}: {exc}"
    if exp is None or exp.lifecycle_stage == "deleted":
        return None, f"the store has no experiment {name!r} yet (train a model first: dvc repro)"
    return exp.experiment_id, ""


def ui_banner(host: str, port: int, tracking_uri: str, experiment: str | None) -> list[str]:
    """The lines ``genreflow ui`` prints before it starts the server."""
    base = base_url(host, port)
    lines = [f"MLflow UI on {base} (store: {tracking_uri}); Ctrl+C stops it"]
    if experiment is None:
        exp_id, why = None, "the project experiment is unknown (params.yaml could not be read)"
    else:
        exp_id, why = find_experiment_id(tracking_uri, experiment)
    if exp_id is not None:
        lines.append(f"Runs of experiment {experiment!r}: {runs_url(base, exp_id)}")
    else:
        lines.append(f"No direct runs link: {why}. Open {base}/ instead.")
    lines.append(DEFAULT_VIEW_NOTE if app_installed() else SWITCH_HINT)
    return lines
