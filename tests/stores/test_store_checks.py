"""Bad input for the store checks: dead, hanging or misconfigured stores fail fast, in one
line that names the URL, and a failed push to a dead store loses nothing in the workspace.

Why the time bounds: ``genreflow retrain`` runs these checks before an hour of training; a
check that itself hangs for minutes (MLflow's and boto's default retries) defeats its purpose.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genreflow.core.errors import GenreflowError
from genreflow.retrain.store_checks import (
    StoreConfigError,
    StoreUnreachable,
    check_dvc_remote,
    check_tracking_server,
)

pytestmark = pytest.mark.integration

FAST_S = 8.0  # bound on a failing check (5 s timeouts, one attempt, plus imports)


@pytest.fixture(autouse=True, scope="module")
def _warm_imports() -> None:
    """Import boto3 and DVC's config once, so the time bounds measure the checks alone."""
    import boto3  # noqa: F401
    import dvc.config  # noqa: F401


@pytest.fixture()
def dvc_repo(kit, tmp_path: Path) -> Path:
    """An empty git + DVC repository: enough for checks that only read its config."""
    root = tmp_path / "repo"
    root.mkdir()
    kit.run(["git", "init", "-q"], root)
    kit.dvc(root, "init", "-q")
    return root


@pytest.fixture()
def aws_env(kit, monkeypatch) -> None:
    for key, value in kit.aws_env.items():
        monkeypatch.setenv(key, value)


