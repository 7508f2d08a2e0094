"""Real shared stores on loopback for the store tests: an MLflow tracking server, an
S3-compatible endpoint (moto), and one tiny pipeline build that tracks to that server.

Why real processes rather than mocks: what can go wrong with a shared store (a server that
is not up yet, a port in use, a push cut off half-way) lives in the processes and the wire,
which a mock skips. Each server gets a free loopback port, is polled on its health URL until
it answers (bounded), and is stopped by its own PID (its process group) in teardown, also when
the test failed.

The tiny pipeline (10 genres x 3 clips x 5 s, 2 epochs) is built once per session; tests that
change the repository (remotes, pushes) work on their own copy of it (``built_copy``). It is a
build of its own, not a copy of ``tests/pipeline``'s: it must log to the MLflow *server* as it
runs (``genreflow retrain`` with ``MLFLOW_TRACKING_URI`` set to the server), so that the runs,
versions and model artifacts the tests read back over HTTP went there by the real path, and
no ``mlflow.db`` exists in the copy.

The helpers live in :mod:`support.processes` and :mod:`support.servers`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.processes import (
    AWS_ENV,
    GIT,
    VENV_BIN,
    child_env,
    dvc,
    dvc_json,
    free_port,
    git_clone,
    run,
    stages_run,
    stop_process_group,
)
from support.repo import copy_repo, tiny_pipeline_params
from support.servers import Server, s3_client, start_mlflow, start_moto, start_proxy


# --------------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class StoresKit:
    """Helpers the store tests reach through the ``kit`` fixture (also importable from
    :mod:`support.processes` and :mod:`support.servers`)."""

    venv_bin: Path
    aws_env: dict[str, str]
    child_env: Callable[..., dict[str, str]]
    run: Callable[..., subprocess.CompletedProcess]
    dvc: Callable[..., subprocess.CompletedProcess]
    dvc_json: Callable[..., dict]
    stages_run: Callable[[subprocess.CompletedProcess], set[str]]
    git_clone: Callable[[Path, Path], Path]
    free_port: Callable[[], int]
    start_moto: Callable[..., Server]
    start_mlflow: Callable[..., Server]
    start_proxy: Callable[..., Server]
    stop: Callable[..., None]
    s3_client: Callable[[str], object]


@pytest.fixture(scope="session")
def kit() -> StoresKit:
    return StoresKit(
        venv_bin=VENV_BIN,
        aws_env=dict(AWS_ENV),
        child_env=child_env,
        run=run,
        dvc=dvc,
        dvc_json=dvc_json,
        stages_run=stages_run,
        git_clone=git_clone,
        free_port=free_port,
        start_moto=start_moto,
        start_mlflow=start_mlflow,
        start_proxy=start_proxy,
        stop=lambda server, grace_s=10.0: stop_process_group(server.proc, grace_s),
        s3_client=s3_client,
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[Server]:
    """A real ``mlflow server`` for the session."""
    server = start_mlflow(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        stop_process_group(server.proc)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[Server]:
    """A real S3-compatible endpoint for the session; tests make their own buckets."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        stop_process_group(server.proc)


@dataclass(frozen=True)
class TinyBuild:
    root: Path  # the built, committed copy (read only for tests)
    repro: subprocess.CompletedProcess  # its `genreflow retrain`
    tracking_uri: str  # the MLflow server it logged to


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory, mlflow_server: Server) -> TinyBuild:
    """The tiny pipeline, built once by ``genreflow retrain`` (what ``make retrain`` runs)
    with ``MLFLOW_TRACKING_URI`` pointing at the session's MLflow server, its results
    committed (``dvc.lock`` and the git-tracked metrics) so a ``git clone`` of it is the
    checkout a colleague would get."""
    root = copy_repo(tmp_path_factory.mktemp("tiny-build"), tiny_pipeline_params)
    env = child_env(MLFLOW_TRACKING_URI=mlflow_server.url)
    repro = run([str(VENV_BIN / "genreflow"), "retrain"], root, env, check=False)
    # 0: promoted; 3: trained, not promoted (three clips per genre rarely clear the floor)
    assert repro.returncode in (0, 3), repro.stdout[-3000:] + repro.stderr[-3000:]
    assert stages_run(repro) >= {"train_cnn", "train_lstm", "evaluate"}, repro.stdout
    for args in (["add", "-A"], ["commit", "-qm", "tiny build"]):
        run([*GIT, *args], root)
    return TinyBuild(root, repro, mlflow_server.url)


@pytest.fixture()
def built_copy(tiny_build: TinyBuild, tmp_path: Path) -> Path:
    """A private copy of the tiny build (workspace, DVC cache, git), for a test that changes
    it (remotes, pushes)."""
    copy = tmp_path / "repo"
    shutil.copytree(tiny_build.root, copy, symlinks=True)
    return copy
