"""tracking: absolute URIs, the project experiment, provenance hashes, run start/resume."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genreflow.core.config import Params
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.tracking.runs import dir_digest, git_commit, run_params, training_run
from genreflow.tracking.store import configure_mlflow, resolve_tracking_uri, tracking_root


@pytest.fixture()
def no_env(monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_STAGE", "DVC_EXP_NAME"):
        monkeypatch.delenv(var, raising=False)


def test_tracking_uri_is_absolute_sqlite(no_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo").mkdir()
    uri = resolve_tracking_uri(Path("repo"))
    assert uri == f"sqlite:///{(tmp_path / 'repo' / 'mlflow.db').as_posix()}"
    assert uri.startswith("sqlite:////")  # four slashes: an absolute path


def test_tracking_uri_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(tmp_path) == "http://127.0.0.1:5000"


# Where DVC 3.67 runs stage commands, relative to the repository (observed with a stage that
# records os.getcwd(); sources: dvc/repo/experiments/queue/tempdir.py, queue/tasks.py,
# executor/local.py). The celery worker keeps its own state in .dvc/tmp/exps/celery/.
EXPERIMENT_WORKSPACES = {
    "exp run --queue (celery worker)": ".dvc/tmp/exps/tmpxp4s0mf5",
    "exp run --temp": ".dvc/tmp/exps/standalone/tmpxucrbai3",
    "celery state dir": ".dvc/tmp/exps/celery/tmpq1w2e3r4",
    "stage wdir inside --temp": ".dvc/tmp/exps/standalone/tmpxucrbai3/sub/stage",
    "workspace of a workspace": ".dvc/tmp/exps/standalone/tmpa/.dvc/tmp/exps/tmpb",
}


@pytest.mark.parametrize("rel", EXPERIMENT_WORKSPACES.values(), ids=EXPERIMENT_WORKSPACES.keys())
def test_dvc_experiment_workspaces_map_to_the_real_repo(no_env, tmp_path, rel):
    repo = tmp_path / "repo"
    workspace = repo / rel
    workspace.mkdir(parents=True)
    assert tracking_root(workspace) == repo.resolve()
    assert resolve_tracking_uri(workspace) == (
        f"sqlite:///{(repo / 'mlflow.db').resolve().as_posix()}"
    )


@pytest.mark.parametrize(
    "rel",
    ["", "stages", ".dvc/tmp/exps", "x/tmp/exps/tmpz", ".dvc/exps/tmpz", "dvc/tmp/exps/tmpz"],
)
def test_other_dirs_keep_their_own_store(no_env, tmp_path, rel):
    """Only a real ``.dvc/tmp/exps`` chain above the dir redirects its runs."""
    path = tmp_path / "repo" / rel
    path.mkdir(parents=True, exist_ok=True)
    assert tracking_root(path) == path.resolve()


def test_import_has_no_side_effects(no_env, tmp_path):
    code = (
        "import genreflow.tracking.runs, genreflow.registry, genreflow.pipeline.train, "
        "genreflow.pipeline.evaluate, sys; print('mlflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"  # mlflow itself is not even imported
    assert list(tmp_path.iterdir()) == []  # no mlflow.db / mlruns appeared


def test_configure_creates_store_and_one_experiment(no_env, tmp_path):
    from mlflow.tracking import MlflowClient

    layout = Layout.from_root(tmp_path)
    assert not layout.mlflow_db.exists()
    uri = configure_mlflow(layout, "genreflow")
    assert uri == f"sqlite:///{layout.mlflow_db.as_posix()}"
    assert layout.mlflow_db.is_file()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("genreflow")
    assert exp.artifact_location == (tmp_path / "mlruns").as_uri()
    assert configure_mlflow(layout, "genreflow") == uri  # idempotent
    names = [e.name for e in client.search_experiments()]
    assert names.count("genreflow") == 1


def test_git_commit_inside_and_outside_a_repo(tmp_path):
    assert git_commit(tmp_path) is None
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    (tmp_path / "f.txt").write_text("x")
    for cmd in (["git", "init", "-q"], ["git", "add", "f.txt"], ["git", "commit", "-qm", "c"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env, capture_output=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(tmp_path) == head and len(head) == 40


def test_hashes_track_content(tmp_path):
    f = tmp_path / "d" / "a.bin"
    f.parent.mkdir()
    f.write_bytes(b"hello")
    assert file_sha256(f) == hashlib.sha256(b"hello").hexdigest()
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "sub" / "b.txt").write_text("b")
    first = dir_digest(tmp_path / "d")
    (tmp_path / "d" / ".a.bin.123.tmp").write_bytes(b"partial write")
    assert dir_digest(tmp_path / "d") == first  # atomic-write leftovers do not count
    (tmp_path / "d" / "sub" / "b.txt").write_text("B")
    assert dir_digest(tmp_path / "d") != first
    (tmp_path / "d" / "sub" / "b.txt").write_text("b")
    (tmp_path / "d" / "sub" / "b.txt").rename(tmp_path / "d" / "sub" / "c.txt")
    assert dir_digest(tmp_path / "d") != first  # names are part of the digest
    with pytest.raises(FileNotFoundError, match="not a directory"):
        dir_digest(tmp_path / "missing")


def test_training_run_logs_and_resumes_only_unfinished_runs(
    no_env, tiny, tmp_path, tmp_path_factory, monkeypatch
):
    import mlflow
    from mlflow.tracking import MlflowClient

    layout = Layout.from_root(tmp_path)
    tiny.tracking_db(tmp_path_factory, layout.mlflow_db)  # skips the slow schema creation
    (tmp_path / "data" / "validated").mkdir(parents=True)
    layout.validated_manifest.write_text("track_id,genre\n")
    monkeypatch.setenv("DVC_STAGE", "train_lstm")
    params = Params()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), training_run(layout, params, "train_lstm") as run:
        mlflow.log_metric("val_loss", 1.0, step=1)
        first = run.info.run_id
        raise Boom
    client = MlflowClient()
    crashed = client.get_run(first)
    assert crashed.info.status == "FAILED"
    assert crashed.data.params == run_params(params, "train_lstm")
    assert crashed.data.params["arch"] == "crnn" and crashed.data.params["section"] == "train_lstm"
    assert crashed.data.tags["dvc_stage"] == "train_lstm"
    assert crashed.data.tags["data.validated_manifest_sha256"] == file_sha256(
        layout.validated_manifest
    )

    with training_run(layout, params, "train_lstm", first) as run:
        assert run.info.run_id == first  # unfinished: resumed
    assert client.get_run(first).info.status == "FINISHED"

    with training_run(layout, params, "train_lstm", first) as run:
        assert run.info.run_id != first  # finished runs are never reopened
    with training_run(layout, params, "train_lstm", "0" * 32) as run:
        assert run.info.run_id != first  # unknown id: a new run

    with pytest.raises(Boom), training_run(layout, params, "train_lstm") as run:
        second = run.info.run_id
        raise Boom
    changed = Params(seed=params.seed + 1)
    with training_run(layout, changed, "train_lstm", second) as run:
        assert run.info.run_id != second  # other params: never mixed into the old run