class SilentListener:
    """A loopback port that accepts connections and never answers: a hung server.

    It counts the connections it accepted, so a test can tell one attempt from a retry
    without a wall-clock bound (those failed under load: 2.1 s against 1.9 s).
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(connection)  # held open, never answered

    def connections(self) -> int:
        time.sleep(0.2)  # a connection made just before the failure is accepted by now
        return len(self.accepted)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.accepted:
            connection.close()
        self._socket.close()


@pytest.fixture()
def listener() -> Iterator[SilentListener]:
    server = SilentListener()
    try:
        yield server
    finally:
        server.close()


def timed_failure(fn, *args, **kwargs) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises(StoreUnreachable) as info:
        fn(*args, **kwargs)
    return info.value, time.monotonic() - start


def assert_one_line_naming(exc: BaseException, url: str) -> None:
    message = str(exc)
    assert isinstance(exc, GenreflowError)  # printed as one line by genreflow.core.runner
    assert "\n" not in message and url in message, message


def test_dead_tracking_server_fails_fast_naming_the_url(kit):
    url = f"http://127.0.0.1:{kit.free_port()}"
    exc, elapsed = timed_failure(check_tracking_server, url)
    assert elapsed < FAST_S
    assert_one_line_naming(exc, url)


def test_hung_tracking_server_fails_after_one_attempt(listener: SilentListener):
    exc, elapsed = timed_failure(check_tracking_server, listener.url, timeout_s=1.0)
    assert listener.connections() == 1  # no retry: MLflow's client would retry for minutes
    assert elapsed < FAST_S
    assert_one_line_naming(exc, listener.url)


def test_server_that_is_not_mlflow_is_reported(moto_server):
    """Something answers, but not ``/health`` with 200 (wrong port, wrong service)."""
    url = moto_server.url + "/some-bucket-path"
    exc, elapsed = timed_failure(check_tracking_server, url)
    assert elapsed < FAST_S
    assert_one_line_naming(exc, url)


def test_local_tracking_uris_need_no_server(tmp_path: Path):
    check_tracking_server(f"sqlite:///{tmp_path / 'mlflow.db'}")
    check_tracking_server(str(tmp_path / "mlruns"))


def test_unreachable_s3_endpoint_fails_fast_naming_the_url(kit, dvc_repo: Path, aws_env):
    endpoint = f"http://127.0.0.1:{kit.free_port()}"  # nothing listens there
    kit.dvc(dvc_repo, "remote", "add", "-d", "s3", "s3://genreflow-store/path")
    kit.dvc(dvc_repo, "remote", "modify", "s3", "endpointurl", endpoint)
    exc, elapsed = timed_failure(check_dvc_remote, dvc_repo)
    assert elapsed < FAST_S
    assert_one_line_naming(exc, "s3://genreflow-store/path")
    assert endpoint in str(exc)


def test_hung_s3_endpoint_fails_after_one_attempt(kit, dvc_repo: Path, aws_env, listener):
    kit.dvc(dvc_repo, "remote", "add", "-d", "s3", "s3://genreflow-store/path")
    kit.dvc(dvc_repo, "remote", "modify", "s3", "endpointurl", listener.url)
    exc, elapsed = timed_failure(check_dvc_remote, dvc_repo, timeout_s=1.0)
    assert listener.connections() == 1  # no retry: boto's default retries the read timeout
    assert elapsed < FAST_S
    assert_one_line_naming(exc, listener.url)


def test_missing_bucket_is_reported(kit, dvc_repo: Path, aws_env, moto_server):
    kit.dvc(dvc_repo, "remote", "add", "-d", "s3", "s3://no-such-bucket-here/path")
    kit.dvc(dvc_repo, "remote", "modify", "s3", "endpointurl", moto_server.url)
    exc, _ = timed_failure(check_dvc_remote, dvc_repo)
    assert_one_line_naming(exc, "s3://no-such-bucket-here/path")
    assert "does not exist" in str(exc)


def test_reachable_s3_remote_passes(kit, dvc_repo: Path, aws_env, moto_server):
    kit.s3_client(moto_server.url).create_bucket(Bucket="genreflow-check-ok")
    kit.dvc(dvc_repo, "remote", "add", "-d", "s3", "s3://genreflow-check-ok/path")
    kit.dvc(dvc_repo, "remote", "modify", "s3", "endpointurl", moto_server.url)
    check_dvc_remote(dvc_repo)


def test_missing_local_remote_directory_is_reported(kit, dvc_repo: Path, tmp_path: Path):
    missing = tmp_path / "mounted-store"
    kit.dvc(dvc_repo, "remote", "add", "-d", "local", str(missing))
    exc, elapsed = timed_failure(check_dvc_remote, dvc_repo)
    assert elapsed < FAST_S
    assert_one_line_naming(exc, str(missing))
    missing.mkdir()
    check_dvc_remote(dvc_repo)


def test_relative_local_remote_is_resolved_from_the_dvc_config(kit, dvc_repo: Path):
    (dvc_repo.parent / "store").mkdir()
    kit.dvc(dvc_repo, "remote", "add", "-d", "local", "../store")
    check_dvc_remote(dvc_repo)


def test_no_remote_and_other_remote_types(kit, dvc_repo: Path, caplog):
    assert check_dvc_remote(dvc_repo) is None  # nothing configured: nothing to check
    kit.dvc(dvc_repo, "remote", "add", "-d", "gcs", "gs://some-bucket/path")
    with caplog.at_level(logging.INFO, logger="genreflow.retrain.store_checks"):
        assert check_dvc_remote(dvc_repo) is None
    assert "gs://some-bucket/path" in caplog.text


def test_default_remote_that_is_not_defined(kit, dvc_repo: Path):
    kit.dvc(dvc_repo, "config", "core.remote", "ghost")
    with pytest.raises(StoreConfigError, match="ghost"):
        check_dvc_remote(dvc_repo)


def test_not_a_dvc_repository(tmp_path: Path):
    with pytest.raises(StoreConfigError, match=str(tmp_path)):
        check_dvc_remote(tmp_path)


def test_user_error_prints_one_line(kit, tmp_path: Path):
    """Through genreflow's runner, an unreachable store is one line, no traceback."""
    url = f"http://127.0.0.1:{kit.free_port()}"
    code = (
        "from genreflow.core.runner import run_stage\n"
        "from genreflow.retrain.store_checks import check_tracking_server\n"
        f"run_stage('retrain', lambda: check_tracking_server({url!r}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("genreflow retrain: error: ") and url in lines[-1]
    assert "Traceback" not in proc.stderr


def test_failed_push_to_dead_store_loses_nothing(kit, built_copy: Path, aws_env):
    """``dvc push`` to an S3 endpoint that is down fails, and the workspace is as before."""
    endpoint = f"http://127.0.0.1:{kit.free_port()}"
    kit.dvc(built_copy, "remote", "add", "-d", "s3", "s3://genreflow-store/path")
    kit.dvc(built_copy, "remote", "modify", "s3", "endpointurl", endpoint)
    before = kit.dvc_json(built_copy, "status")
    outputs = sorted(p for p in (built_copy / "models").rglob("*") if p.is_file())
    assert before == {} and outputs
    with pytest.raises(StoreUnreachable):
        check_dvc_remote(built_copy)
    failed = kit.dvc(built_copy, "push", check=False)
    assert failed.returncode != 0
    assert endpoint.split("//")[1] in failed.stdout + failed.stderr
    assert kit.dvc_json(built_copy, "status") == before
    assert sorted(p for p in (built_copy / "models").rglob("*") if p.is_file()) == outputs
