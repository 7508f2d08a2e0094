"""Real shared stores on loopback for the store tests: an MLflow tracking server, an
S3-compatible endpoint (moto), and one tiny pipeline build that tracks to that server.

Why real processes rather than mocks: what can go wrong with a shared store (a server that
is not up yet, a port in use, a push cut off half-way) lives in the processes and the wire,
which a mock skips. Each server gets a free loopback port, is polled on its health URL until
it answers (bounded), and is stopped by its own PID (its process group) in teardown, also when
the test failed.

The tiny pipeline (10 genres x 3 clips x 5 s, 2 epochs) is built once per session; tests that
change the repository (remotes, pushes) work on their own copy of it (``built_copy``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PIPELINE_HELPERS = REPO / "tests" / "pipeline" / "conftest.py"
PROXY = Path(__file__).resolve().with_name("tcp_proxy.py")
SERVER_START_TIMEOUT_S = 90.0
COMMAND_TIMEOUT_S = 900.0
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
# dummy credentials (moto accepts any); the environment comes first in boto's credential
# chain, so a developer's real AWS profile is never used
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _pipeline_helpers() -> ModuleType:
    """``tests/pipeline/conftest.py`` loaded under its own module name, for its tiny profile
    and repository copy (one definition of both). It cannot be imported as ``conftest``:
    pytest registers every ``conftest.py`` under that name."""
    name = "genreflow_pipeline_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PIPELINE_HELPERS)
    assert spec is not None and spec.loader is not None, PIPELINE_HELPERS
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for dvc, genreflow and servers: no inherited MLflow/DVC variables
    (each test says which store it uses), the venv first on PATH, dummy AWS credentials."""
    drop = ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k not in drop}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.update(AWS_ENV)
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop ``proc`` and its children: it leads its own session, so its PID is its process
    group's id. SIGTERM, then SIGKILL after ``grace_s``. Never touches other processes."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # the group may outlive its leader (server workers): kill what is left of it
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=grace_s)


def run(
    cmd: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT_S,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session (a timeout kills the whole group, stage commands too);
    with ``check``, an AssertionError showing its output when it fails."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        why = f"timed out after {timeout} s"
        raise AssertionError(f"{' '.join(cmd)} {why}:\n{out}\n{err}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def dvc(root: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """The venv's ``dvc`` in ``root``; ``env`` adds variables (e.g. the tracking URI)."""
    return run([str(VENV_BIN / "dvc"), *args], root, child_env(**env), check=check)


def dvc_json(root: Path, *args: str) -> dict:
    """``dvc <args> --json`` parsed (``status``: ``{}`` means clean)."""
    return json.loads(dvc(root, *args, "--json").stdout or "{}")


def stages_run(proc: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def git_clone(source: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    return dest


@dataclass
class Server:
    """A started server process: its URL, process and log file."""

    url: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_server(
    cmd: Sequence[str], url: str, health: str, log: Path, cwd: Path, env: dict[str, str]
) -> Server:
    """Start ``cmd`` in its own session and wait until ``health`` answers 200 (at most
    :data:`SERVER_START_TIMEOUT_S`); stops it and fails with its log otherwise."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return Server(url, proc, log)
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc)
            why = f"exited with {proc.returncode}" if proc.returncode else "never became healthy"
            pytest.fail(f"{cmd[0]} {why} ({health}):\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.25)


def start_mlflow(tmp: Path, port: int | None = None) -> Server:
    """``mlflow server`` on SQLite with served artifacts under ``tmp``: one worker and no job
    runner, since the tests share two cores."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(tmp / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    env = child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no huey job workers
    return start_server(cmd, url, f"{url}/health", tmp / "mlflow-server.log", tmp, env)


def start_moto(tmp: Path, port: int | None = None) -> Server:
    """``moto_server`` (an in-memory S3) on 127.0.0.1."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    return start_server(cmd, url, f"{url}/moto-api/", tmp / "moto.log", tmp, child_env())


def start_proxy(
    tmp: Path,
    upstream: Server,
    port: int | None = None,
    rate: float | None = None,
    die_after: int | None = None,
) -> Server:
    """``tcp_proxy.py`` in front of ``upstream`` (moto): slow with ``rate`` bytes/s, and
    gone for good after ``die_after`` bytes upstream. Healthy once moto answers through it."""
    port = port or free_port()
    up_port = upstream.url.rsplit(":", 1)[1]
    cmd = [sys.executable, str(PROXY), "--port", str(port), "--upstream", up_port]
    if rate:
        cmd += ["--rate", str(rate)]
    if die_after:
        cmd += ["--die-after", str(die_after)]
    url = f"http://127.0.0.1:{port}"
    tmp.mkdir(parents=True, exist_ok=True)
    return start_server(cmd, url, f"{url}/moto-api/", tmp / f"proxy-{port}.log", tmp, child_env())


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


# --------------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class StoresKit:
    """Helpers the store tests reach through the ``kit`` fixture (conftest modules cannot be
    imported by name)."""

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
    helpers = _pipeline_helpers()
    root = helpers.copy_repo(tmp_path_factory.mktemp("tiny-build"), helpers.tiny_params)
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
