"""The MLflow server app ``genreflow ui`` runs: MLflow's own, opening in "Model training".

Why this exists: in MLflow 3.17 the UI's view (GenAI or "Model training") is decided in the
browser alone. Its JS bundle (``mlflow/server/js/build/static/js/main.*.js``, modules
``7975``, ``31080`` and ``51653``) reads the ``workflowType`` URL query first, then the
browser's ``localStorage["mlflow.workflowType_v1"]`` (a JSON string, written when a person
flips the toggle), and falls back to ``"genai"``. The experiment tag ``mlflow.experimentKind``
is *not* consulted for the view: the hook that would read it sits behind a feature flag that
3.17 hard-wires on (``89511`` ``Z0 = () => true``), which derives the kind from
``workflowType`` instead. So a fresh browser opening ``#/experiments/<id>`` (what a person
gets by clicking the experiment) always lands in the GenAI view, whatever the server stores.

The one thing a server can do is to give that browser a default: this app serves MLflow's
``index.html`` with a small inline script that sets ``mlflow.workflowType_v1`` to
``"machine_learning"`` **only when the browser has no choice stored**. A person who picks
GenAI keeps it; a link that asks for a view (``?workflowType=…``) still wins.

It is registered as an MLflow app plugin (``[project.entry-points."mlflow.app"]`` in
``pyproject.toml``, MLflow's documented mechanism behind ``mlflow server --app-name``), so
``mlflow ui --app-name genreflow`` does everything else exactly as plain ``mlflow ui``:
stores, security middleware, workers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

APP_NAME = "genreflow"  # the entry point's name, passed as ``mlflow ui --app-name``
WORKFLOW_STORAGE_KEY = "mlflow.workflowType_v1"  # useLocalStorage key "mlflow.workflowType", v1
MODEL_TRAINING_WORKFLOW = "machine_learning"  # the UI's value for the "Model training" view

# Runs before the deferred app bundle, so the app reads the default on its first render. A
# browser without storage (privacy mode) just keeps the UI's own default.
_KEY_JS = json.dumps(WORKFLOW_STORAGE_KEY)
_VALUE_JS = json.dumps(json.dumps(MODEL_TRAINING_WORKFLOW))  # stored JSON-encoded, as the UI does
DEFAULT_VIEW_SCRIPT = (
    f"<script>try{{var k={_KEY_JS};if(window.localStorage.getItem(k)===null)"
    f"{{window.localStorage.setItem(k,{_VALUE_JS})}}}}catch(e){{}}</script>"
)

_HEAD = re.compile(r"<head[^>]*>", re.IGNORECASE)


def with_default_view(html: str) -> str:
    """``index.html`` with :data:`DEFAULT_VIEW_SCRIPT` first in its ``<head>``."""
    match = _HEAD.search(html)
    if match is None:  # not the page we know; a script before it still runs first
        return DEFAULT_VIEW_SCRIPT + html
    return html[: match.end()] + DEFAULT_VIEW_SCRIPT + html[match.end() :]


def create_app() -> Any:
    """MLflow's server app with its index page serving :func:`with_default_view`.

    A factory, as MLflow's ``basic-auth`` app is: uvicorn (MLflow's default server) gets the
    FastAPI wrapper, gunicorn and waitress the Flask app itself.
    """
    from flask import Response
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app

    original = flask_app.view_functions["serve"]
    index = Path(str(flask_app.static_folder)) / "index.html"

    def serve() -> Any:
        if not index.is_file():  # MLflow's own message for a source install without a build
            return original()
        # no-cache: a browser must not keep the page a plain ``mlflow ui`` once served here
        return Response(
            with_default_view(index.read_text(encoding="utf-8")),
            mimetype="text/html",
            headers={"Cache-Control": "no-cache"},
        )

    flask_app.view_functions["serve"] = serve
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(flask_app)
    return flask_app
