"""Links from the retrain report to the MLflow runs it compared.

``reports/promotion.json`` names registered versions, not runs (a DVC output holds no random
ids), so the runs come from the registry: each version's source run (:func:`version_runs`).
Only a tracking server has pages to link to (``<uri>/#/experiments/<id>/runs/<run_id>``, the
MLflow 3 UI's route); with the local ``mlflow.db`` the report names the run ids and ``make ui``.
Credentials in the URI (``https://user:token@host``) never reach the report.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from genreflow.retrain.remotes import is_http_uri
from genreflow.tracking.store import sqlite_path


def public_uri(uri: str) -> str:
    """``uri`` without user and password, and without a trailing slash."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    return f"{public_uri(uri)}/#/experiments/{experiment_id}/runs/{run_id}"


@contextlib.contextmanager
def _impatient_mlflow() -> Iterator[None]:
    """No retries and a short timeout for these lookups: MLflow's client would otherwise back
    off for minutes against a server that went away during training, for a mere link."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_links(tracking_uri: str, run_ids: Iterable[str]) -> dict[str, str | None]:
    """Run id -> its page on the tracking server; ``None`` for a local store or a run the
    server does not answer for (the report then shows the bare id)."""
    ids = [r for r in run_ids if r]
    if not is_http_uri(tracking_uri):
        return dict.fromkeys(ids)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    links: dict[str, str | None] = {}
    with _impatient_mlflow():
        for run_id in ids:
            try:
                experiment_id = client.get_run(run_id).info.experiment_id
            except Exception:  # noqa: BLE001 - a missing link must not fail the retrain
                links[run_id] = None
            else:
                links[run_id] = run_url(tracking_uri, experiment_id, run_id)
    return links


def version_runs(tracking_uri: str, name: str | None, versions: Iterable[str]) -> dict[str, str]:
    """Registered version of ``name`` -> the run that trained it; versions the store does not
    answer for (or a local store that does not exist: none is created) are left out."""
    wanted = [str(v) for v in versions if v]
    if not name or not wanted:
        return {}
    if not is_http_uri(tracking_uri):
        db = sqlite_path(tracking_uri)
        if db is None or not db.is_file():
            return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    runs: dict[str, str] = {}
    with _impatient_mlflow():
        for version in wanted:
            try:
                run_id = client.get_model_version(name, version).run_id
            except Exception:  # noqa: BLE001 - a missing run must not fail the retrain
                continue
            if run_id:
                runs[version] = run_id
    return runs
