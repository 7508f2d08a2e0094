"""``genreflow ui``: the command it runs, the direct runs link it prints, and the plain URL when
there is none.

No browser here (``test_mlflow_ui.py`` opens these links in one); the server is not started:
``subprocess.call`` is replaced, so only what the command prints and would run is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from genreflow.cli import app
from genreflow.tracking.ui_app import (
    APP_NAME,
    DEFAULT_VIEW_SCRIPT,
    WORKFLOW_STORAGE_KEY,
    with_default_view,
)
from genreflow.tracking.ui_links import DEFAULT_VIEW_NOTE
from support.tiny import pointed_at

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _repo(root: Path) -> Path:
    """A repository root with the real params.yaml (experiment ``genreflow``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


def _invoke(monkeypatch: pytest.MonkeyPatch, root: Path, *args: str) -> tuple[str, list[str]]:
    calls: list[list[str]] = []

    def fake_call(cmd: list[str], **_: object) -> int:
        calls.append(list(cmd))
        return 0

    monkeypatch.setattr("genreflow.cli.subprocess.call", fake_call)
    result = CliRunner().invoke(app, ["ui", "--root", str(root), *args])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    return result.output, calls[0]


def test_prints_the_runs_link_of_the_project_experiment(
    tiny, tmp_path: Path, tmp_path_factory, monkeypatch
) -> None:
    from mlflow.tracking import MlflowClient

    root = _repo(tmp_path / "repo")
    uri = tiny.use_tracking_db(monkeypatch, root, tmp_path_factory)
    exp_id = MlflowClient(tracking_uri=uri).create_experiment("genreflow")

    output, cmd = _invoke(monkeypatch, root, "--port", "5123")
    link = f"http://127.0.0.1:5123/#/experiments/{exp_id}/runs?workflowType=machine_learning"
    assert f"Runs of experiment 'genreflow': {link}" in output
    # served through the app plugin, so it opens there: no "switch by hand" any more
    assert DEFAULT_VIEW_NOTE in output and "switch to" not in output
    expected = ["ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", "5123"]
    assert cmd[1:] == [*expected, "--app-name", APP_NAME]
    assert Path(cmd[0]).name == "mlflow"


def test_the_index_page_gets_the_default_view_script_first() -> None:
    """The script runs before MLflow's deferred bundle, and only sets an absent choice."""
    page = '<!doctype html><html lang="en"><head><meta charset="utf-8"/><script defer src="m.js">'
    served = with_default_view(page)
    assert served.startswith('<!doctype html><html lang="en"><head><script>')
    assert served.index(DEFAULT_VIEW_SCRIPT) < served.index('src="m.js"')
    assert "localStorage.getItem(k)===null" in DEFAULT_VIEW_SCRIPT
    assert f'"{WORKFLOW_STORAGE_KEY}"' in DEFAULT_VIEW_SCRIPT
    assert with_default_view("<p>x</p>") == DEFAULT_VIEW_SCRIPT + "<p>x</p>"


def test_without_a_store_prints_the_plain_url_and_creates_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    root = _repo(tmp_path / "repo")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)

    output, _ = _invoke(monkeypatch, root, "--host", "0.0.0.0")
    assert "No direct runs link" in output and "does not exist yet" in output
    assert "Open http://127.0.0.1:5000/ instead" in output
    assert not (root / "mlflow.db").exists()


def test_store_without_the_experiment_says_so(
    tiny, tmp_path: Path, tmp_path_factory, monkeypatch
) -> None:
    root = _repo(tmp_path / "repo")
    tiny.use_tracking_db(monkeypatch, root, tmp_path_factory)

    output, _ = _invoke(monkeypatch, root)
    assert "the store has no experiment 'genreflow' yet" in output
    assert "Open http://127.0.0.1:5000/ instead" in output


def test_the_project_experiment_states_its_kind_new_or_old(
    tiny, tmp_path: Path, tmp_path_factory, monkeypatch
) -> None:
    """configure_mlflow tags a new experiment, and an existing one that lacks the tag (a store
    written before the tag existed), and writes nothing more on later calls."""
    from mlflow.tracking import MlflowClient

    from genreflow.core.paths import Layout
    from genreflow.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, configure_mlflow

    root = _repo(tmp_path / "repo")
    uri = tiny.use_tracking_db(monkeypatch, root, tmp_path_factory)
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("older")  # as every store held it before
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    writes: list[str] = []
    real_set = MlflowClient.set_experiment_tag

    def counted(self, experiment_id, key, value):  # the real write, counted
        writes.append(experiment_id)
        return real_set(self, experiment_id, key, value)

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", counted)
    with pointed_at(uri):
        for name in ("older", "genreflow", "older", "genreflow"):
            configure_mlflow(Layout.from_root(root), name)
    new = client.get_experiment_by_name("genreflow")
    assert new is not None
    for exp_id in (old, new.experiment_id):
        assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert writes == [old]  # the new one was created with it; the repeats wrote nothing
